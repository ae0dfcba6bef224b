import {
  Alert,
  Form,
  FormGroup,
  FormSelect,
  FormSelectOption,
  List,
  ListItem,
  NumberInput,
  Spinner,
  TextInput,
  Title,
  Wizard,
  WizardStep,
} from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import { useEffect, useState } from 'react';
import { call, type Vm } from './api.js';
import { go, vmPath } from './nav.js';

interface Plan {
  spec: Record<string, unknown>;
  choices: { item: string; value: string; reason: string }[];
  notes: string[];
}

interface OsEntry {
  shortId: string;
  name: string;
}

const intents = ['desktop', 'gaming', 'server'] as const;

/**
 * `phyllome create --os`, as a wizard: what the user chooses, then the planner's plan with every
 * choice's reason (POST /v1/plan), then the VM made from that plan.
 */
export function CreateVm() {
  const [name, setName] = useState('');
  const [os, setOs] = useState('');
  const [known, setKnown] = useState<OsEntry[]>([]);
  const [intent, setIntent] = useState<(typeof intents)[number]>('desktop');
  const [memory, setMemory] = useState('');
  const [cpus, setCpus] = useState<number | ''>('');
  const [diskSize, setDiskSize] = useState('');
  const [plan, setPlan] = useState<Plan | undefined>();
  const [error, setError] = useState<string | undefined>();

  // The OS field suggests what osinfo-db knows for what is typed so far.
  useEffect(() => {
    if (os.length < 2) return;
    const t = setTimeout(() => {
      call<{ entries: OsEntry[] }>('GET', `/v1/os?search=${encodeURIComponent(os)}`).then(
        (r) => setKnown(r.entries.slice(0, 50)),
        () => setKnown([]),
      );
    }, 200);
    return () => clearTimeout(t);
  }, [os]);

  const askPlan = () => {
    setPlan(undefined);
    setError(undefined);
    const overrides = Object.fromEntries(
      Object.entries({
        memory: memory || undefined,
        cpus: cpus || undefined,
        diskSize: diskSize || undefined,
      }).filter(([, v]) => v !== undefined),
    );
    call<Plan>('POST', '/v1/plan', { name, ...(os ? { os } : {}), intent, overrides }).then(
      setPlan,
      (e: Error) => setError(e.message),
    );
  };

  const create = async () => {
    try {
      const vm = await call<Vm>('POST', '/v1/vms', plan!.spec);
      go(vmPath(vm.name));
    } catch (e) {
      setError((e as Error).message);
    }
  };

  return (
    <>
      <Title headingLevel="h2" className="pf-v6-u-mb-md">
        Create a virtual machine
      </Title>
      <Wizard onClose={() => go('/')} onSave={() => void create()} height={560}>
        <WizardStep name="Name and OS" id="name" footer={{ isNextDisabled: !name }}>
          <Form onSubmit={(e) => e.preventDefault()}>
            <FormGroup label="Name" isRequired fieldId="vm-name">
              <TextInput id="vm-name" isRequired value={name} onChange={(_e, v) => setName(v)} />
            </FormGroup>
            <FormGroup label="Operating system (osinfo-db id, like debian11 or win11)" fieldId="vm-os">
              <TextInput id="vm-os" list="vm-os-known" value={os} onChange={(_e, v) => setOs(v)} />
              <datalist id="vm-os-known">
                {known.map((e) => (
                  <option key={e.shortId} value={e.shortId}>
                    {e.name}
                  </option>
                ))}
              </datalist>
            </FormGroup>
            <FormGroup label="Use" fieldId="vm-intent">
              <FormSelect id="vm-intent" value={intent} onChange={(_e, v) => setIntent(v as typeof intent)}>
                {intents.map((i) => (
                  <FormSelectOption key={i} value={i} label={i} />
                ))}
              </FormSelect>
            </FormGroup>
          </Form>
        </WizardStep>
        <WizardStep name="Resources" id="resources">
          <Form onSubmit={(e) => e.preventDefault()}>
            <p>Left empty, each is planned from the OS's needs.</p>
            <FormGroup label="Memory (like 4G)" fieldId="vm-memory">
              <TextInput id="vm-memory" value={memory} onChange={(_e, v) => setMemory(v)} />
            </FormGroup>
            <FormGroup label="CPUs" fieldId="vm-cpus">
              <NumberInput
                id="vm-cpus"
                inputAriaLabel="CPUs"
                value={cpus}
                min={1}
                max={256}
                onMinus={() => setCpus((c) => Math.max(1, (c || 2) - 1))}
                onPlus={() => setCpus((c) => Math.min(256, (c || 0) + 1))}
                onChange={(e) => {
                  const v = Number((e.target as HTMLInputElement).value);
                  setCpus(Number.isInteger(v) && v > 0 ? v : '');
                }}
              />
            </FormGroup>
            <FormGroup label="New disk size (like 20G)" fieldId="vm-disk">
              <TextInput id="vm-disk" value={diskSize} onChange={(_e, v) => setDiskSize(v)} />
            </FormGroup>
          </Form>
        </WizardStep>
        <WizardStep
          name="Review the plan"
          id="review"
          footer={{ nextButtonText: 'Create', isNextDisabled: !plan }}
        >
          <PlanReview plan={plan} error={error} ask={askPlan} />
        </WizardStep>
      </Wizard>
    </>
  );
}

/** The plan, asked for when the step shows, each choice with the planner's reason. */
function PlanReview({
  plan,
  error,
  ask,
}: {
  plan: Plan | undefined;
  error: string | undefined;
  ask: () => void;
}) {
  // Once per visit of the step: going back to change a field and returning plans again.
  useEffect(ask, []);
  if (error) return <Alert isInline variant="danger" title={error} />;
  if (!plan) return <Spinner size="lg" aria-label="Planning" />;
  return (
    <>
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
          </Tr>
        </Thead>
        <Tbody>
          {plan.choices.map((c) => (
            <Tr key={c.item}>
              <Td dataLabel="Item">{c.item}</Td>
              <Td dataLabel="Choice">{c.value}</Td>
              <Td dataLabel="Why">{c.reason}</Td>
            </Tr>
          ))}
        </Tbody>
      </Table>
    </>
  );
}
