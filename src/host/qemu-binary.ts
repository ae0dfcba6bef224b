import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { QemuCaps } from '../qemu/cmdline.js';

const run = promisify(execFile);

export const qemuBinary = (): string => process.env.PHYLLOME_QEMU ?? 'qemu-system-x86_64';

export interface QemuInfo {
  binary: string;
  version: string;
  caps: QemuCaps;
}

/** Reads what the installed QEMU offers from its own help output; a missing QEMU is a clear error. */
export async function inspectQemu(binary = qemuBinary()): Promise<QemuInfo> {
  let version: string;
  let help: string;
  try {
    [{ stdout: version }, { stdout: help }] = await Promise.all([
      run(binary, ['--version'], { timeout: 10_000 }),
      run(binary, ['-help'], { timeout: 10_000, maxBuffer: 4 * 2 ** 20 }),
    ]);
  } catch (e) {
    throw new Error(
      `cannot run ${binary} (${(e as Error).message.split('\n')[0]}): install QEMU with "apt-get install qemu-system-x86" or set PHYLLOME_QEMU`,
      { cause: e },
    );
  }
  const match = /version (\S+)/.exec(version);
  return { binary, version: match?.[1] ?? 'unknown', caps: { sandbox: /^-sandbox /m.test(help) } };
}
