import { describe, expect, it } from 'vitest';
import type { Vm } from '../../web/src/api.js';
import { exportNeedsPassphrase, frameError } from '../../web/src/Copies.js';

const vm = (spec: Partial<Vm['spec']>): Vm => ({
  name: 'a',
  state: 'stopped',
  spec: {
    memory: '1G',
    cpus: 1,
    machine: 'q35',
    firmware: { type: 'bios' },
    graphics: { device: 'none' },
    nics: [],
    ...spec,
  },
});

describe("the VM page's export", () => {
  it('asks for a passphrase when the disks or the TPM state are encrypted', () => {
    expect(exportNeedsPassphrase(vm({}))).toBe(false);
    expect(exportNeedsPassphrase(vm({ disks: [{ encrypted: false }] }))).toBe(false);
    expect(exportNeedsPassphrase(vm({ disks: [{ encrypted: false }, { encrypted: true }] }))).toBe(true);
    expect(exportNeedsPassphrase(vm({ tpmEncrypted: true }))).toBe(true);
  });

  it("shows the daemon's refusal left in the download frame, in its words", () => {
    const refusal = JSON.stringify({
      error: { code: 'conflict', message: '"a" is starting: export it once it is running or stopped' },
    });
    expect(frameError(refusal)).toBe('"a" is starting: export it once it is running or stopped');
    expect(frameError('Bad Gateway')).toBe('Bad Gateway');
    expect(frameError('')).toBe('the export failed');
  });
});
