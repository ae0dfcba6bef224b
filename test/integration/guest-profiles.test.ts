import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { readPidfile } from '../../src/qemu/process.js';
import { isSwtpmFor } from '../../src/qemu/swtpm.js';
import { makeIso } from '../fixtures/iso.js';
import {
  bootArgs,
  cli,
  createGuest,
  findProcesses,
  json,
  ok,
  stopDaemon,
  useHome,
  waitFor,
  waitForReady,
  type TestHome,
  type Vm,
} from './helpers.js';

const run = promisify(execFile);

const serial = (h: TestHome, name: string) =>
  readFile(path.join(h.home, 'vms', name, 'serial.log'), 'utf8').catch(() => '');

describe('guest profiles', () => {
  const home = useHome();

  it('boots a Windows 11 profile through Secure Boot UEFI with a TPM 2.0 whose state survives restarts', async () => {
    const h = home();
    // The Windows 11 plan, booting the test guest's kernel directly; memory lowered for the test.
    const created = await json<Vm & { plan: { notes: string[] } }>(h, [
      'create',
      'w11',
      '--os',
      'win11',
      '--memory',
      '512M',
      ...bootArgs('efi'),
    ]);
    expect(created.spec.firmware).toMatchObject({
      type: 'uefi',
      secureBoot: true,
      enrolledKeys: true,
      smm: true,
    });
    expect(created.spec.tpm).toBe(true);
    expect(created.plan.notes.join('\n')).toMatch(
      /512M of memory is below Microsoft Windows 11's minimum of 4G/,
    );
    const vmDir = path.join(h.home, 'vms', 'w11');
    // The per-VM variable store is qcow2 (snapshots work), the new disk sparse qcow2 of 64 GiB.
    const { stdout: info } = await run('qemu-img', [
      'info',
      '--output=json',
      path.join(vmDir, 'nvram.qcow2'),
    ]);
    // Encrypted with the VM's key, like its disk.
    expect(JSON.parse(info)).toMatchObject({ format: 'qcow2', encrypted: true });
    expect(created.spec.firmware).toMatchObject({ nvramEncrypted: true });
    expect(created.spec.tpmEncrypted).toBe(true);
    const { stdout: disk } = await run('qemu-img', [
      'info',
      '--output=json',
      path.join(vmDir, 'disk0.qcow2'),
    ]);
    expect(JSON.parse(disk)['virtual-size']).toBeGreaterThanOrEqual(64 * 2 ** 30);

    await ok(h, ['start', 'w11']);
    await waitForReady(h, 'w11', 150_000);
    const log = await serial(h, 'w11');
    expect(log).toContain('efi: secureboot=1');
    expect(log).toContain('tpm: tpm0 version 2');
    const swtpm = (await readPidfile(path.join(h.run, 'vms', 'w11', 'swtpm.pid')))!;
    const tpmDir = path.join(vmDir, 'tpm');
    expect(await isSwtpmFor(swtpm, tpmDir)).toBe(true);
    // swtpm read its state key and removed the file.
    expect(await readdir(path.join(h.run, 'vms', 'w11'))).not.toContain('swtpm.key');

    await ok(h, ['stop', 'w11']);
    // swtpm goes with QEMU; the TPM's state stays in the VM's folder.
    await waitFor('swtpm to exit', async () => !(await isSwtpmFor(swtpm, tpmDir)) || undefined, 10_000);
    const state = path.join(tpmDir, 'tpm2-00.permall');
    expect((await stat(state)).size).toBeGreaterThan(1000);

    // A daemon restart in between: the state is still the VM's own.
    await stopDaemon(h);
    await ok(h, ['start', 'w11']);
    await waitForReady(h, 'w11', 150_000);
    expect(await serial(h, 'w11')).toContain('tpm: tpm0 version 2');
    // The second swtpm was given the same state folder, where the first one's state still is.
    const second = (await readPidfile(path.join(h.run, 'vms', 'w11', 'swtpm.pid')))!;
    expect(second).not.toBe(swtpm);
    expect(await isSwtpmFor(second, tpmDir)).toBe(true);
    expect((await stat(state)).size).toBeGreaterThan(1000);
    await ok(h, ['stop', 'w11', '--force']);
  });

  it('fails the start clearly, leaving nothing running, when swtpm dies', async () => {
    const h = home();
    await createGuest(h, 't', ['--tpm']);
    // A TPM state that libtpms cannot read: swtpm fails as QEMU initialises it.
    const tpmDir = path.join(h.home, 'vms', 't', 'tpm');
    await mkdir(tpmDir, { recursive: true });
    await writeFile(path.join(tpmDir, 'tpm2-00.permall'), 'not a TPM state\n');
    const r = await cli(h, ['start', 't']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/failed to start: .*tpm-emulator.*\(swtpm: .*Could not initialize/);
    const vm = await json<Vm>(h, ['status', 't']);
    expect(vm.state).toBe('stopped');
    // Neither QEMU nor swtpm is left behind, and the runtime folder is gone.
    expect(await readdir(path.join(h.run, 'vms')).catch(() => [])).toEqual([]);
    const left = await findProcesses((argv) => argv.some((a) => a.includes(h.dir)));
    expect(left).toEqual([]);

    // An swtpm that exits at once (here: /bin/false) is reported as such.
    await stopDaemon(h);
    h.env = { ...h.env, PHYLLOME_SWTPM: '/bin/false' };
    const quit = await cli(h, ['start', 't']);
    expect(quit.code).toBe(1);
    expect(quit.stderr).toMatch(/failed to start: swtpm exited at start/);
    expect((await json<Vm>(h, ['status', 't'])).state).toBe('stopped');
  });

  it('identifies Windows 11, Fedora and Debian installers from their volume descriptors', async () => {
    const h = home();
    const media = {
      win11: await makeIso(h.dir, 'a.iso', {
        volume: 'CCCOMA_X64FRE_EN-US_DV9',
        publisher: 'MICROSOFT CORPORATION',
      }),
      fedora37: await makeIso(h.dir, 'b.iso', { volume: 'Fedora-WS-Live-37-1-7' }),
      debian11: await makeIso(h.dir, 'c.iso', { volume: 'Debian 11.5.0 amd64 n', system: 'LINUX' }),
    };
    for (const [want, iso] of Object.entries(media)) {
      const plan = await json<{
        os: { shortId: string; identifiedFrom: string };
        spec: { cdroms: unknown[] };
      }>(h, ['create', 'x', '--iso', iso, '--dry-run']);
      expect(plan.os.shortId).toBe(want);
      expect(plan.os.identifiedFrom).toMatch(/volume id/);
      expect(plan.spec.cdroms[0]).toEqual({ path: iso, role: 'install' });
    }
    // Nothing was created by the dry runs.
    expect(await json<Vm[]>(h, ['list'])).toEqual([]);

    const unknown = await makeIso(h.dir, 'd.iso', { volume: 'XYZZY_NOT_AN_OS' });
    const r = await cli(h, ['create', 'y', '--iso', unknown]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/could not identify the OS.*XYZZY_NOT_AN_OS.*closest.*--os/s);
    expect(await json<Vm[]>(h, ['list'])).toEqual([]);
  });

  it('ejects and inserts CD-ROM media while the VM runs', async () => {
    const h = home();
    const one = await makeIso(h.dir, 'one.iso', { volume: 'ONE' });
    const two = await makeIso(h.dir, 'two.iso', { volume: 'TWO' });
    await createGuest(h, 'cd');
    // A stopped VM without a drive gains one.
    await ok(h, ['media', 'insert', 'cd', one]);
    await ok(h, ['start', 'cd']);
    const live = async () =>
      (await json<{ drives: { drive: number; path?: string; live?: boolean }[] }>(h, ['media', 'list', 'cd']))
        .drives;
    expect(await live()).toEqual([{ drive: 0, role: 'media', path: one, live: true }]);
    await ok(h, ['media', 'eject', 'cd']);
    expect(await live()).toEqual([{ drive: 0, role: 'media', live: true }]);
    await ok(h, ['media', 'insert', 'cd', two]);
    expect(await live()).toEqual([{ drive: 0, role: 'media', path: two, live: true }]);
    // The spec follows, so the next start has the same medium.
    expect((await json<Vm>(h, ['status', 'cd'])).spec.cdroms).toEqual([{ role: 'media', path: two }]);
    const r = await cli(h, ['media', 'insert', 'cd', path.join(h.dir, 'missing.iso')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/missing\.iso does not exist/);
    await ok(h, ['stop', 'cd', '--force']);
  });

  it('makes a cloud-init NoCloud seed and attaches it', async () => {
    const h = home();
    const key =
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForPhyllomeTestsOnly00000000000000000 alice@host';
    const vm = await json<Vm>(h, [
      'create',
      'cloud',
      '--os',
      'debian11',
      '--intent',
      'server',
      '--cloud-init',
      'alice',
      '--ssh-key',
      key,
      '--hostname',
      'box',
    ]);
    const seed = path.join(h.home, 'vms', 'cloud', 'cloud-init.iso');
    expect(vm.spec.cdroms).toEqual([{ path: seed, role: 'cloud-init' }]);
    const { stdout: desc } = await run('isoinfo', ['-d', '-i', seed]);
    expect(desc).toMatch(/Volume id: cidata/);
    const { stdout: userData } = await run('isoinfo', ['-R', '-i', seed, '-x', '/user-data']);
    expect(userData).toMatch(/^#cloud-config\n/);
    expect(userData).toContain('hostname: box');
    expect(userData).toContain('name: alice');
    expect(userData).toContain(key);
    const { stdout: metaData } = await run('isoinfo', ['-R', '-i', seed, '-x', '/meta-data']);
    expect(metaData).toContain(`instance-id: ${vm.uuid}`);

    const bad = await cli(h, [
      'create',
      'c2',
      '--os',
      'debian11',
      '--cloud-init',
      'alice',
      '--password-hash',
      'hunter2',
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/crypt hash.*openssl passwd -6/);
    expect((await json<Vm[]>(h, ['list'])).map((v) => v.name)).toEqual(['cloud']);
  });

  it('refuses bad input clearly and creates nothing', async () => {
    const h = home();
    const unknown = await cli(h, ['create', 'a', '--os', 'windoze11']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/windoze11/);
    expect(unknown.stderr).toMatch(/phyllome os list/);
    const missing = await cli(h, ['create', 'b', '--iso', path.join(h.dir, 'nope.iso')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nope\.iso does not exist/);

    // A host without OVMF's descriptors, swtpm or osinfo-db: the error names the package to install.
    const without = async (env: Record<string, string>, args: string[], error: RegExp) => {
      await stopDaemon(h);
      const saved = h.env;
      h.env = { ...saved, ...env };
      const r = await cli(h, args);
      h.env = saved;
      await stopDaemon(h);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(error);
    };
    await without(
      { PHYLLOME_FIRMWARE_DIRS: path.join(h.dir, 'no-firmware') },
      ['create', 'c', '--os', 'win11'],
      /no QEMU firmware descriptors.*apt-get install ovmf \(Debian\) or dnf install edk2-ovmf \(Fedora\)/,
    );
    await without(
      { PHYLLOME_SWTPM: path.join(h.dir, 'no-swtpm') },
      ['create', 'd', '--os', 'win11'],
      /swtpm is not installed: apt-get install swtpm swtpm-tools \(Debian\) or dnf install swtpm swtpm-tools \(Fedora\)/,
    );
    await without(
      { PHYLLOME_OSINFO_DIR: path.join(h.dir, 'no-osinfo') },
      ['os', 'list'],
      /osinfo-db is not installed: apt-get install osinfo-db \(Debian\) or dnf install osinfo-db \(Fedora\)/,
    );

    expect(await json<Vm[]>(h, ['list'])).toEqual([]);
    expect((await readdir(path.join(h.home, 'vms'))).filter((f) => !f.startsWith('.'))).toEqual([]);
  });
});
