import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { needsSealing, sealingWarning, sealState } from '../../src/daemon/seal.js';
import { parseSpec } from '../../src/spec/schema.js';

const identity = {
  schemaVersion: 1,
  uuid: '6f1c0c42-8d43-4a7e-9b1e-2d6c5f0a9b11',
  createdAt: '2026-11-22T10:00:00.000Z',
};
const uefi = {
  type: 'uefi',
  code: '/c',
  varsTemplate: '/v',
  secureBoot: false,
  enrolledKeys: false,
  smm: false,
  nvramEncrypted: false,
};
const late = parseSpec({
  ...identity,
  name: 'late',
  firmware: uefi,
  tpm: true,
  disks: [
    { id: 'disk0', path: '/d0.qcow2', format: 'qcow2' },
    { id: 'disk1', path: '/d1.qcow2', format: 'qcow2', encrypted: true },
  ],
});

const sealedVars = { ...uefi, type: 'uefi' as const, nvramEncrypted: true };

describe('UEFI variables and TPM state of a VM that got an encrypted disk later', () => {
  it('wait for encryption only once the VM has an encrypted disk, until both are encrypted', () => {
    expect(needsSealing(late)).toBe(true);
    expect(needsSealing({ ...late, disks: [late.disks[0]!] })).toBe(false);
    expect(needsSealing({ ...late, tpmEncrypted: true, firmware: sealedVars })).toBe(false);
    expect(needsSealing({ ...late, tpm: false, firmware: sealedVars })).toBe(false);
    expect(needsSealing({ ...late, tpmEncrypted: false, firmware: sealedVars })).toBe(true);
  });

  it("say so in the VM's warnings, naming what is still plain", () => {
    expect(sealingWarning(late)).toBe(
      'its UEFI variables and TPM state are not encrypted yet (its first encrypted disk came later): ' +
        'that happens at its next start, once it has no snapshots',
    );
    expect(sealingWarning({ ...late, firmware: sealedVars })).toMatch(/^its TPM state is not encrypted yet/);
    expect(sealingWarning({ ...late, disks: [late.disks[0]!] })).toBeUndefined();
  });

  it('stay as they are while snapshots hold plain copies, and the spec is not rewritten', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'phyllome-seal-'));
    try {
      const snapshot = { name: 's', createdAt: identity.createdAt, live: false, state: 'ready' };
      await writeFile(path.join(dir, 'snapshots.json'), JSON.stringify({ snapshots: [snapshot] }));
      let written = false;
      const answer = await sealState({
        spec: late,
        dir,
        nvram: path.join(dir, 'nvram.qcow2'),
        tpmState: path.join(dir, 'tpm'),
        diskKey: 'k',
        tpmKey: () => Promise.resolve('k'),
        writeSpec: () => Promise.resolve(void (written = true)),
      });
      expect(answer).toBe('has-snapshots');
      expect(written).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
