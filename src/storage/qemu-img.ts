import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export class QemuImgError extends Error {}

/** qemu-img: PHYLLOME_QEMU_IMG, else the one on PATH. */
const binary = () => process.env.PHYLLOME_QEMU_IMG || 'qemu-img';

async function qemuImg(args: string[]): Promise<void> {
  try {
    await run(binary(), args, { timeout: 120_000 });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') {
      throw new QemuImgError(
        'qemu-img is not installed: apt-get install qemu-utils (Debian) or dnf install qemu-img (Fedora)',
      );
    }
    throw new QemuImgError(`qemu-img ${args[0]} failed: ${(err.stderr ?? err.message).trim()}`);
  }
}

/** A sparse qcow2 image: only written clusters take space. */
export const createQcow2 = (file: string, bytes: number): Promise<void> =>
  qemuImg(['create', '-q', '-f', 'qcow2', file, String(bytes)]);

/** A raw image (an NVRAM template) as qcow2, so it can be snapshotted with the disks. */
export const rawToQcow2 = (from: string, to: string): Promise<void> =>
  qemuImg(['convert', '-q', '-f', 'raw', '-O', 'qcow2', from, to]);
