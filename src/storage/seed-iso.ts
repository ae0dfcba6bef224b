import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export class SeedIsoError extends Error {}

/** A NoCloud seed: an ISO 9660 volume labelled `cidata` holding user-data and meta-data. */
export async function writeSeedIso(
  out: string,
  files: { userData: string; metaData: string },
): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'phyllome-seed-'));
  try {
    await writeFile(path.join(dir, 'user-data'), files.userData, { mode: 0o600 });
    await writeFile(path.join(dir, 'meta-data'), files.metaData, { mode: 0o600 });
    await run('genisoimage', ['-quiet', '-output', out, '-volid', 'cidata', '-joliet', '-rock', dir], {
      timeout: 30_000,
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new SeedIsoError(
        'genisoimage is not installed: apt-get install genisoimage (Debian) or dnf install genisoimage (Fedora)',
      );
    }
    throw e;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
