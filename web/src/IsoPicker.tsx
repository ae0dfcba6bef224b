import {
  Button,
  Flex,
  FlexItem,
  FormGroup,
  FormSelect,
  FormSelectOption,
  HelperText,
  HelperTextItem,
  Progress,
} from '@patternfly/react-core';
import { useState } from 'react';
import { Confirm } from './Confirm.js';
import { uploadIso, type IsoFile } from './isos.js';
import { formatBytes, Problem, useResource } from './resource.js';

/**
 * The wizard's installer: none, an ISO uploaded before, or one uploaded now (with its progress).
 * Picking one hands it up with the OS the daemon identified on it. The one picked can be deleted.
 */
export function IsoPicker({
  value,
  onChange,
}: {
  value: string;
  onChange: (iso: IsoFile | undefined) => void;
}) {
  const isos = useResource<{ isos: IsoFile[] }>('/v1/isos');
  const [percent, setPercent] = useState<number | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [deleting, setDeleting] = useState<IsoFile | undefined>();
  const chosen = isos.data?.isos.find((i) => i.path === value);
  const upload = async (file: File) => {
    setError(undefined);
    setPercent(0);
    try {
      const iso = await uploadIso(file, setPercent);
      await isos.reload();
      onChange(iso);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setPercent(undefined);
    }
  };
  const remove = async (iso: IsoFile) => {
    setDeleting(undefined);
    setError(undefined);
    // A refusal stays chosen, with the daemon's words above it.
    if (await isos.change('DELETE', `/v1/isos/${encodeURIComponent(iso.name)}`)) onChange(undefined);
  };
  return (
    <>
      <Problem
        error={error ?? isos.error}
        clear={() => {
          setError(undefined);
          isos.clearError();
        }}
      />
      <FormGroup label="Installer ISO" fieldId="vm-iso">
        <Flex spaceItems={{ default: 'spaceItemsSm' }} flexWrap={{ default: 'nowrap' }}>
          <FlexItem grow={{ default: 'grow' }}>
            <FormSelect
              id="vm-iso"
              value={value}
              isDisabled={percent !== undefined || isos.busy}
              onChange={(_e, v) => onChange(isos.data?.isos.find((i) => i.path === v))}
            >
              <FormSelectOption value="" label="None: name the OS below" />
              {isos.data?.isos.map((i) => (
                <FormSelectOption
                  key={i.name}
                  value={i.path}
                  label={`${i.name}, ${formatBytes(i.size)}${i.os ? `: ${i.os.name}` : ''}`}
                />
              ))}
            </FormSelect>
          </FlexItem>
          {chosen && (
            <Button
              variant="secondary"
              isDanger
              isDisabled={percent !== undefined || isos.busy}
              aria-label={`Delete ISO ${chosen.name}`}
              onClick={() => setDeleting(chosen)}
            >
              Delete ISO
            </Button>
          )}
        </Flex>
        {chosen && (
          <HelperText>
            <HelperTextItem variant={chosen.os ? 'success' : 'warning'}>
              {chosen.os ? `Identified as ${chosen.os.name} (${chosen.os.shortId})` : chosen.problem}
            </HelperTextItem>
          </HelperText>
        )}
      </FormGroup>
      <FormGroup label="Upload an ISO" fieldId="vm-iso-upload">
        <input
          id="vm-iso-upload"
          type="file"
          accept=".iso"
          disabled={percent !== undefined}
          onChange={(e) => {
            const file = e.target.files?.[0];
            if (file) void upload(file);
            e.target.value = '';
          }}
        />
        {percent !== undefined && (
          <Progress value={percent} title="Uploading" aria-label="ISO upload" size="sm" />
        )}
      </FormGroup>
      {deleting && (
        <Confirm
          title={`Delete ISO ${deleting.name}?`}
          action="Delete"
          onConfirm={() => void remove(deleting)}
          onCancel={() => setDeleting(undefined)}
        >
          {`${deleting.name} (${formatBytes(deleting.size)}) is removed from phyllomed's ISO folder for good: upload it again to install from it.`}
        </Confirm>
      )}
    </>
  );
}
