import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bootArgs,
  cli,
  destroyHome,
  json,
  makeHome,
  ok,
  stopDaemon,
  waitForReady,
  writeMarker,
  type TestHome,
} from './helpers.js';

// A real ext4 with the encrypt feature, on a loop device this test makes and removes; fscrypt's
// global files (/etc/fscrypt.conf, /.fscrypt) are removed after it unless they were there before.
const GLOBAL = ['/etc/fscrypt.conf', '/.fscrypt'];
let made: string[] = [];
let h: TestHome;
let mnt: string;
let image: string;

beforeAll(async () => {
  made = GLOBAL.filter((p) => !existsSync(p));
  h = await makeHome();
  image = path.join(h.dir, 'fs.img');
  mnt = path.join(h.dir, 'mnt');
  await mkdir(mnt);
  execFileSync('truncate', ['-s', '256M', image]);
  execFileSync('mkfs.ext4', ['-q', '-O', 'encrypt', image]);
  execFileSync('mount', ['-o', 'loop', image, mnt]);
  // The VM state lives on that filesystem; the runtime folder stays where makeHome put it.
  h.home = path.join(mnt, 'home');
  h.env.PHYLLOME_HOME = h.home;
});

afterAll(async () => {
  await destroyHome({ ...h, dir: path.join(h.dir, 'none') });
  try {
    execFileSync('umount', [mnt]);
  } catch {
    execFileSync('umount', ['-l', mnt]);
  }
  await rm(h.dir, { recursive: true, force: true });
  for (const p of made) await rm(p, { recursive: true, force: true });
});

describe('an fscrypt-encrypted VM folder', () => {
  it('encrypts the VM folder with its VMs in it, keeps its key in the keystore, and opens it on unlock', async () => {
    await ok(h, ['create', 'vault', ...bootArgs(), '-m', '256M', '--disk', '32M', '--no-encrypt']);
    expect((await json<{ fscrypt: boolean }>(h, ['storage'])).fscrypt).toBe(false);

    // Refused while a VM runs: its files are open.
    await ok(h, ['start', 'vault']);
    const busy = await cli(h, ['storage', 'encrypt']);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/stop every VM first: vault still run/);
    await ok(h, ['stop', 'vault', '--force']);

    const done = await json<{ path: string; moved: string[] }>(h, ['storage', 'encrypt']);
    expect(done).toEqual({ path: path.join(h.home, 'vms'), moved: ['vault'] });
    expect(execFileSync('lsattr', ['-d', done.path], { encoding: 'utf8' })).toMatch(/^\S*E\S*\s/);
    expect((await readdir(h.home)).filter((n) => n.startsWith('vms.'))).toEqual([]);
    const again = await cli(h, ['storage', 'encrypt']);
    expect(again.stderr).toMatch(/is already encrypted/);

    const token = `SPEC-TOKEN-${Date.now()}`;
    await ok(h, [
      'create',
      'later',
      ...bootArgs(),
      '-m',
      '128M',
      '--no-encrypt',
      '--append',
      `console=ttyS0 ${token}`,
    ]);
    // The moved VM boots from the encrypted folder; what it writes reaches the device encrypted.
    await ok(h, ['start', 'vault']);
    await waitForReady(h, 'vault', 120_000);
    const marker = `FSCRYPT-${Date.now()}`;
    await writeMarker(h, 'vault', marker);
    await ok(h, ['stop', 'vault', '--force']);
    await stopDaemon(h);
    execFileSync('sync', ['-f', mnt]);
    const serial = path.join(h.home, 'vms', 'vault', 'serial.log');
    expect(await readFile(serial, 'utf8')).toContain(marker);
    const device = await readFile(image);
    expect(device.includes(marker)).toBe(false);
    // A spec written since is not readable on the device either. (What was written before the
    // encryption may linger in freed blocks: the README says so.)
    expect(device.includes(token)).toBe(false);

    // After a reboot the folder is locked; a daemon without the passphrase loads nothing and says why.
    execFileSync('fscrypt', ['lock', done.path]);
    const locked = { ...h, env: { ...h.env, PHYLLOME_PASSPHRASE_FILE: '' } };
    const list = await cli(locked, ['list']);
    expect(list.code).toBe(1);
    expect(list.stderr).toMatch(/VM storage is encrypted and locked: run "phyllome unlock"/);
    expect((await json<{ locked: boolean }>(locked, ['storage'])).locked).toBe(true);
    const pass = path.join(h.dir, 'pass');
    await writeFile(pass, 'correct horse battery staple\n');
    await ok(locked, ['unlock', '--passphrase-file', pass]);
    const vms = await json<{ name: string; state: string }[]>(locked, ['list']);
    expect(vms.map((v) => [v.name, v.state])).toEqual([
      ['later', 'stopped'],
      ['vault', 'stopped'],
    ]);
    expect(await readFile(serial, 'utf8')).toContain(marker);
  });

  it('says how to enable encryption on a filesystem without it, and changes nothing', async () => {
    const plain = await makeHome();
    try {
      await ok(plain, ['create', 'p', ...bootArgs(), '-m', '128M']);
      const r = await cli(plain, ['storage', 'encrypt']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/cannot encrypt the VM storage: .*tune2fs -O encrypt/s);
      expect(await readdir(plain.home)).not.toContain('vms.encrypting');
      expect((await json<{ name: string }[]>(plain, ['list'])).map((v) => v.name)).toEqual(['p']);
    } finally {
      await destroyHome(plain);
    }
  });
});
