import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Accel } from '../qemu/cmdline.js';

export interface AccelDecision {
  accel: Accel;
  /** Set when KVM was wanted but is not usable: shown in CLI, API and logs. */
  warning?: string;
}

/**
 * A 64 KiB BIOS (source: probe-rom.S) that goes from real mode through protected mode into long mode
 * with paging on, then writes 1 to I/O port 0xf4 (isa-debug-exit) so QEMU exits with status 3.
 * Long mode matters: on the broken KVM hosts seen here, real-mode code runs but the switch to long mode
 * hangs, as the Linux boot does.
 */
const PROBE_CODE =
  'fa31c08ed0b800f08ed8660f0116b0000f20c06683c8010f22c066ea22000f00080066b810008ed88ec08ed0bf0010000031c0' +
  'b9000c0000f3abc7050010000003200000c7050020000003300000c70500300000830000000f20e083c8200f22e0b800100000' +
  '0f22d8b9800000c00f320d000100000f300f20c00d000000800f22c0ea89000f001800b001e6f4f4ebfd0000000000000000ff' +
  'ff0000009acf00ffff00000092cf00ffff0000009aaf001f0090000f';
const RESET_VECTOR = 'ea0000' + '00f0'; // ljmp 0xf000:0x0000

export function probeFirmware(): Buffer {
  const rom = Buffer.alloc(64 * 1024);
  Buffer.from(PROBE_CODE, 'hex').copy(rom, 0);
  Buffer.from(RESET_VECTOR, 'hex').copy(rom, rom.length - 16);
  return rom;
}

export const PROBE_EXIT_CODE = 3;

/** Runs the probe guest under one accelerator: true if guest code reached the exit port, else why not. */
export async function runAccelProbe(qemu: string, accel: Accel, timeoutMs: number): Promise<true | string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'phyllome-probe-'));
  try {
    const bios = path.join(dir, 'probe.rom');
    await writeFile(bios, probeFirmware());
    // coreutils' timeout bounds the probe even if this process dies first (a daemon killed during
    // start-up must not leave a spinning vCPU behind); the timer below bounds it for us.
    const seconds = Math.ceil(timeoutMs / 1000);
    const child = spawn(
      'timeout',
      [
        '--signal=KILL',
        String(seconds),
        qemu,
        '-nodefaults',
        '-no-user-config',
        '-machine',
        `pc,accel=${accel}`,
        '-m',
        '16',
        '-display',
        'none',
        '-bios',
        bios,
        '-device',
        'isa-debug-exit,iobase=0xf4,iosize=0x01',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    return await new Promise<true | string>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(`the test vCPU did not run within ${timeoutMs} ms`);
      }, timeoutMs + 500);
      child.on('error', (err) => {
        clearTimeout(timer);
        resolve(`cannot run ${qemu}: ${err.message}`);
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        if (code === PROBE_EXIT_CODE) resolve(true);
        // timeout(1) signals its whole process group, itself included: it dies of the KILL it sent.
        else if (signal === 'SIGKILL' || code === 124 || code === 137) {
          resolve(`the test vCPU did not run within ${timeoutMs} ms`);
        } else resolve(stderr.trim().split('\n').pop() || `QEMU exited with ${code}`);
      });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** KVM if /dev/kvm opens and really runs a vCPU within the bound; otherwise TCG with the reason. */
export async function decideAccel(
  qemu: string,
  devKvm = '/dev/kvm',
  timeoutMs = 3000,
): Promise<AccelDecision> {
  const fallback = (why: string): AccelDecision => ({
    accel: 'tcg',
    warning: `KVM is not usable (${why}): VMs run under TCG software emulation, which is much slower`,
  });
  try {
    await access(devKvm, constants.R_OK | constants.W_OK);
  } catch {
    return fallback(`${devKvm} is missing or not accessible`);
  }
  const result = await runAccelProbe(qemu, 'kvm', timeoutMs);
  return result === true ? { accel: 'kvm' } : fallback(result);
}
