import { Alert, AlertActionCloseButton, Button, Flex, Title } from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import { useState } from 'react';
import { ImportVm } from './ImportVm.js';
import { LoginProblem } from './LoginProblem.js';
import { OpProgressBar } from './OpProgress.js';
import { link, vmPath } from './nav.js';
import { VmActions, VmState } from './VmActions.js';
import { useVms } from './vms.js';

/** Problems shared by the pages: the event stream lost, an action refused. */
export function VmAlerts({ v }: { v: ReturnType<typeof useVms> }) {
  return (
    <>
      {!v.connected && (
        <Alert isInline variant="warning" title="Lost the connection to phyllomed: reconnecting" />
      )}
      {v.error && (
        <Alert
          isInline
          variant="danger"
          title={v.error}
          actionClose={<AlertActionCloseButton onClose={v.clearError} />}
        />
      )}
    </>
  );
}

export function VmList() {
  const v = useVms();
  const [importing, setImporting] = useState(false);
  if (v.loggedOut) return <LoginProblem message={v.loggedOut} />;
  return (
    <>
      <Flex justifyContent={{ default: 'justifyContentSpaceBetween' }}>
        <Title headingLevel="h2">Virtual machines</Title>
        <Flex spaceItems={{ default: 'spaceItemsSm' }}>
          <Button variant="secondary" onClick={() => setImporting(true)}>
            Import VM
          </Button>
          <Button variant="primary" component="a" {...link('/create')}>
            Create VM
          </Button>
        </Flex>
      </Flex>
      {importing && <ImportVm onClose={() => setImporting(false)} />}
      <VmAlerts v={v} />
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
          {v.vms?.length === 0 && (
            <Tr>
              <Td colSpan={6}>
                No VMs yet. Create one with <code>phyllome create NAME --os ID</code> or{' '}
                <code>--iso FILE</code>.
              </Td>
            </Tr>
          )}
          {v.vms?.map((vm) => (
            <Tr key={vm.name}>
              <Td dataLabel="Name">
                <a {...link(vmPath(vm.name))}>{vm.name}</a>
              </Td>
              <Td dataLabel="State">
                <VmState vm={vm} />
                <OpProgressBar vm={vm.name} progress={v.progress.get(vm.name)} />
              </Td>
              <Td dataLabel="OS">{vm.spec.os ?? '-'}</Td>
              <Td dataLabel="CPUs">{vm.spec.cpus}</Td>
              <Td dataLabel="Memory">{vm.spec.memory}</Td>
              <Td dataLabel="Actions" isActionCell>
                <VmActions vm={vm} busy={v.busy.has(vm.name)} act={(vm, a) => void v.act(vm, a)} />
              </Td>
            </Tr>
          ))}
        </Tbody>
      </Table>
    </>
  );
}
