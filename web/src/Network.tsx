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
  emptyNic,
  forwardText,
  NIC_MODELS,
  NIC_TARGETS,
  networkWarnings,
  nicBody,
  nicRows,
  parseForwardDraft,
  type Forward,
  type ForwardDraft,
  type NetChange,
  type NicDraft,
  type NicKind,
  type NicRow,
  type PrivateNetwork,
  type VmNetInfo,
} from './network.js';
import { Confirm } from './Confirm.js';
import { Problem, useResource } from './resource.js';
import { TextField } from './TextField.js';

/**
 * A VM's NICs, what each is plugged into and the guest's addresses on it; on user-mode NICs, the
 * port forwards (add, remove) and host-loopback access, as `phyllome net` changes them. NICs are
 * added and removed while the VM is stopped (QEMU sets them at start).
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
  /** A NIC added or removed: the VM is stopped, so the guest sees it at its next start. */
  const hardware = (method: string, path: string, body: unknown, done: string) => {
    setNotice(undefined);
    return r.change(method, `${base}/nics${path}`, body, () =>
      setNotice(`${done}. The guest sees it from its next start.`),
    );
  };
  const rows = r.data ? nicRows(r.data) : [];
  const stopped = vm.state === 'stopped';
  const [removing, setRemoving] = useState<number | undefined>();
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
          <Flex alignItems={{ default: 'alignItemsCenter' }}>
            <Title headingLevel="h3" className="pf-v6-u-mt-md pf-v6-u-mb-sm">
              NIC {nic.index}: {nic.network}
            </Title>
            <Button
              variant="secondary"
              isDanger
              aria-label={`Remove NIC ${nic.index}`}
              isDisabled={!stopped || r.busy}
              onClick={() => setRemoving(nic.index)}
            >
              Remove
            </Button>
          </Flex>
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
      {removing !== undefined && (
        <Confirm
          title={`Remove NIC ${removing} of ${vm.name}?`}
          action="Remove"
          onConfirm={() => {
            void hardware('DELETE', `/${removing}`, undefined, `Removed NIC ${removing}`);
            setRemoving(undefined);
          }}
          onCancel={() => setRemoving(undefined)}
        >
          The guest loses that network card at its next start; its MAC goes with it. The NICs after it move up
          one.
        </Confirm>
      )}
      <AddNic
        stopped={stopped}
        busy={r.busy}
        add={(body) => hardware('POST', '', body, `Added a NIC to "${vm.name}"`)}
      />
    </>
  );
}

const KINDS: { kind: NicKind; label: string }[] = [
  { kind: 'user', label: 'User-mode networking (no root needed)' },
  { kind: 'network', label: 'A private network' },
  { kind: 'bridge', label: 'A host bridge' },
  { kind: 'macvtap', label: "A host NIC's LAN (macvtap)" },
];

/** A form's line under its fields: what is wrong with it, else how it works. */
function Hint({ error, help }: { error: string | undefined; help: string }) {
  return (
    <FormHelperText>
      <HelperText>
        <HelperTextItem variant={error ? 'error' : 'default'}>{error ?? help}</HelperTextItem>
      </HelperText>
    </FormHelperText>
  );
}

/** A labelled select of the add-NIC form. */
function Choice(c: {
  id: string;
  label: string;
  value: string;
  options: { value: string; label: string }[];
  onChange: (value: string) => void;
  disabled: boolean;
}) {
  return (
    <FormGroup label={c.label} fieldId={c.id}>
      <FormSelect id={c.id} value={c.value} isDisabled={c.disabled} onChange={(_e, v) => c.onChange(v)}>
        {c.options.map((o) => (
          <FormSelectOption key={o.value} value={o.value} label={o.label} />
        ))}
      </FormSelect>
    </FormGroup>
  );
}

/** The form that adds a NIC, as `phyllome net add` does; only while the VM is stopped. */
function AddNic(props: {
  stopped: boolean;
  busy: boolean;
  add: (body: Record<string, unknown>) => Promise<boolean>;
}) {
  const [draft, setDraft] = useState<NicDraft>(emptyNic);
  const [invalid, setInvalid] = useState<string | undefined>();
  const networks = useResource<PrivateNetwork[]>('/v1/networks');
  const submit = async () => {
    const parsed = nicBody(draft);
    if ('error' in parsed) return setInvalid(parsed.error);
    setInvalid(undefined);
    if (await props.add(parsed.body)) setDraft(emptyNic);
  };
  const target = draft.kind === 'user' ? undefined : NIC_TARGETS[draft.kind];
  return (
    <Form
      aria-label="Add a network interface"
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      <Title headingLevel="h3" className="pf-v6-u-mt-md">
        Add a network interface
      </Title>
      <Flex alignItems={{ default: 'alignItemsFlexEnd' }}>
        <Choice
          disabled={!props.stopped}
          id="nic-kind"
          label="Plugged into"
          value={draft.kind}
          options={KINDS.map((k) => ({ value: k.kind, label: k.label }))}
          onChange={(v) => setDraft({ ...draft, kind: v as NicKind, target: '' })}
        />
        {target && draft.kind === 'network' && (
          <Choice
            disabled={!props.stopped}
            id="nic-target"
            label={target.label}
            value={draft.target}
            options={[
              { value: '', label: 'Pick one' },
              ...(networks.data ?? []).map((n) => ({ value: n.name, label: `${n.name} (${n.subnet})` })),
            ]}
            onChange={(v) => setDraft({ ...draft, target: v })}
          />
        )}
        {target && draft.kind !== 'network' && (
          <TextField
            id="nic-target"
            label={target.label}
            value={draft.target}
            isDisabled={!props.stopped}
            onChange={(v) => setDraft({ ...draft, target: v })}
          />
        )}
        <Choice
          disabled={!props.stopped}
          id="nic-model"
          label="Model"
          value={draft.model}
          options={[
            { value: '', label: 'As the first NIC' },
            ...NIC_MODELS.map((m) => ({ value: m, label: m })),
          ]}
          onChange={(v) => setDraft({ ...draft, model: v })}
        />
        <Button type="submit" isDisabled={!props.stopped || props.busy}>
          Add NIC
        </Button>
      </Flex>
      <Hint
        error={invalid}
        help={
          props.stopped
            ? 'It gets a new MAC. Bridges and host NICs need phyllomed to run as root.'
            : 'Stop the VM to add or remove NICs: QEMU sets them at start.'
        }
      />
    </Form>
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
        <Hint
          error={invalid}
          help="The host port listens on 127.0.0.1 only, for this host alone, unless public: then the LAN reaches it too."
        />
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
