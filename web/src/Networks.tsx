import { Button, Checkbox, Flex, Form, Title } from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import { useState } from 'react';
import { Confirm } from './Confirm.js';
import { RowButton } from './Controls.js';
import { networkBody, networkState, type PrivateNetwork } from './network.js';
import { Problem, useResource } from './resource.js';
import { TextField } from './TextField.js';

const emptyDraft = { name: '', subnet: '', nat: false };

/** `phyllome network`: the private networks (a bridge with DHCP, optional NAT); create, delete. */
export function Networks() {
  const r = useResource<PrivateNetwork[]>('/v1/networks');
  const [draft, setDraft] = useState(emptyDraft);
  const [deleting, setDeleting] = useState<string | undefined>();
  const field = (key: 'name' | 'subnet', label: string, help: string) => (
    <TextField
      id={`network-${key}`}
      label={label}
      help={help}
      value={draft[key]}
      onChange={(v) => setDraft({ ...draft, [key]: v })}
    />
  );
  const create = async () => {
    if (await r.change('POST', '/v1/networks', networkBody(draft))) setDraft(emptyDraft);
  };
  return (
    <>
      <Title headingLevel="h2">Private networks</Title>
      <p className="pf-v6-u-my-sm">
        A bridge on the host with DHCP and, if asked, NAT to the outside; a VM joins one with a NIC on{' '}
        <code>network=NAME</code>. Making one needs phyllomed to run as root.
      </p>
      <Problem error={r.error} clear={r.clearError} />
      <Form
        onSubmit={(e) => {
          e.preventDefault();
          void create();
        }}
      >
        <Flex alignItems={{ default: 'alignItemsFlexEnd' }}>
          {field('name', 'Name', 'up to 12 lowercase letters, digits and -')}
          {field('subnet', 'Subnet (optional)', 'like 10.77.0.0/24; a free 10.77.N.0/24 when empty')}
          <Checkbox
            id="network-nat"
            label="NAT to the outside through the host"
            isChecked={draft.nat}
            onChange={(_e, nat) => setDraft({ ...draft, nat })}
          />
          <Button type="submit" isDisabled={!draft.name.trim() || r.busy} isLoading={r.busy}>
            Create network
          </Button>
        </Flex>
      </Form>
      <Table aria-label="Private networks" variant="compact" className="pf-v6-u-mt-md">
        <Thead>
          <Tr>
            <Th>Name</Th>
            <Th>Subnet</Th>
            <Th>Gateway</Th>
            <Th>NAT</Th>
            <Th>Bridge</Th>
            <Th>State</Th>
            <Th>VMs</Th>
            <Th>DHCP leases</Th>
            <Th screenReaderText="Actions" />
          </Tr>
        </Thead>
        <Tbody>
          {r.data?.length === 0 && (
            <Tr>
              <Td colSpan={9}>No private networks.</Td>
            </Tr>
          )}
          {r.data?.map((n) => (
            <Tr key={n.name}>
              <Td dataLabel="Name">{n.name}</Td>
              <Td dataLabel="Subnet">{n.subnet}</Td>
              <Td dataLabel="Gateway">{n.gateway}</Td>
              <Td dataLabel="NAT">{n.nat ? 'yes' : 'no'}</Td>
              <Td dataLabel="Bridge">{n.bridge}</Td>
              <Td dataLabel="State">{networkState(n)}</Td>
              <Td dataLabel="VMs">{n.vms.join(', ') || '-'}</Td>
              <Td dataLabel="DHCP leases">{n.leases.map((l) => `${l.ip} ${l.mac}`).join(', ') || '-'}</Td>
              <Td dataLabel="Actions" isActionCell>
                <RowButton
                  label="Delete"
                  on={`network ${n.name}`}
                  danger
                  isDisabled={r.busy}
                  onClick={() => setDeleting(n.name)}
                />
              </Td>
            </Tr>
          ))}
        </Tbody>
      </Table>
      {deleting && (
        <Confirm
          title={`Delete network ${deleting}?`}
          action="Delete"
          onConfirm={() => {
            void r.change('DELETE', `/v1/networks/${encodeURIComponent(deleting)}`);
            setDeleting(undefined);
          }}
          onCancel={() => setDeleting(undefined)}
        >
          Its bridge, DHCP server and NAT rules go. A stopped VM on it keeps its NIC, and cannot start until a
          network of that name exists again.
        </Confirm>
      )}
    </>
  );
}
