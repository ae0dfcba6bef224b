import { Spinner, Title } from '@patternfly/react-core';
import { lazy, Suspense } from 'react';

// uPlot loads only on a running VM's page: the list page stays small.
const Charts = lazy(() => import('./Charts.js'));

/** A VM's live CPU, memory, disk and network graphs over the last two minutes, while it runs. */
export function Graphs({ name, live }: { name: string; live: boolean }) {
  return (
    <section aria-labelledby="graphs-title">
      <Title headingLevel="h3" id="graphs-title" className="pf-v6-u-mt-lg pf-v6-u-mb-sm">
        Activity
      </Title>
      {live ? (
        <Suspense fallback={<Spinner size="lg" aria-label="Loading the graphs" />}>
          <Charts name={name} />
        </Suspense>
      ) : (
        <p>The graphs show when the VM runs.</p>
      )}
    </section>
  );
}
