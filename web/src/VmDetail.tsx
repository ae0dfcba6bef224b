import {
  Breadcrumb,
  BreadcrumbItem,
  DescriptionList,
  DescriptionListDescription,
  DescriptionListGroup,
  DescriptionListTerm,
  Flex,
  Spinner,
  Title,
} from '@patternfly/react-core';
import { lazy, Suspense } from 'react';
import { Graphs } from './Graphs.js';
import { LoginProblem } from './LoginProblem.js';
import { link } from './nav.js';
import { VmActions, VmState } from './VmActions.js';
import { VmAlerts } from './VmList.js';
import { useVms } from './vms.js';

// xterm.js and noVNC load only when a console is shown: the list page stays small.
const SerialConsole = lazy(() => import('./SerialConsole.js'));
const Screen = lazy(() => import('./Screen.js'));

export function VmDetail({ name }: { name: string }) {
  const v = useVms();
  if (v.loggedOut) return <LoginProblem message={v.loggedOut} />;
  const vm = v.vms?.find((x) => x.name === name);
  const live = vm?.state === 'running' || vm?.state === 'paused';
  return (
    <>
      <Breadcrumb>
        <BreadcrumbItem>
          <a {...link('/')}>Virtual machines</a>
        </BreadcrumbItem>
        <BreadcrumbItem isActive>{name}</BreadcrumbItem>
      </Breadcrumb>
      <VmAlerts v={v} />
      {v.vms && !vm ? (
        <p>There is no VM named {name}.</p>
      ) : (
        vm && (
          <>
            <Flex alignItems={{ default: 'alignItemsCenter' }} className="pf-v6-u-my-md">
              <Title headingLevel="h2">{vm.name}</Title>
              <VmState vm={vm} />
              <VmActions vm={vm} busy={v.busy.has(vm.name)} act={(vm, a) => void v.act(vm, a)} />
            </Flex>
            <DescriptionList isHorizontal isCompact>
              <DescriptionListGroup>
                <DescriptionListTerm>OS</DescriptionListTerm>
                <DescriptionListDescription>{vm.spec.os ?? '-'}</DescriptionListDescription>
              </DescriptionListGroup>
              <DescriptionListGroup>
                <DescriptionListTerm>CPUs</DescriptionListTerm>
                <DescriptionListDescription>{vm.spec.cpus}</DescriptionListDescription>
              </DescriptionListGroup>
              <DescriptionListGroup>
                <DescriptionListTerm>Memory</DescriptionListTerm>
                <DescriptionListDescription>{vm.spec.memory}</DescriptionListDescription>
              </DescriptionListGroup>
            </DescriptionList>
            <Graphs name={vm.name} live={live} />
            {vm.spec.graphics.device !== 'none' && (
              <>
                <Title headingLevel="h3" className="pf-v6-u-mt-lg pf-v6-u-mb-sm">
                  Screen
                </Title>
                {live ? (
                  <Suspense fallback={<Spinner size="lg" aria-label="Loading the screen" />}>
                    <Screen name={vm.name} />
                  </Suspense>
                ) : (
                  <p>The screen shows when the VM runs.</p>
                )}
              </>
            )}
            <Title headingLevel="h3" className="pf-v6-u-mt-lg pf-v6-u-mb-sm">
              Serial console
            </Title>
            {live ? (
              <Suspense fallback={<Spinner size="lg" aria-label="Loading the console" />}>
                <SerialConsole name={vm.name} />
              </Suspense>
            ) : (
              <p>The console opens when the VM runs.</p>
            )}
          </>
        )
      )}
    </>
  );
}
