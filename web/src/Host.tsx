import {
  Alert,
  DescriptionList,
  DescriptionListDescription,
  DescriptionListGroup,
  DescriptionListTerm,
  Label,
  Spinner,
  Title,
} from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import { useEffect, useState } from 'react';
import { ApiError, call } from './api.js';
import { LoginProblem } from './LoginProblem.js';

interface HostInfo {
  version: string;
  qemu: { binary: string; version: string };
  accel: 'kvm' | 'tcg';
  warnings: string[];
}

interface Finding {
  id: string;
  level: 'ok' | 'warn' | 'fail';
  title: string;
  fix?: string;
}

const levelColor = { ok: 'green', warn: 'orange', fail: 'red' } as const;

/** What `phyllome host` and `phyllome host check` say, on one page. */
export function Host() {
  const [host, setHost] = useState<HostInfo | undefined>();
  const [findings, setFindings] = useState<Finding[] | undefined>();
  const [problem, setProblem] = useState<ApiError | Error | undefined>();
  useEffect(() => {
    call<HostInfo>('GET', '/v1/host').then(setHost, setProblem);
    // The check runs bounded probes (QEMU's features, KVM): it answers after the rest.
    call<{ findings: Finding[] }>('GET', '/v1/host/check').then((c) => setFindings(c.findings), setProblem);
  }, []);
  if (problem instanceof ApiError && problem.status === 401)
    return <LoginProblem message={problem.message} />;
  return (
    <>
      <Title headingLevel="h2">Host</Title>
      {problem && <Alert isInline variant="danger" title={problem.message} />}
      {host?.warnings.map((w) => (
        <Alert key={w} isInline variant="warning" title={w} />
      ))}
      {host && (
        <DescriptionList isHorizontal isCompact className="pf-v6-u-my-md">
          <DescriptionListGroup>
            <DescriptionListTerm>Accelerator</DescriptionListTerm>
            <DescriptionListDescription>
              <Label color={host.accel === 'kvm' ? 'green' : 'orange'}>{host.accel.toUpperCase()}</Label>
            </DescriptionListDescription>
          </DescriptionListGroup>
          <DescriptionListGroup>
            <DescriptionListTerm>QEMU</DescriptionListTerm>
            <DescriptionListDescription>
              {host.qemu.version} ({host.qemu.binary})
            </DescriptionListDescription>
          </DescriptionListGroup>
          <DescriptionListGroup>
            <DescriptionListTerm>phyllomed</DescriptionListTerm>
            <DescriptionListDescription>{host.version}</DescriptionListDescription>
          </DescriptionListGroup>
        </DescriptionList>
      )}
      <Title headingLevel="h3" className="pf-v6-u-mt-lg">
        Checks
      </Title>
      {findings ? (
        <Table aria-label="Host checks" variant="compact">
          <Thead>
            <Tr>
              <Th>Result</Th>
              <Th>Finding</Th>
              <Th>What to do</Th>
            </Tr>
          </Thead>
          <Tbody>
            {findings.map((f) => (
              <Tr key={f.id}>
                <Td dataLabel="Result">
                  <Label color={levelColor[f.level]}>{f.level}</Label>
                </Td>
                <Td dataLabel="Finding">{f.title}</Td>
                <Td dataLabel="What to do">{f.fix ?? ''}</Td>
              </Tr>
            ))}
          </Tbody>
        </Table>
      ) : (
        !problem && <Spinner size="lg" aria-label="Checking the host" />
      )}
    </>
  );
}
