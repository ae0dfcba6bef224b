import { Alert, AlertActionCloseButton, Button, Flex, Label, Title } from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import { useCallback, useEffect, useState } from 'react';
import { ApiError, call, eventsUrl, type Vm, type VmEvent } from './api.js';
import { LoginProblem } from './LoginProblem.js';

const stateColor = {
  running: 'green',
  paused: 'orange',
  stopped: 'grey',
  starting: 'blue',
  stopping: 'blue',
} as const;

type Action = 'start' | 'pause' | 'resume' | 'stop' | 'force-stop';

/** The actions a VM in this state takes, as the CLI names them. */
function actionsFor(state: Vm['state']): Action[] {
  switch (state) {
    case 'stopped':
      return ['start'];
    case 'running':
      return ['pause', 'stop', 'force-stop'];
    case 'paused':
      return ['resume', 'stop', 'force-stop'];
    default:
      return ['force-stop'];
  }
}

const actionLabel: Record<Action, string> = {
  start: 'Start',
  pause: 'Pause',
  resume: 'Resume',
  stop: 'Stop',
  'force-stop': 'Force off',
};

const RECONNECT_MS = 2000;

/**
 * The VMs, kept current by the daemon's event stream: a state event updates its row, a VM created
 * or deleted elsewhere reloads the list. Nothing polls.
 */
export function VmList() {
  const [vms, setVms] = useState<Vm[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [loggedOut, setLoggedOut] = useState<string | undefined>();
  const [connected, setConnected] = useState(true);
  const [busy, setBusy] = useState<Set<string>>(new Set());

  const fail = useCallback((e: unknown) => {
    if (e instanceof ApiError && e.status === 401) setLoggedOut(e.message);
    else setError((e as Error).message);
  }, []);
  const reload = useCallback(() => call<Vm[]>('GET', '/v1/vms').then(setVms, fail), [fail]);

  useEffect(() => {
    let ws: WebSocket | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let closed = false;
    const connect = () => {
      ws = new WebSocket(eventsUrl());
      // The list is read once the stream is up, so no change falls between the two.
      ws.onopen = () => {
        setConnected(true);
        void reload();
      };
      ws.onmessage = (m: MessageEvent<string>) => {
        const e = JSON.parse(m.data) as VmEvent;
        if (e.type === 'state' && e.state) {
          const { state, reason } = e;
          setVms((list) => list?.map((vm) => (vm.name === e.vm ? { ...vm, state, reason } : vm)));
        } else if (e.type === 'created' || e.type === 'deleted') void reload();
      };
      ws.onclose = () => {
        if (closed) return;
        setConnected(false);
        // A handshake refused for want of a login closes the same way: the list read tells which,
        // and only a logged-in page tries again.
        void call<Vm[]>('GET', '/v1/vms')
          .then(setVms)
          .then(
            () => true,
            (e: unknown) => {
              fail(e);
              return !(e instanceof ApiError && e.status === 401);
            },
          )
          .then((again) => {
            if (again && !closed) retry = setTimeout(connect, RECONNECT_MS);
          });
      };
    };
    connect();
    return () => {
      closed = true;
      clearTimeout(retry);
      ws?.close();
    };
  }, [reload]);

  const act = async (vm: Vm, action: Action) => {
    setBusy((b) => new Set(b).add(vm.name));
    const verb = action === 'force-stop' ? 'stop' : action;
    try {
      await call(
        'POST',
        `/v1/vms/${encodeURIComponent(vm.name)}/${verb}`,
        action === 'force-stop' ? { force: true } : {},
      );
    } catch (e) {
      fail(e);
    } finally {
      setBusy((b) => {
        const next = new Set(b);
        next.delete(vm.name);
        return next;
      });
    }
  };

  if (loggedOut) return <LoginProblem message={loggedOut} />;
  return (
    <>
      <Title headingLevel="h2">Virtual machines</Title>
      {!connected && (
        <Alert isInline variant="warning" title="Lost the connection to phyllomed: reconnecting" />
      )}
      {error && (
        <Alert
          isInline
          variant="danger"
          title={error}
          actionClose={<AlertActionCloseButton onClose={() => setError(undefined)} />}
        />
      )}
      <Table aria-label="Virtual machines" variant="compact">
        <Thead>
          <Tr>
            <Th>Name</Th>
            <Th>State</Th>
            <Th>OS</Th>
            <Th>CPUs</Th>
            <Th>Memory</Th>
            <Th screenReaderText="Actions" />
          </Tr>
        </Thead>
        <Tbody>
          {vms?.length === 0 && (
            <Tr>
              <Td colSpan={6}>
                No VMs yet. Create one with <code>phyllome create NAME --os ID</code> or{' '}
                <code>--iso FILE</code>.
              </Td>
            </Tr>
          )}
          {vms?.map((vm) => (
            <Tr key={vm.name} data-vm={vm.name}>
              <Td dataLabel="Name">{vm.name}</Td>
              <Td dataLabel="State">
                <Label color={stateColor[vm.state]} data-state={vm.state}>
                  {vm.state}
                </Label>
                {vm.reason && <span className="pf-v6-u-ml-sm">{vm.reason}</span>}
              </Td>
              <Td dataLabel="OS">{vm.spec.os ?? '-'}</Td>
              <Td dataLabel="CPUs">{vm.spec.cpus}</Td>
              <Td dataLabel="Memory">{vm.spec.memory}</Td>
              <Td dataLabel="Actions" isActionCell>
                <Flex spaceItems={{ default: 'spaceItemsSm' }} flexWrap={{ default: 'nowrap' }}>
                  {actionsFor(vm.state).map((action) => (
                    <Button
                      key={action}
                      size="sm"
                      variant={action === 'force-stop' ? 'danger' : 'secondary'}
                      isDisabled={busy.has(vm.name)}
                      aria-label={`${actionLabel[action]} ${vm.name}`}
                      onClick={() => void act(vm, action)}
                    >
                      {actionLabel[action]}
                    </Button>
                  ))}
                </Flex>
              </Td>
            </Tr>
          ))}
        </Tbody>
      </Table>
    </>
  );
}
