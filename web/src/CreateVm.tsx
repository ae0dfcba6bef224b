import {
  Alert,
  Form,
  FormGroup,
  FormSelect,
  FormSelectOption,
  NumberInput,
  Spinner,
  TextInput,
  Title,
  Wizard,
  WizardStep,
} from '@patternfly/react-core';
import { useEffect, useState } from 'react';
import { call, type Vm } from './api.js';
import { IsoPicker } from './IsoPicker.js';
import { go, vmPath } from './nav.js';
import { PlanReview } from './PlanReview.js';
import type { Overrides, Plan } from './review.js';

interface OsEntry {
  shortId: string;
  name: string;
}

const intents = ['desktop', 'gaming', 'server'] as const;

/**
 * `phyllome create --os/--iso`, as a wizard: what the user chooses (an OS, or an installer ISO the
 * OS is identified from), then the planner's plan with every choice's reason (POST /v1/plan), which
 * an expert may change, then the VM made from that plan.
 */
export function CreateVm() {
  const [name, setName] = useState('');
  const [os, setOs] = useState('');
  const [iso, setIso] = useState('');
  const [known, setKnown] = useState<OsEntry[]>([]);
  const [intent, setIntent] = useState<(typeof intents)[number]>('desktop');
  const [memory, setMemory] = useState('');
  const [cpus, setCpus] = useState<number | ''>('');
  const [diskSize, setDiskSize] = useState('');
  const [expert, setExpert] = useState<Overrides>({});
  const [plan, setPlan] = useState<Plan | undefined>();
  const [planning, setPlanning] = useState(false);
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
    setError(undefined);
    const overrides = Object.fromEntries(
      Object.entries({
        ...expert,
        memory: memory || undefined,
        cpus: cpus || undefined,
        diskSize: diskSize || undefined,
      }).filter(([, v]) => v !== undefined),
    );
    const body = { name, ...(os ? { os } : {}), ...(iso ? { iso } : {}), intent, overrides };
    setPlanning(true);
    call<Plan>('POST', '/v1/plan', body)
      .then(setPlan, (e: Error) => setError(e.message))
      .finally(() => setPlanning(false));
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
            <IsoPicker
              value={iso}
              onChange={(picked) => {
                setIso(picked?.path ?? '');
                // The OS identified on the ISO is preselected; the user may still name another.
                if (picked?.os) setOs(picked.os.shortId);
              }}
            />
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
          footer={{ nextButtonText: 'Create', isNextDisabled: !plan || planning }}
        >
          <ReviewStep plan={plan} error={error} ask={askPlan} expert={expert} setExpert={setExpert} />
        </WizardStep>
      </Wizard>
    </>
  );
}

/** The plan, asked for when the step shows and again whenever the expert changes a choice. */
function ReviewStep(props: {
  plan: Plan | undefined;
  error: string | undefined;
  ask: () => void;
  expert: Overrides;
  setExpert: (o: Overrides) => void;
}) {
  // Once per visit of the step (going back to change a field and returning plans again), and per change.
  useEffect(props.ask, [props.expert]);
  return (
    <>
      {props.error && <Alert isInline variant="danger" title={props.error} className="pf-v6-u-mb-md" />}
      {props.plan ? (
        <PlanReview plan={props.plan} overrides={props.expert} onOverride={props.setExpert} />
      ) : (
        !props.error && <Spinner size="lg" aria-label="Planning" />
      )}
    </>
  );
}
