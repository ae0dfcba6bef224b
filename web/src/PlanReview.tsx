import { Button, FormSelect, FormSelectOption, Label, List, ListItem, Title } from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import {
  chooseGraphics,
  graphicsOptions,
  reviewRows,
  withOverride,
  type Overrides,
  type Plan,
} from './review.js';

/**
 * The plan to review: the OS, every device choice with the planner's reason (an expert can force
 * any of them), and the graphics options this host allows, best first.
 */
export function PlanReview({
  plan,
  overrides,
  onOverride,
}: {
  plan: Plan;
  overrides: Overrides;
  onOverride: (next: Overrides) => void;
}) {
  return (
    <>
      <p>
        {plan.os.name} ({plan.os.shortId})
        {plan.os.identifiedFrom && `, identified from the ISO's ${plan.os.identifiedFrom}`}
        {plan.os.note && `: ${plan.os.note}`}
      </p>
      {plan.notes.length > 0 && (
        <List>
          {plan.notes.map((n) => (
            <ListItem key={n}>{n}</ListItem>
          ))}
        </List>
      )}
      <Table aria-label="Plan" variant="compact">
        <Thead>
          <Tr>
            <Th>Item</Th>
            <Th>Choice</Th>
            <Th>Why</Th>
            <Th>Change</Th>
          </Tr>
        </Thead>
        <Tbody>
          {reviewRows(plan, overrides).map((r) => (
            <Tr key={r.item}>
              <Td dataLabel="Item">{r.item}</Td>
              <Td dataLabel="Choice" modifier="breakWord">
                {r.value}
              </Td>
              <Td dataLabel="Why">{r.reason}</Td>
              <Td dataLabel="Change">
                {r.override && (
                  <FormSelect
                    aria-label={`Change ${r.item}`}
                    value={r.override.selected}
                    onChange={(_e, v) => onOverride(withOverride(overrides, r.override!.key, v))}
                  >
                    <FormSelectOption value="" label="as planned" />
                    {r.override.options.map((o) => (
                      <FormSelectOption key={o} value={o} label={o} />
                    ))}
                  </FormSelect>
                )}
              </Td>
            </Tr>
          ))}
        </Tbody>
      </Table>
      <Title headingLevel="h3" className="pf-v6-u-mt-lg pf-v6-u-mb-sm">
        Graphics on this host, best first
      </Title>
      <Table aria-label="Graphics options" variant="compact">
        <Thead>
          <Tr>
            <Th>Rank</Th>
            <Th>Kind</Th>
            <Th>Why</Th>
            <Th>Trade-off</Th>
            <Th screenReaderText="Choose" />
          </Tr>
        </Thead>
        <Tbody>
          {graphicsOptions(plan, overrides).map((g) => (
            <Tr key={`${g.kind} ${g.devices?.join(' ') ?? ''}`}>
              <Td dataLabel="Rank">{g.rank}</Td>
              <Td dataLabel="Kind">
                {g.kind}
                {` (${g.devices ? g.devices.join(', ') : g.graphics.device})`}
                {g.chosen && (
                  <Label isCompact color="green" className="pf-v6-u-ml-sm">
                    chosen
                  </Label>
                )}
              </Td>
              <Td dataLabel="Why">
                {g.why}
                {g.caveats && (
                  <List aria-label="Caveats">
                    {g.caveats.map((c) => (
                      <ListItem key={c}>{c}</ListItem>
                    ))}
                  </List>
                )}
              </Td>
              <Td dataLabel="Trade-off">{g.tradeoff}</Td>
              <Td dataLabel="Choose">
                {!g.chosen && (
                  <Button
                    size="sm"
                    variant="secondary"
                    aria-label={`Use ${g.kind}`}
                    onClick={() => onOverride(chooseGraphics(overrides, g))}
                  >
                    Use
                  </Button>
                )}
              </Td>
            </Tr>
          ))}
        </Tbody>
      </Table>
    </>
  );
}
