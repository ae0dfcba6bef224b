import { EmptyState, EmptyStateBody } from '@patternfly/react-core';

/** What to do without a session: only the host's own user can make a login link. */
export function LoginProblem({ message }: { message: string }) {
  return (
    <EmptyState titleText="Not logged in" headingLevel="h2">
      <EmptyStateBody>
        {message} On the host, run <code>phyllome ui</code> and open the link it prints.
      </EmptyStateBody>
    </EmptyState>
  );
}
