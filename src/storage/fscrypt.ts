import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { mountOf } from '../host/storage.js';
import { withKeyFiles } from './qemu-img.js';

const run = promisify(execFile);
const TIMEOUT_MS = 30_000;

/** fscrypt's own words, passed on: they say what to do (e.g. "tune2fs -O encrypt"). */
export class FscryptError extends Error {}

/** What `fscrypt status DIR` says of a folder. */
export interface FolderState {
  encrypted: boolean;
  /** Its key is in the filesystem's keyring: names and contents read as plain text. */
  unlocked: boolean;
}

/** Pure: `fscrypt status DIR` output (exit 0 only for an encrypted folder). */
export function parseFolderStatus(output: string): FolderState {
  const encrypted = /is encrypted with fscrypt/.test(output);
  return { encrypted, unlocked: encrypted && /^Unlocked:\s+Yes/m.test(output) };
}

/** The fscrypt tool with its last line of error, bounded in time; stdin closed so it never prompts. */
async function fscrypt(args: string[]): Promise<string> {
  try {
    const { stdout } = await run('fscrypt', [...args], { timeout: TIMEOUT_MS });
    return stdout;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string; stdout?: string };
    if (err.code === 'ENOENT') throw new FscryptError('the fscrypt tool is missing: apt-get install fscrypt');
    const said = `${err.stderr ?? ''}\n${err.stdout ?? ''}`.trim().replace(/^\[ERROR\] /, '');
    throw new FscryptError(said || err.message);
  }
}

/** fscrypt does nothing without its global config: made once (`fscrypt setup`) when missing. */
async function globalSetup(): Promise<void> {
  if (!(await stat('/etc/fscrypt.conf').catch(() => undefined))) {
    await fscrypt(['setup', '--quiet', '--time=100ms']);
  }
}

export async function folderState(dir: string): Promise<FolderState> {
  await globalSetup();
  try {
    return parseFolderStatus(await fscrypt(['status', dir]));
  } catch (e) {
    // Answers, not failures: a filesystem fscrypt was never set up on holds no folder of its.
    if (e instanceof FscryptError && /not encrypted|not setup for use with\s+fscrypt/.test(e.message)) {
      return { encrypted: false, unlocked: false };
    }
    throw e;
  }
}

/**
 * Puts an empty folder under a new fscrypt (v2) policy protected by a raw 256-bit key. fscrypt's
 * global and per-filesystem metadata are made first when missing (`fscrypt setup`). The key reaches
 * fscrypt as a 0600 file on tmpfs, removed at once: fscrypt takes no key on a pipe.
 */
export async function encryptFolder(dir: string, key: Buffer, name: string): Promise<void> {
  await globalSetup();
  const mount = mountOf(await readFile('/proc/self/mountinfo', 'utf8'), path.resolve(dir));
  if (!mount) throw new FscryptError(`cannot tell which filesystem holds ${dir}`);
  if (!(await stat(path.join(mount.at, '.fscrypt')).catch(() => undefined))) {
    await fscrypt(['setup', mount.at, '--quiet']);
  }
  await withKeyFiles([key], ([file]) =>
    fscrypt(['encrypt', dir, '--source=raw_key', `--name=${name}`, `--key=${file}`, '--quiet']),
  );
}

/** Adds the folder's key to the filesystem keyring (every process then reads it in plain text). */
export async function unlockFolder(dir: string, key: Buffer): Promise<void> {
  await withKeyFiles([key], ([file]) => fscrypt(['unlock', dir, `--key=${file}`, '--quiet']));
}
