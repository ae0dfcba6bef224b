import { execFile } from 'node:child_process';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { encryptFolder, folderState, FscryptError } from '../storage/fscrypt.js';
import { UserError } from './errors.js';
import { exists } from './files.js';

const run = promisify(execFile);

/** The keystore's id for the key of the VM folder's fscrypt policy. */
export const STORAGE_KEY_ID = 'storage';

/** Beside the VM folder while it is being encrypted: the new (encrypted) copy, then the old plain one. */
const staging = (vms: string) => `${vms}.encrypting`;
const plain = (vms: string) => `${vms}.plain`;

export type SwapStep = 'drop-staging' | 'finish' | 'drop-plain';

/**
 * Pure: what finishes or undoes an encryption a crash cut short, from which folders exist. The plain
 * folder is renamed aside only once the encrypted copy is whole, so its presence says the copy is good.
 */
export function swapRecovery(has: { vms: boolean; staging: boolean; plain: boolean }): SwapStep[] {
  if (has.vms && has.staging) return ['drop-staging'];
  if (!has.vms && has.staging && has.plain) return ['finish', 'drop-plain'];
  if (has.vms && has.plain) return ['drop-plain'];
  return [];
}

export async function recoverStorageSwap(vms: string): Promise<SwapStep[]> {
  const steps = swapRecovery({
    vms: await exists(vms),
    staging: await exists(staging(vms)),
    plain: await exists(plain(vms)),
  });
  for (const step of steps) {
    if (step === 'drop-staging') await rm(staging(vms), { recursive: true, force: true });
    if (step === 'finish') await rename(staging(vms), vms);
    if (step === 'drop-plain') await rm(plain(vms), { recursive: true, force: true });
  }
  return steps;
}

const fscryptError = (e: unknown): never => {
  if (e instanceof FscryptError) throw new UserError(`cannot encrypt the VM storage: ${e.message}`);
  throw e;
};

/**
 * Moves the VM folder under an fscrypt policy: a new encrypted folder gets a copy of every VM (sparse
 * files stay sparse), then takes the old one's place, which is removed. fscrypt cannot encrypt a
 * folder that holds files, hence the copy. The key must already be in the keystore: a crash after
 * this point is finished by recoverStorageSwap, which needs it to read the VMs.
 */
export async function encryptVmFolder(vms: string, key: Buffer): Promise<{ moved: string[] }> {
  if ((await folderState(vms).catch(fscryptError)).encrypted) {
    throw new UserError(`${vms} is already encrypted`, 409, 'conflict');
  }
  const next = staging(vms);
  await rm(next, { recursive: true, force: true });
  await mkdir(next, { mode: 0o750 });
  try {
    await encryptFolder(next, key, 'phyllome-vms').catch(fscryptError);
    const moved = await readdir(vms);
    for (const name of moved) {
      await run('cp', ['-a', '--sparse=always', path.join(vms, name), next], { maxBuffer: 1 << 20 });
    }
    await rename(vms, plain(vms));
    await rename(next, vms);
    await rm(plain(vms), { recursive: true, force: true });
    return { moved };
  } catch (e) {
    // Undone before the swap, finished after it: the same steps as after a crash.
    await recoverStorageSwap(vms);
    throw e;
  }
}
