import { Button, Flex, Form, TextInput } from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import { useState } from 'react';
import type { Vm } from './api.js';
import { Confirm } from './Confirm.js';
import { OneField, RowButton } from './Controls.js';
import { formatBytes, Problem, useResource } from './resource.js';

interface Disk {
  id: string;
  path: string;
  format: string;
  bus: string;
  encrypted: boolean;
  readOnly: boolean;
  virtualSize?: number;
  allocated?: number;
}

/** A VM's disks: add a new one, grow one (the daemon refuses to shrink), detach one. */
export function Disks({ vm }: { vm: Vm }) {
  const base = `/v1/vms/${encodeURIComponent(vm.name)}/disks`;
  const r = useResource<{ disks: Disk[] }>(base, vm.state);
  const [resizing, setResizing] = useState<{ id: string; size: string } | undefined>();
  const [removing, setRemoving] = useState<string | undefined>();
  const resize = async () => {
    if (resizing && (await r.change('POST', `${base}/${resizing.id}/resize`, { size: resizing.size })))
      setResizing(undefined);
  };
  return (
    <>
      <Problem error={r.error} clear={r.clearError} />
      <OneField
        id="disk-size"
        label="New disk size (like 10G; encrypted qcow2)"
        button="Add disk"
        busy={r.busy}
        submit={(size) => r.change('POST', base, { size })}
      />
      <Table aria-label={`Disks of ${vm.name}`} variant="compact">
        <Thead>
          <Tr>
            <Th>Disk</Th>
            <Th>Image</Th>
            <Th>Size</Th>
            <Th>On the host</Th>
            <Th>Format</Th>
            <Th>Encrypted</Th>
            <Th>Bus</Th>
            <Th screenReaderText="Actions" />
          </Tr>
        </Thead>
        <Tbody>
          {r.data?.disks.length === 0 && (
            <Tr>
              <Td colSpan={8}>No disks.</Td>
            </Tr>
          )}
          {r.data?.disks.map((d) => (
            <Tr key={d.id}>
              <Td dataLabel="Disk">{d.id}</Td>
              <Td dataLabel="Image" modifier="breakWord">
                {d.path}
                {d.readOnly && ' (read-only)'}
              </Td>
              <Td dataLabel="Size">{d.virtualSize === undefined ? '-' : formatBytes(d.virtualSize)}</Td>
              <Td dataLabel="On the host">{d.allocated === undefined ? '-' : formatBytes(d.allocated)}</Td>
              <Td dataLabel="Format">{d.format}</Td>
              <Td dataLabel="Encrypted">{d.encrypted ? 'yes' : 'no'}</Td>
              <Td dataLabel="Bus">{d.bus}</Td>
              <Td dataLabel="Actions" isActionCell>
                {resizing?.id === d.id ? (
                  <Form
                    onSubmit={(e) => {
                      e.preventDefault();
                      void resize();
                    }}
                  >
                    <Flex spaceItems={{ default: 'spaceItemsSm' }} flexWrap={{ default: 'nowrap' }}>
                      <TextInput
                        aria-label={`New size of ${d.id} (grow only, like 20G)`}
                        value={resizing.size}
                        onChange={(_e, v) => setResizing({ id: d.id, size: v })}
                      />
                      <Button
                        size="sm"
                        type="submit"
                        aria-label={`Grow ${d.id}`}
                        isDisabled={!resizing.size || r.busy}
                      >
                        Grow
                      </Button>
                      <Button size="sm" variant="link" onClick={() => setResizing(undefined)}>
                        Cancel
                      </Button>
                    </Flex>
                  </Form>
                ) : (
                  <Flex spaceItems={{ default: 'spaceItemsSm' }} flexWrap={{ default: 'nowrap' }}>
                    <RowButton
                      label="Resize"
                      on={d.id}
                      isDisabled={r.busy}
                      onClick={() => setResizing({ id: d.id, size: '' })}
                    />
                    <RowButton
                      label="Remove"
                      on={d.id}
                      danger
                      isDisabled={r.busy}
                      onClick={() => setRemoving(d.id)}
                    />
                  </Flex>
                )}
              </Td>
            </Tr>
          ))}
        </Tbody>
      </Table>
      {removing && (
        <Confirm
          title={`Remove ${removing} from ${vm.name}?`}
          action="Remove"
          onConfirm={() => {
            void r.change('DELETE', `${base}/${removing}`);
            setRemoving(undefined);
          }}
          onCancel={() => setRemoving(undefined)}
        >
          The disk is detached (unplugged now if the VM runs); its image file stays on the host.
        </Confirm>
      )}
    </>
  );
}
