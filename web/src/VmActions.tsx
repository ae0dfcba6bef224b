import { Button, Flex, Label } from '@patternfly/react-core';
import type { Vm } from './api.js';
import { actionLabel, actionsFor, type Action } from './vms.js';

const stateColor = {
  running: 'green',
  paused: 'orange',
  stopped: 'grey',
  starting: 'blue',
  stopping: 'blue',
} as const;

export function VmState({ vm }: { vm: Vm }) {
  return (
    <>
      <Label color={stateColor[vm.state]}>{vm.state}</Label>
      {vm.reason && <span className="pf-v6-u-ml-sm">{vm.reason}</span>}
    </>
  );
}

/** The buttons for what the VM can do now, each named after its VM for screen readers. */
export function VmActions(props: { vm: Vm; busy: boolean; act: (vm: Vm, action: Action) => void }) {
  const { vm } = props;
  return (
    <Flex spaceItems={{ default: 'spaceItemsSm' }} flexWrap={{ default: 'nowrap' }}>
      {actionsFor(vm.state).map((action) => (
        <Button
          key={action}
          size="sm"
          variant={action === 'force-stop' ? 'danger' : 'secondary'}
          isDisabled={props.busy}
          aria-label={`${actionLabel[action]} ${vm.name}`}
          onClick={() => props.act(vm, action)}
        >
          {actionLabel[action]}
        </Button>
      ))}
    </Flex>
  );
}
