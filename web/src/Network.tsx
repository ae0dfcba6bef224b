import {
  Alert,
  AlertActionCloseButton,
  Button,
  Checkbox,
  DescriptionList,
  Flex,
  Form,
  FormGroup,
  FormHelperText,
  FormSelect,
  FormSelectOption,
  HelperText,
  HelperTextItem,
  Switch,
  Title,
} from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import { useState } from 'react';
import type { Vm } from './api.js';
import { RowButton, Term } from './Controls.js';
import {
  changeNotice,
  emptyForward,
  forwardText,
  networkWarnings,
  nicRows,
  parseForwardDraft,
  type Forward,
  type ForwardDraft,
  type NetChange,
  type NicRow,
  type VmNetInfo,
} from './network.js';
import { Problem, useResource } from './resource.js';
import { TextField } from './TextField.js';

/**
 * A VM's NICs, what each is plugged into and the guest's addresses on it; on user-mode NICs, the
 * port forwards (add, remove) and host-loopback access, as `phyllome net` changes them.
 */
export function Network({ vm }: { vm: Vm }) {
  const base = `/v1/vms/${encodeURIComponent(vm.name)}`;
  const r = useResource<VmNetInfo>(base, vm.state);
  const [notice, setNotice] = useState<string | undefined>();
  /** One change to a user-mode NIC; the notice says what it did and when it applies. */
  const change = (method: string, path: string, body: unknown, done: string) => {
    setNotice(undefined);
    return r.change<NetChange>(method, path, body, (c) => setNotice(changeNotice(done, c, vm.name)));
  };
  const rows = r.data ? nicRows(r.data) : [];
  return (
    <>
      <Problem error={r.error} clear={r.clearError} />
      {notice && (
        <Alert
          isInline
          variant="info"
          title={notice}
          className="pf-v6-u-mb-md"
          actionClose={<AlertActionCloseButton onClose={() => setNotice(undefined)} />}
        />
      )}
      {r.data &&
        networkWarnings(r.data).map((w) => (
          <Alert key={w} isInline variant="warning" title={w} className="pf-v6-u-mb-md" />
        ))}
      {r.data && rows.length === 0 && <p>{vm.name} has no NICs.</p>}
      {rows.map((nic) => (
        <section key={nic.index} aria-label={`NIC ${nic.index} of ${vm.name}`} className="pf-v6-u-mb-lg">
          <Title headingLevel="h3" className="pf-v6-u-mt-md pf-v6-u-mb-sm">
            NIC {nic.index}: {nic.network}
          </Title>
          <DescriptionList isHorizontal isCompact>
            <Term term="Model" value={nic.model} />
            <Term term="MAC" value={nic.mac} />
            <Term term="Addresses" value={nic.addresses} />
            {nic.reason && <Term term="Why this backend" value={nic.reason} />}
          </DescriptionList>
          {nic.user && (
            <UserNic
              vm={vm.name}
              index={nic.index}
              user={nic.user}
              base={base}
              busy={r.busy}
              change={change}
            />
          )}
        </section>
      ))}
    </>
  );
}

/** A user-mode NIC's host-loopback switch, its forwards and the form that adds one. */
function UserNic(props: {
  vm: string;
  index: number;
  user: NonNullable<NicRow['user']>;
  base: string;
  busy: boolean;
  change: (method: string, path: string, body: unknown, done: string) => Promise<boolean>;
}) {
  const { vm, index, user, base, busy, change } = props;
  const [draft, setDraft] = useState<ForwardDraft>(emptyForward);
  const [invalid, setInvalid] = useState<string | undefined>();
  const id = (what: string) => `nic${index}-${what}`;
  const query = `?nic=${index}`;
  const port = (key: 'hostPort' | 'guestPort', label: string) => (
    <TextField
      id={id(key)}
      label={label}
      value={draft[key]}
      onChange={(v) => setDraft({ ...draft, [key]: v })}
    />
  );
  const add = async () => {
    const parsed = parseForwardDraft(draft);
    if ('error' in parsed) return setInvalid(parsed.error);
    setInvalid(undefined);
    const f = parsed.forward;
    if (await change('POST', `${base}/forwards${query}`, f, `Forwarding ${forwardText(f)} to "${vm}"`))
      setDraft(emptyForward);
  };
  const remove = (f: Forward) =>
    void change(
      'DELETE',
      `${base}/forwards/${f.proto}/${f.hostPort}${query}`,
      undefined,
      `Removed the forward of host port ${f.hostPort}/${f.proto}`,
    );
  return (
    <>
      <Switch
        className="pf-v6-u-mt-md"
        id={id('loopback')}
        label="The guest may reach services on the host's loopback (off by default: safer)"
        isChecked={user.hostLoopback}
        isDisabled={busy}
        onChange={(_e, enabled) =>
          void change(
            'POST',
            `${base}/host-loopback${query}`,
            { enabled },
            `Host loopback ${enabled ? 'reachable from' : 'closed to'} "${vm}"`,
          )
        }
      />
      <Title headingLevel="h4" className="pf-v6-u-mt-md pf-v6-u-mb-sm">
        Port forwards
      </Title>
      <Form
        onSubmit={(e) => {
          e.preventDefault();
          void add();
        }}
      >
        <Flex alignItems={{ default: 'alignItemsFlexEnd' }}>
          {port('hostPort', 'Host port')}
          {port('guestPort', 'Guest port')}
          <FormGroup label="Protocol" fieldId={id('proto')}>
            <FormSelect
              id={id('proto')}
              value={draft.proto}
              onChange={(_e, v) => setDraft({ ...draft, proto: v as Forward['proto'] })}
            >
              <FormSelectOption value="tcp" label="TCP" />
              <FormSelectOption value="udp" label="UDP" />
            </FormSelect>
          </FormGroup>
          <Checkbox
            id={id('public')}
            label="Public: on every host address"
            isChecked={draft.public}
            onChange={(_e, v) => setDraft({ ...draft, public: v })}
          />
          <Button type="submit" isDisabled={!draft.hostPort || !draft.guestPort || busy}>
            Add forward
          </Button>
        </Flex>
        <FormHelperText>
          <HelperText>
            <HelperTextItem variant={invalid ? 'error' : 'default'}>
              {invalid ??
                'The host port listens on 127.0.0.1 only, for this host alone, unless public: then the LAN reaches it too.'}
            </HelperTextItem>
          </HelperText>
        </FormHelperText>
      </Form>
      <Table aria-label={`Port forwards of NIC ${index}`} variant="compact">
        <Thead>
          <Tr>
            <Th>Host</Th>
            <Th>Guest port</Th>
            <Th>Protocol</Th>
            <Th screenReaderText="Actions" />
          </Tr>
        </Thead>
        <Tbody>
          {user.forwards.length === 0 && (
            <Tr>
              <Td colSpan={4}>No port forwards.</Td>
            </Tr>
          )}
          {user.forwards.map((f) => (
            <Tr key={`${f.proto}/${f.hostPort}`}>
              <Td dataLabel="Host">
                {f.public ? '*' : '127.0.0.1'}:{f.hostPort}
              </Td>
              <Td dataLabel="Guest port">{f.guestPort}</Td>
              <Td dataLabel="Protocol">{f.proto}</Td>
              <Td dataLabel="Actions" isActionCell>
                <RowButton
                  label="Remove"
                  on={`forward ${f.hostPort}/${f.proto}`}
                  isDisabled={busy}
                  onClick={() => remove(f)}
                />
              </Td>
            </Tr>
          ))}
        </Tbody>
      </Table>
    </>
  );
}
