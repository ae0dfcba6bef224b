import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encryptTpmState, findSwtpm, tpmStatePlain } from '../qemu/swtpm.js';
import type { VmSpec } from '../spec/schema.js';
import { copyImage, imageInfo } from '../storage/qemu-img.js';
import { exists } from './files.js';
import { readSnapshots } from './snapshots.js';

/**
 * A VM made without encrypted disks keeps its UEFI variables and TPM state in the clear; once it has
 * an encrypted disk, they are to be encrypted too (as for a VM made with one).
 */
export const needsSealing = (spec: VmSpec): boolean =>
  spec.disks.some((d) => d.encrypted) &&
  ((spec.firmware.type === 'uefi' && !spec.firmware.nvramEncrypted) || (spec.tpm && !spec.tpmEncrypted));

/** What a VM waiting for that tells its user (VmInfo warnings), or nothing. */
export function sealingWarning(spec: VmSpec): string | undefined {
  if (!needsSealing(spec)) return undefined;
  const plain = [
    spec.firmware.type === 'uefi' && !spec.firmware.nvramEncrypted ? 'UEFI variables' : undefined,
    spec.tpm && !spec.tpmEncrypted ? 'TPM state' : undefined,
  ].filter(Boolean);
  return (
    `its ${plain.join(' and ')} ${plain.length > 1 ? 'are' : 'is'} not encrypted yet (its first ` +
    'encrypted disk came later): that happens at its next start, once it has no snapshots'
  );
}

export interface SealRequest {
  spec: VmSpec;
  dir: string;
  nvram: string;
  tpmState: string;
  /** The VM's disk key: the variable store is encrypted with it, as at create. */
  diskKey: string;
  /** The VM's TPM key (base64), made on first need. */
  tpmKey: () => Promise<string>;
  /** Writes the spec that says what is encrypted now. */
  writeSpec: (spec: VmSpec) => Promise<void>;
}

/**
 * Encrypts a stopped VM's UEFI variables (a LUKS copy under a temporary name, renamed into place) and
 * TPM state (re-stored by swtpm into a new folder, swapped in by two renames); then the spec says so.
 * Each step first looks at the files, so a crash anywhere is finished by the next call. Snapshots keep
 * plain copies (internal ones in nvram.qcow2 that a copy would drop, TPM copies a revert would bring
 * back): with any, nothing changes and the answer says why.
 */
export async function sealState(r: SealRequest): Promise<VmSpec | 'has-snapshots'> {
  if ((await readSnapshots(r.dir)).snapshots.length) return 'has-snapshots';
  let spec = r.spec;
  if (spec.firmware.type === 'uefi' && !spec.firmware.nvramEncrypted) {
    if (!(await imageInfo({ file: r.nvram })).encrypted) {
      const temp = `${r.nvram}.sealing`;
      await rm(temp, { force: true });
      await copyImage({ file: r.nvram }, { file: temp, key: r.diskKey });
      await rename(temp, r.nvram);
    }
    spec = { ...spec, firmware: { ...spec.firmware, nvramEncrypted: true } };
  }
  const plain = `${r.tpmState}.plain`;
  if (spec.tpm && !spec.tpmEncrypted) {
    // A crash between the two renames below left the plain state under its second name only.
    if (!(await exists(r.tpmState)) && (await exists(plain))) await rename(plain, r.tpmState);
    const key = Buffer.from(await r.tpmKey(), 'base64').toString('hex');
    if (await tpmStatePlain(r.tpmState)) {
      const sealing = `${r.tpmState}.sealing`;
      await rm(sealing, { recursive: true, force: true });
      await mkdir(sealing, { mode: 0o700 });
      const work = await mkdtemp(path.join(tmpdir(), 'phyllome-tpm-'));
      try {
        await encryptTpmState(await findSwtpm(), { from: r.tpmState, to: sealing, key, work });
      } finally {
        await rm(work, { recursive: true, force: true });
      }
      await rename(r.tpmState, plain);
      await rename(sealing, r.tpmState);
    }
    spec = { ...spec, tpmEncrypted: true };
  }
  await r.writeSpec(spec);
  await rm(plain, { recursive: true, force: true });
  return spec;
}
