import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where VM state lives, and whether the filesystem encrypts it (fscrypt). */
export interface StorageFacts {
  path: string;
  fsType?: string;
  /** The kernel's ext4 can encrypt folders (/sys/fs/ext4/features/encryption). */
  kernelSupport: boolean;
  /** The folder has an fscrypt policy: its files' contents and names are encrypted at rest. */
  fscrypt: boolean;
}

/** Pure: the mount that holds `p` (its mount point and filesystem type), from /proc/self/mountinfo (longest mount point). */
export function mountOf(mountinfo: string, p: string): { at: string; type: string } | undefined {
  let best: { at: string; type: string } | undefined;
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    const at = left?.split(' ')[4];
    const type = right?.split(' ')[0];
    if (!at || !type) continue;
    const inside = p === at || p.startsWith(at === '/' ? '/' : `${at}/`);
    if (inside && (!best || at.length > best.at.length)) best = { at, type };
  }
  return best;
}

/** Pure: `lsattr -d` prints the flags first; `E` marks an encrypted folder. */
export const lsattrEncrypted = (output: string): boolean => /^\S*E\S*\s/.test(output);

/** Live facts about the folder (the nearest existing one) that holds PHYLLOME_HOME. */
export async function readStorage(home: string): Promise<StorageFacts> {
  const at = path.resolve(home);
  const [mountinfo, kernelSupport, attrs] = await Promise.all([
    readFile('/proc/self/mountinfo', 'utf8').catch(() => ''),
    readFile('/sys/fs/ext4/features/encryption', 'utf8').then(
      () => true,
      () => false,
    ),
    run('lsattr', ['-d', at], { timeout: 5000 }).then(
      (r) => r.stdout,
      () => '',
    ),
  ]);
  const fsType = mountOf(mountinfo, at)?.type;
  return { path: at, ...(fsType ? { fsType } : {}), kernelSupport, fscrypt: lsattrEncrypted(attrs) };
}
