import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decideAccel, probeFirmware } from '../../src/host/accel.js';

describe('KVM probe firmware', () => {
  it('is the assembled probe-rom.S', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'phyllome-rom-'));
    try {
      const src = new URL('../../src/host/probe-rom.S', import.meta.url).pathname;
      execFileSync('as', ['--32', '-o', `${dir}/rom.o`, src]);
      execFileSync('objcopy', ['-O', 'binary', `${dir}/rom.o`, `${dir}/rom.bin`]);
      expect(probeFirmware().equals(await readFile(`${dir}/rom.bin`))).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('is a 64 KiB BIOS whose reset vector jumps into it', () => {
    const rom = probeFirmware();
    expect(rom.length).toBe(65536);
    expect(rom.subarray(0xfff0, 0xfff5).toString('hex')).toBe('ea0000' + '00f0');
  });

  it('falls back to TCG with a warning when /dev/kvm is missing, without running QEMU', async () => {
    const decision = await decideAccel('/nonexistent/qemu', '/nonexistent/kvm');
    expect(decision.accel).toBe('tcg');
    expect(decision.warning).toMatch(/KVM is not usable \(\/nonexistent\/kvm is missing or not accessible\)/);
  });
});
