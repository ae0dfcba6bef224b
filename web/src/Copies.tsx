import {
  ActionGroup,
  Alert,
  Button,
  Checkbox,
  Form,
  FormGroup,
  TextInput,
  Title,
} from '@patternfly/react-core';
import { useRef, useState } from 'react';
import { call, type Vm } from './api.js';
import { link } from './nav.js';
import { Problem } from './resource.js';
import { TextField } from './TextField.js';

/** Pure: whether a VM's bundle needs a passphrase (its disks or TPM state are encrypted). */
export const exportNeedsPassphrase = (vm: Vm): boolean =>
  !!vm.spec.tpmEncrypted || (vm.spec.disks ?? []).some((d) => d.encrypted);

/** Pure: the daemon's refusal from the page a failed form post left in the frame. */
export function frameError(text: string): string {
  try {
    return (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? text;
  } catch {
    return text || 'the export failed';
  }
}

/** A clone of the VM (full or linked), and its export as a .phyllome file the browser saves. */
export function Copies({ vm }: { vm: Vm }) {
  const [name, setName] = useState('');
  const [linked, setLinked] = useState(false);
  const [cloning, setCloning] = useState(false);
  const [cloned, setCloned] = useState<string | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [passphrase, setPassphrase] = useState('');
  const frame = useRef<HTMLIFrameElement>(null);
  const needsPassphrase = exportNeedsPassphrase(vm);
  const base = `/v1/vms/${encodeURIComponent(vm.name)}`;

  const clone = async () => {
    setCloning(true);
    setError(undefined);
    try {
      await call('POST', `${base}/clone`, { name, linked });
      setCloned(name);
      setName('');
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setCloning(false);
    }
  };

  return (
    <>
      <Problem error={error} clear={() => setError(undefined)} />
      <Title headingLevel="h3" className="pf-v6-u-mt-md pf-v6-u-mb-sm">
        Clone
      </Title>
      {cloned && (
        <Alert isInline variant="success" title={`Cloned to ${cloned}`} className="pf-v6-u-mb-md">
          <a {...link(`/vms/${encodeURIComponent(cloned)}`)}>Open {cloned}</a>
        </Alert>
      )}
      <Form
        onSubmit={(e) => {
          e.preventDefault();
          void clone();
        }}
      >
        <FormGroup label="Name of the clone" fieldId="clone-name">
          <TextInput id="clone-name" value={name} onChange={(_e, v) => setName(v)} />
        </FormGroup>
        <Checkbox
          id="clone-linked"
          label="Linked clone: its disks are overlays on a shared base (fast, small)"
          isChecked={linked}
          onChange={(_e, v) => setLinked(v)}
        />
        <ActionGroup>
          <Button type="submit" isDisabled={!name || cloning} isLoading={cloning}>
            Clone
          </Button>
        </ActionGroup>
      </Form>

      <Title headingLevel="h3" className="pf-v6-u-mt-lg pf-v6-u-mb-sm">
        Export
      </Title>
      {/* A plain form post into a hidden frame: the browser streams the bundle to a file, and a
          refusal (a JSON page in the frame) is read back and shown here. */}
      <iframe
        ref={frame}
        name="export-frame"
        title="export"
        hidden
        onLoad={() => {
          const text = frame.current?.contentDocument?.body?.textContent ?? '';
          if (text) setError(frameError(text));
        }}
      />
      <Form
        method="post"
        action={`${base}/export`}
        target="export-frame"
        onSubmit={() => setError(undefined)}
      >
        <TextField
          id="export-passphrase"
          label="Bundle passphrase"
          name="passphrase"
          type="password"
          value={passphrase}
          onChange={setPassphrase}
          isRequired={needsPassphrase}
          help={
            needsPassphrase
              ? 'Its encrypted disks and TPM state stay encrypted; their keys travel sealed with this passphrase (at least 8 characters).'
              : 'Optional: it signs the bundle, so its checksums cannot be forged (at least 8 characters).'
          }
        />
        <ActionGroup>
          <Button type="submit" isDisabled={(needsPassphrase || passphrase !== '') && passphrase.length < 8}>
            Download {vm.name}.phyllome
          </Button>
        </ActionGroup>
      </Form>
    </>
  );
}
