import {
  Breadcrumb,
  BreadcrumbItem,
  DescriptionList,
  DescriptionListDescription,
  DescriptionListGroup,
  DescriptionListTerm,
  Flex,
  Spinner,
  Tab,
  Tabs,
  TabTitleText,
  Title,
} from '@patternfly/react-core';
import { lazy, Suspense, useState } from 'react';
import { Copies } from './Copies.js';
import { Disks } from './Disks.js';
import { Media } from './Media.js';
import { Network } from './Network.js';
import { OpProgressBar } from './OpProgress.js';
import { Settings } from './Settings.js';
import { Snapshots } from './Snapshots.js';
import { Graphs } from './Graphs.js';
import { nicLabel } from './stats.js';
import { LoginProblem } from './LoginProblem.js';
import { link } from './nav.js';
import { VmActions, VmState } from './VmActions.js';
import { VmAlerts } from './VmList.js';
import { useVms } from './vms.js';

// xterm.js and noVNC load only when a console is shown: the list page stays small.
const SerialConsole = lazy(() => import('./SerialConsole.js'));
const Screen = lazy(() => import('./Screen.js'));

type Pane = 'console' | 'snapshots' | 'disks' | 'media' | 'network' | 'settings' | 'copies';

export function VmDetail({ name }: { name: string }) {
  const v = useVms();
  const [tab, setTab] = useState<Pane>('console');
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
            <Graphs name={vm.name} live={live} nics={vm.spec.nics.map(nicLabel)} />
            <OpProgressBar vm={vm.name} progress={v.progress.get(vm.name)} />
            <Tabs
              className="pf-v6-u-mt-lg"
              activeKey={tab}
              onSelect={(_e, k) => setTab(k as Pane)}
              aria-label={`Panes of ${vm.name}`}
              mountOnEnter
              unmountOnExit
            >
              <Tab eventKey="console" title={<TabTitleText>Console</TabTitleText>}>
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
              </Tab>
              <Tab eventKey="snapshots" title={<TabTitleText>Snapshots</TabTitleText>}>
                <Snapshots vm={vm} />
              </Tab>
              <Tab eventKey="disks" title={<TabTitleText>Disks</TabTitleText>}>
                <Disks vm={vm} />
              </Tab>
              <Tab eventKey="media" title={<TabTitleText>Media</TabTitleText>}>
                <Media vm={vm} />
              </Tab>
              <Tab eventKey="network" title={<TabTitleText>Network</TabTitleText>}>
                <Network vm={vm} />
              </Tab>
              <Tab eventKey="settings" title={<TabTitleText>Settings</TabTitleText>}>
                <Settings vm={vm} changed={v.reload} />
              </Tab>
              <Tab eventKey="copies" title={<TabTitleText>Clone &amp; export</TabTitleText>}>
                <Copies vm={vm} />
              </Tab>
            </Tabs>
          </>
        )
      )}
    </>
  );
}
