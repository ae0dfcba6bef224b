import { Spinner, Title } from '@patternfly/react-core';
import { lazy, Suspense } from 'react';

// uPlot loads only on a running VM's page: the list page stays small.
const Charts = lazy(() => import('./Charts.js'));

/**
 * A VM's live CPU, memory, disk and network graphs over the last two minutes, while it runs; `nics`
 * names its NICs for the per-NIC graphs.
 */
export function Graphs({ name, live, nics }: { name: string; live: boolean; nics: string[] }) {
  return (
    <section aria-labelledby="graphs-title">
      <Title headingLevel="h3" id="graphs-title" className="pf-v6-u-mt-lg pf-v6-u-mb-sm">
        Activity
      </Title>
      {live ? (
        <Suspense fallback={<Spinner size="lg" aria-label="Loading the graphs" />}>
          <Charts name={name} nics={nics} />
        </Suspense>
      ) : (
        <p>The graphs show when the VM runs.</p>
      )}
    </section>
  );
}
