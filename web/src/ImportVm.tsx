import {
  Button,
  Form,
  FormGroup,
  List,
  ListItem,
  Modal,
  ModalBody,
  ModalFooter,
  ModalHeader,
  Progress,
} from '@patternfly/react-core';
import { useState } from 'react';
import type { Vm } from './api.js';
import { link, vmPath } from './nav.js';
import { Problem } from './resource.js';
import { TextField } from './TextField.js';
import { sendFile } from './upload.js';

/** What POST /v1/import answers: the VM, and what was fitted to this host, with why. */
export interface Imported {
  vm: Vm;
  changes: { what: string; why: string }[];
}

/** The content type and header the daemon takes a bundle and its passphrase with. */
const BUNDLE_TYPE = 'application/x-phyllome-bundle';
const PASSPHRASE_HEADER = 'x-phyllome-passphrase';

/** Pure: the request for importing a bundle, optionally under a new name, with its passphrase (base64 of UTF-8). */
export function importRequest(
  name: string,
  passphrase: string,
): { url: string; headers: Record<string, string> } {
  const bytes = new TextEncoder().encode(passphrase);
  return {
    url: name.trim() ? `/v1/import?name=${encodeURIComponent(name.trim())}` : '/v1/import',
    headers: {
      'content-type': BUNDLE_TYPE,
      ...(passphrase ? { [PASSPHRASE_HEADER]: btoa(String.fromCharCode(...bytes)) } : {}),
    },
  };
}

/** `phyllome import` in the browser: a .phyllome file is uploaded, checked and fitted to this host. */
export function ImportVm({ onClose }: { onClose: () => void }) {
  const [file, setFile] = useState<File | undefined>();
  const [name, setName] = useState('');
  const [passphrase, setPassphrase] = useState('');
  const [percent, setPercent] = useState<number | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [done, setDone] = useState<Imported | undefined>();

  const start = async () => {
    if (!file) return;
    setError(undefined);
    setPercent(0);
    try {
      const { url, headers } = importRequest(name, passphrase);
      setDone(await sendFile<Imported>('POST', url, file, headers, setPercent));
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setPercent(undefined);
    }
  };

  return (
    <Modal isOpen variant="medium" onClose={onClose} aria-labelledby="import-title">
      <ModalHeader title={done ? `Imported ${done.vm.name}` : 'Import a VM'} labelId="import-title" />
      <ModalBody>
        <Problem error={error} clear={() => setError(undefined)} />
        {done ? (
          <>
            <p>
              Every member's checksum matched. <a {...link(vmPath(done.vm.name))}>Open {done.vm.name}</a>
            </p>
            {done.changes.length ? (
              <List aria-label="Fitted to this host">
                {done.changes.map((c) => (
                  <ListItem key={c.what}>
                    {c.what}: {c.why}
                  </ListItem>
                ))}
              </List>
            ) : (
              <p>Nothing needed changing for this host.</p>
            )}
          </>
        ) : (
          <Form
            id="import-form"
            onSubmit={(e) => {
              e.preventDefault();
              void start();
            }}
          >
            <FormGroup label="Bundle (.phyllome)" fieldId="import-file" isRequired>
              <input
                id="import-file"
                type="file"
                accept=".phyllome"
                disabled={percent !== undefined}
                onChange={(e) => setFile(e.target.files?.[0])}
              />
            </FormGroup>
            <TextField
              id="import-name"
              label="Name"
              value={name}
              onChange={setName}
              isDisabled={percent !== undefined}
              help="Empty: the name it had. A name taken here is refused."
            />
            <TextField
              id="import-passphrase"
              label="Bundle passphrase"
              type="password"
              value={passphrase}
              onChange={setPassphrase}
              isDisabled={percent !== undefined}
              help="The one chosen at export; only an encrypted VM's bundle has one."
            />
            {percent !== undefined && (
              <Progress value={percent} title="Uploading and checking" aria-label="Bundle upload" size="sm" />
            )}
          </Form>
        )}
      </ModalBody>
      <ModalFooter>
        {!done && (
          <Button
            type="submit"
            form="import-form"
            isDisabled={!file || percent !== undefined}
            isLoading={percent !== undefined}
          >
            Import
          </Button>
        )}
        <Button variant="link" onClick={onClose}>
          {done ? 'Done' : 'Cancel'}
        </Button>
      </ModalFooter>
    </Modal>
  );
}
