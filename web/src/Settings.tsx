import {
  Button,
  Checkbox,
  DescriptionList,
  DescriptionListDescription,
  DescriptionListGroup,
  DescriptionListTerm,
  Flex,
  Form,
  FormGroup,
  FormSelect,
  FormSelectOption,
  Switch,
  TextInput,
  Title,
} from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import { useState } from 'react';
import type { Vm } from './api.js';
import { RowButton } from './Controls.js';
import { Problem, useResource } from './resource.js';

interface Forward {
  nic: number;
  proto: 'tcp' | 'udp';
  hostPort: number;
  guestPort: number;
  public: boolean;
}

const firmwareText = (f: Vm['spec']['firmware']) =>
  f.type === 'bios' ? 'BIOS' : `UEFI${f.secureBoot ? ' with Secure Boot' : ''}`;

/**
 * What a VM is made of. CPUs and memory change while it is stopped, port forwards and host-loopback
 * access at any time; the devices are fixed at creation (no route changes them), so they are shown.
 */
export function Settings({ vm, changed }: { vm: Vm; changed: () => void }) {
  const base = `/v1/vms/${encodeURIComponent(vm.name)}`;
  const info = useResource<Vm>(base, vm.state);
  const fwd = useResource<{ forwards: Forward[] }>(`${base}/forwards`);
  const [draft, setDraft] = useState({ hostPort: '', guestPort: '', proto: 'tcp', public: false });
  const [resources, setResources] = useState<{ cpus?: string; memory?: string }>({});
  const spec = info.data?.spec;
  const userNics = spec?.nics.flatMap((n, i) => (n.net.type === 'user' ? [{ nic: i, ...n }] : [])) ?? [];
  const add = async () => {
    const body = { ...draft, hostPort: Number(draft.hostPort), guestPort: Number(draft.guestPort) };
    if (await fwd.change('POST', `${base}/forwards`, body))
      setDraft({ hostPort: '', guestPort: '', proto: 'tcp', public: false });
  };
  const save = async () => {
    const body = {
      ...(resources.cpus ? { cpus: Number(resources.cpus) } : {}),
      ...(resources.memory ? { memory: resources.memory } : {}),
    };
    if (await info.change('PATCH', base, body)) {
      setResources({});
      changed();
    }
  };
  const row = (term: string, value: string | number) => (
    <DescriptionListGroup>
      <DescriptionListTerm>{term}</DescriptionListTerm>
      <DescriptionListDescription>{value}</DescriptionListDescription>
    </DescriptionListGroup>
  );
  return (
    <>
      {spec && (
        <DescriptionList isHorizontal isCompact aria-label={`Settings of ${vm.name}`}>
          {row('OS', spec.os ?? '-')}
          {row('Machine', spec.machine)}
          {row('Firmware', firmwareText(spec.firmware))}
          {row('Graphics', spec.graphics.device)}
          {row('NICs', spec.nics.map((n) => `${n.model} on ${n.net.type}`).join(', ') || 'none')}
        </DescriptionList>
      )}
      <Problem error={info.error} clear={info.clearError} />
      {spec && (
        <Form
          className="pf-v6-u-mt-md"
          onSubmit={(e) => {
            e.preventDefault();
            void save();
          }}
        >
          <Flex alignItems={{ default: 'alignItemsFlexEnd' }}>
            <FormGroup label="CPUs" fieldId="set-cpus">
              <TextInput
                id="set-cpus"
                inputMode="numeric"
                isDisabled={vm.state !== 'stopped'}
                value={resources.cpus ?? String(spec.cpus)}
                onChange={(_e, cpus) => setResources({ ...resources, cpus })}
              />
            </FormGroup>
            <FormGroup label="Memory (like 2G)" fieldId="set-memory">
              <TextInput
                id="set-memory"
                isDisabled={vm.state !== 'stopped'}
                value={resources.memory ?? spec.memory}
                onChange={(_e, memory) => setResources({ ...resources, memory })}
              />
            </FormGroup>
            <Button
              type="submit"
              isDisabled={vm.state !== 'stopped' || info.busy || (!resources.cpus && !resources.memory)}
            >
              Save
            </Button>
          </Flex>
          {vm.state !== 'stopped' && <p>Stop the VM to change its CPUs or memory.</p>}
        </Form>
      )}
      {userNics.map((n) => (
        <Switch
          key={n.nic}
          className="pf-v6-u-mt-md"
          id={`host-loopback-${n.nic}`}
          label={`NIC ${n.nic} may reach the host's loopback services (from the next start)`}
          isChecked={!!n.net.hostLoopback}
          isDisabled={info.busy}
          onChange={(_e, enabled) =>
            void info.change('POST', `${base}/host-loopback?nic=${n.nic}`, { enabled })
          }
        />
      ))}
      {userNics.length > 0 && (
        <>
          <Title headingLevel="h4" className="pf-v6-u-mt-lg pf-v6-u-mb-sm">
            Port forwards
          </Title>
          <Problem error={fwd.error} clear={fwd.clearError} />
          <Form
            onSubmit={(e) => {
              e.preventDefault();
              void add();
            }}
          >
            <Flex alignItems={{ default: 'alignItemsFlexEnd' }}>
              <FormGroup label="Host port" fieldId="fwd-host">
                <TextInput
                  id="fwd-host"
                  inputMode="numeric"
                  value={draft.hostPort}
                  onChange={(_e, v) => setDraft({ ...draft, hostPort: v })}
                />
              </FormGroup>
              <FormGroup label="Guest port" fieldId="fwd-guest">
                <TextInput
                  id="fwd-guest"
                  inputMode="numeric"
                  value={draft.guestPort}
                  onChange={(_e, v) => setDraft({ ...draft, guestPort: v })}
                />
              </FormGroup>
              <FormGroup label="Protocol" fieldId="fwd-proto">
                <FormSelect
                  id="fwd-proto"
                  value={draft.proto}
                  onChange={(_e, v) => setDraft({ ...draft, proto: v })}
                >
                  <FormSelectOption value="tcp" label="TCP" />
                  <FormSelectOption value="udp" label="UDP" />
                </FormSelect>
              </FormGroup>
              <Checkbox
                id="fwd-public"
                label="On every host address (not only 127.0.0.1)"
                isChecked={draft.public}
                onChange={(_e, v) => setDraft({ ...draft, public: v })}
              />
              <Button type="submit" isDisabled={!draft.hostPort || !draft.guestPort || fwd.busy}>
                Add forward
              </Button>
            </Flex>
          </Form>
          <Table aria-label={`Port forwards of ${vm.name}`} variant="compact">
            <Thead>
              <Tr>
                <Th>NIC</Th>
                <Th>Host</Th>
                <Th>Guest port</Th>
                <Th screenReaderText="Actions" />
              </Tr>
            </Thead>
            <Tbody>
              {fwd.data?.forwards.map((f) => (
                <Tr key={`${f.nic}/${f.proto}/${f.hostPort}`}>
                  <Td dataLabel="NIC">{f.nic}</Td>
                  <Td dataLabel="Host">
                    {f.public ? '*' : '127.0.0.1'}:{f.hostPort}/{f.proto}
                  </Td>
                  <Td dataLabel="Guest port">{f.guestPort}</Td>
                  <Td dataLabel="Actions" isActionCell>
                    <RowButton
                      label="Remove"
                      on={`forward ${f.proto} ${f.hostPort}`}
                      isDisabled={fwd.busy}
                      onClick={() =>
                        void fwd.change('DELETE', `${base}/forwards/${f.proto}/${f.hostPort}?nic=${f.nic}`)
                      }
                    />
                  </Td>
                </Tr>
              ))}
            </Tbody>
          </Table>
        </>
      )}
    </>
  );
}
