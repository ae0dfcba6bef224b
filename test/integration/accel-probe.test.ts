import { describe, expect, it } from 'vitest';
import { decideAccel, runAccelProbe } from '../../src/host/accel.js';
import { inspectQemu } from '../../src/host/qemu-binary.js';

describe('accelerator probe on the real QEMU', () => {
  it('runs the probe guest to its exit port under TCG', async () => {
    expect(await runAccelProbe('qemu-system-x86_64', 'tcg', 10_000)).toBe(true);
  });

  it('decides within its bound and gives a reason whenever it falls back', async () => {
    const started = Date.now();
    const decision = await decideAccel('qemu-system-x86_64', '/dev/kvm', 3000);
    expect(Date.now() - started).toBeLessThan(6000);
    if (decision.accel === 'tcg') expect(decision.warning).toMatch(/KVM is not usable/);
    else expect(decision.warning).toBeUndefined();
  });

  it('reads what the installed QEMU can do', async () => {
    const info = await inspectQemu();
    expect(info.version).toMatch(/^\d+\.\d+/);
    expect(info.caps.sandbox).toBe(true);
    await expect(inspectQemu('/nonexistent/qemu')).rejects.toThrow(/apt-get install qemu-system-x86/);
  });
});
