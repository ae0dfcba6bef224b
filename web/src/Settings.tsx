import { Button, Checkbox, DescriptionList, Flex, Form, FormGroup, TextInput } from '@patternfly/react-core';
import { useState } from 'react';
import type { Vm } from './api.js';
import { Term } from './Controls.js';
import { Problem, useResource } from './resource.js';

const firmwareText = (f: Vm['spec']['firmware']) =>
  f.type === 'bios' ? 'BIOS' : `UEFI${f.secureBoot ? ' with Secure Boot' : ''}`;

/**
 * What a VM is made of. CPUs, memory and a window on the host's screen change while it is stopped
 * (forwards and host loopback are on the Network tab); the devices are fixed at creation (no route
 * changes them), so they are shown.
 */
export function Settings({ vm, changed }: { vm: Vm; changed: () => void }) {
  const base = `/v1/vms/${encodeURIComponent(vm.name)}`;
  const info = useResource<Vm>(base, vm.state);
  const [resources, setResources] = useState<{ cpus?: string; memory?: string; window?: boolean }>({});
  const spec = info.data?.spec;
  const save = async () => {
    const body = {
      ...(resources.cpus ? { cpus: Number(resources.cpus) } : {}),
      ...(resources.memory ? { memory: resources.memory } : {}),
      ...(resources.window !== undefined ? { window: resources.window } : {}),
    };
    if (await info.change('PATCH', base, body)) {
      setResources({});
      changed();
    }
  };
  return (
    <>
      {spec && (
        <DescriptionList isHorizontal isCompact aria-label={`Settings of ${vm.name}`}>
          <Term term="OS" value={spec.os ?? '-'} />
          <Term term="Machine" value={spec.machine} />
          <Term term="Firmware" value={firmwareText(spec.firmware)} />
          <Term
            term="Graphics"
            value={`${spec.graphics.device}${spec.graphics.window ? ", also in a window on the host's screen" : ''}`}
          />
          <Term
            term="NICs"
            value={spec.nics.map((n) => `${n.model} on ${n.net.type}`).join(', ') || 'none'}
          />
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
            {spec.graphics.device !== 'none' && (
              <Checkbox
                id="set-window"
                label="Also in a window on the host's screen"
                description="The daemon needs a graphical session; 3D is drawn there"
                isDisabled={vm.state !== 'stopped'}
                isChecked={resources.window ?? !!spec.graphics.window}
                onChange={(_e, window) => setResources({ ...resources, window })}
              />
            )}
            <Button
              type="submit"
              isDisabled={
                vm.state !== 'stopped' ||
                info.busy ||
                (!resources.cpus && !resources.memory && resources.window === undefined)
              }
            >
              Save
            </Button>
          </Flex>
          {vm.state !== 'stopped' && <p>Stop the VM to change its CPUs, memory or window.</p>}
        </Form>
      )}
    </>
  );
}
