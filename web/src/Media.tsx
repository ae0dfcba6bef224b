import { Button, Flex, FormSelect, FormSelectOption, TextInput } from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import { useState } from 'react';
import type { Vm } from './api.js';
import { RowButton } from './Controls.js';
import type { IsoFile } from './isos.js';
import { Problem, useResource } from './resource.js';

interface Drive {
  drive: number;
  role: string;
  path?: string;
}

/** Marks the "type a host path" choice among the uploaded ISOs. */
const HOST_PATH = '';

/** A VM's CD-ROM trays: insert an uploaded ISO or any ISO on the host, eject (live while running). */
export function Media({ vm }: { vm: Vm }) {
  const base = `/v1/vms/${encodeURIComponent(vm.name)}/media`;
  const r = useResource<{ drives: Drive[] }>(base, vm.state);
  const isos = useResource<{ isos: IsoFile[] }>('/v1/isos');
  const [chosen, setChosen] = useState<Record<number, string>>({});
  const [typed, setTyped] = useState<Record<number, string>>({});
  const insertPath = (d: number) => chosen[d] || typed[d] || '';
  // A stopped VM with no CD-ROM gets one with its first medium.
  const drives: Drive[] = r.data?.drives.length
    ? r.data.drives
    : vm.state === 'stopped'
      ? [{ drive: 0, role: 'none yet: inserting adds one' }]
      : [];
  return (
    <>
      <Problem error={r.error ?? isos.error} clear={r.error ? r.clearError : isos.clearError} />
      {r.data && drives.length === 0 && (
        <p>{vm.name} has no CD-ROM drive: one can be added while it is stopped.</p>
      )}
      {r.data && drives.length > 0 && (
        <Table aria-label={`CD-ROM drives of ${vm.name}`} variant="compact">
          <Thead>
            <Tr>
              <Th>Drive</Th>
              <Th>Role</Th>
              <Th>Medium</Th>
              <Th>Insert</Th>
              <Th screenReaderText="Actions" />
            </Tr>
          </Thead>
          <Tbody>
            {drives.map((d) => (
              <Tr key={d.drive}>
                <Td dataLabel="Drive">{d.drive}</Td>
                <Td dataLabel="Role">{d.role}</Td>
                <Td dataLabel="Medium" modifier="breakWord">
                  {d.path ?? 'empty'}
                </Td>
                <Td dataLabel="Insert">
                  <Flex spaceItems={{ default: 'spaceItemsSm' }} flexWrap={{ default: 'nowrap' }}>
                    <FormSelect
                      aria-label={`ISO for drive ${d.drive}`}
                      value={chosen[d.drive] ?? HOST_PATH}
                      onChange={(_e, v) => setChosen({ ...chosen, [d.drive]: v })}
                    >
                      <FormSelectOption value={HOST_PATH} label="A path on the host" />
                      {isos.data?.isos.map((iso) => (
                        <FormSelectOption
                          key={iso.name}
                          value={iso.path}
                          label={iso.os ? `${iso.name} (${iso.os.name})` : iso.name}
                        />
                      ))}
                    </FormSelect>
                    {!chosen[d.drive] && (
                      <TextInput
                        aria-label={`Host path of the ISO for drive ${d.drive}`}
                        placeholder="/srv/isos/installer.iso"
                        value={typed[d.drive] ?? ''}
                        onChange={(_e, v) => setTyped({ ...typed, [d.drive]: v })}
                      />
                    )}
                    <Button
                      size="sm"
                      variant="secondary"
                      isDisabled={!insertPath(d.drive) || r.busy}
                      aria-label={`Insert into drive ${d.drive}`}
                      onClick={() =>
                        void r.change('POST', base, { drive: d.drive, path: insertPath(d.drive) })
                      }
                    >
                      Insert
                    </Button>
                  </Flex>
                </Td>
                <Td dataLabel="Actions" isActionCell>
                  <RowButton
                    label="Eject"
                    on={`drive ${d.drive}`}
                    isDisabled={!d.path || r.busy}
                    onClick={() => void r.change('POST', base, { drive: d.drive })}
                  />
                </Td>
              </Tr>
            ))}
          </Tbody>
        </Table>
      )}
    </>
  );
}
