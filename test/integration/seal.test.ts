import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { encryptTpmState, findSwtpm, isSwtpmFor, startSwtpm, tpmStatePlain } from '../../src/qemu/swtpm.js';
import { reapHelper } from '../../src/qemu/process.js';
import { imageInfo } from '../../src/storage/qemu-img.js';
import { bootArgs, json, ok, useHome, waitForReady, type Vm } from './helpers.js';

describe('a VM that gets its first encrypted disk later', () => {
  const home = useHome();

  it('has its UEFI variables and TPM state encrypted at its next start, and boots with them', async () => {
    const h = home();
    await ok(h, [
      'create',
      'late',
      '--os',
      'fedora37',
      '--tpm',
      '--disk',
      '64M',
      '--no-encrypt',
      '--memory',
      '384M',
      '--cpus',
      '1',
      ...bootArgs('efi'),
    ]);
    const dir = path.join(h.home, 'vms', 'late');
    const nvram = path.join(dir, 'nvram.qcow2');
    const tpm = path.join(dir, 'tpm');
    const boot = async () => {
      await ok(h, ['start', 'late']);
      await waitForReady(h, 'late', 150_000);
      expect(await readFile(path.join(dir, 'serial.log'), 'utf8')).toContain('tpm: tpm0 version 2');
      await ok(h, ['stop', 'late', '--force']);
    };
    await boot();
    expect(await tpmStatePlain(tpm)).toBe(true);
    expect((await imageInfo({ file: nvram })).encrypted).toBe(false);

    await ok(h, ['disk', 'add', 'late', '--size', '32M']);
    const added = await json<Vm>(h, ['status', 'late']);
    expect(added.spec.disks[1]!.encrypted).toBe(true);
    expect(added.warnings).toEqual([
      expect.stringMatching(/UEFI variables and TPM state are not encrypted yet/),
    ]);
    await boot();
    const vm = await json<Vm>(h, ['status', 'late']);
    expect(vm.spec.tpmEncrypted).toBe(true);
    expect(vm.warnings).toEqual([]);
    expect(vm.spec.firmware).toMatchObject({ type: 'uefi', nvramEncrypted: true });
    expect((await imageInfo({ file: nvram })).encrypted).toBe(true);
    expect(await tpmStatePlain(tpm)).toBe(false);
    // Nothing left under the temporary names.
    expect((await readdir(dir)).filter((f) => /\.(plain|sealing)$/.test(f))).toEqual([]);
  }, 420_000);

  it('re-stores plain TPM state encrypted, the same state under the key', async () => {
    const work = await mkdtemp(path.join(tmpdir(), 'pht-tpm-'));
    const ioctl = (socket: string, args: string[]) =>
      promisify(execFile)('swtpm_ioctl', ['--unix', socket, ...args], { timeout: 10_000 });
    // The permanent state as an swtpm on `dir` hands it out (keyFile: it needs the key).
    const saved = async (dir: string, name: string, keyFile?: string) => {
      const socket = path.join(work, 'c.sock');
      const f = { stateDir: dir, socket, pidfile: path.join(work, 'p'), log: path.join(work, 'log') };
      const pid = await startSwtpm(await findSwtpm(), { ...f, ...(keyFile ? { keyFile } : {}) });
      try {
        await ioctl(socket, ['-i']);
        await ioctl(socket, ['--save', 'permanent', path.join(work, name)]);
        await ioctl(socket, ['-s']);
      } finally {
        await reapHelper(pid, () => isSwtpmFor(pid, dir), 2000);
        await rm(socket, { force: true });
      }
      return readFile(path.join(work, name));
    };
    try {
      const plain = path.join(work, 'plain');
      const sealed = path.join(work, 'sealed');
      const before = await saved(plain, 'before');
      expect(await tpmStatePlain(plain)).toBe(true);
      await mkdir(sealed, { mode: 0o700 });
      const key = 'ab'.repeat(32);
      const sub = path.join(work, 'w');
      await mkdir(sub);
      await encryptTpmState(await findSwtpm(), { from: plain, to: sealed, key, work: sub });
      expect(await tpmStatePlain(sealed)).toBe(false);
      await writeFile(path.join(work, 'key'), key, { mode: 0o600 });
      expect((await saved(sealed, 'after', path.join(work, 'key'))).equals(before)).toBe(true);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
