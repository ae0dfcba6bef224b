import { Flex, Label } from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import { useState } from 'react';
import type { Vm } from './api.js';
import { Confirm } from './Confirm.js';
import { OneField, RowButton } from './Controls.js';
import { Problem, useResource } from './resource.js';
import { snapshotRows, type Snapshot } from './snapshot-rows.js';

/** A VM's snapshots as a tree: take one, revert to one (stopped VMs), delete one. */
export function Snapshots({ vm }: { vm: Vm }) {
  const base = `/v1/vms/${encodeURIComponent(vm.name)}/snapshots`;
  const r = useResource<{ current?: string; snapshots: Snapshot[] }>(base, vm.state);
  const [ask, setAsk] = useState<{ what: 'revert' | 'delete'; snap: string } | undefined>();
  const confirmed = () => {
    if (!ask) return;
    const url = `${base}/${encodeURIComponent(ask.snap)}`;
    void (ask.what === 'revert' ? r.change('POST', `${url}/revert`) : r.change('DELETE', url));
    setAsk(undefined);
  };
  return (
    <>
      <Problem error={r.error} clear={r.clearError} />
      <OneField
        id="snapshot-name"
        label="New snapshot name"
        button="Take snapshot"
        busy={r.busy}
        submit={(name) => r.change('POST', base, { name })}
      />
      <Table aria-label={`Snapshots of ${vm.name}`} variant="compact">
        <Thead>
          <Tr>
            <Th>Name</Th>
            <Th>Taken</Th>
            <Th>Parent</Th>
            <Th screenReaderText="Actions" />
          </Tr>
        </Thead>
        <Tbody>
          {r.data?.snapshots.length === 0 && (
            <Tr>
              <Td colSpan={4}>No snapshots.</Td>
            </Tr>
          )}
          {r.data &&
            snapshotRows(r.data.snapshots).map(({ snap, depth }) => (
              <Tr key={snap.name}>
                <Td dataLabel="Name">
                  <span style={{ paddingInlineStart: `${depth * 1.5}rem` }}>{snap.name}</span>
                  {snap.name === r.data?.current && (
                    <Label isCompact color="blue" className="pf-v6-u-ml-sm">
                      current
                    </Label>
                  )}
                  {snap.live && (
                    <Label isCompact className="pf-v6-u-ml-sm">
                      live
                    </Label>
                  )}
                </Td>
                <Td dataLabel="Taken">{new Date(snap.createdAt).toLocaleString()}</Td>
                <Td dataLabel="Parent">{snap.parent ?? '-'}</Td>
                <Td dataLabel="Actions" isActionCell>
                  <Flex spaceItems={{ default: 'spaceItemsSm' }} flexWrap={{ default: 'nowrap' }}>
                    <RowButton
                      label="Revert"
                      on={`to ${snap.name}`}
                      isDisabled={r.busy || vm.state !== 'stopped'}
                      {...(vm.state === 'stopped' ? {} : { title: 'Stop the VM to revert it' })}
                      onClick={() => setAsk({ what: 'revert', snap: snap.name })}
                    />
                    <RowButton
                      label="Delete"
                      on={snap.name}
                      danger
                      isDisabled={r.busy}
                      onClick={() => setAsk({ what: 'delete', snap: snap.name })}
                    />
                  </Flex>
                </Td>
              </Tr>
            ))}
        </Tbody>
      </Table>
      {ask && (
        <Confirm
          title={ask.what === 'revert' ? `Revert ${vm.name} to ${ask.snap}?` : `Delete snapshot ${ask.snap}?`}
          action={ask.what === 'revert' ? 'Revert' : 'Delete'}
          onConfirm={confirmed}
          onCancel={() => setAsk(undefined)}
        >
          {ask.what === 'revert'
            ? 'Its disks, UEFI variables and TPM state go back to the snapshot: what changed since is lost.'
            : 'The snapshot is gone for good; the VM as it is now stays.'}
        </Confirm>
      )}
    </>
  );
}
