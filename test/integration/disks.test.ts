import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Keystore } from '../../src/storage/keystore.js';
import {
  cli,
  createGuest,
  findProcesses,
  json,
  ok,
  openConsole,
  stopDaemon,
  useHome,
  waitForReady,
  type TestHome,
  type Vm,
} from './helpers.js';

/** Every regular file under a folder, for "is the key anywhere in here" checks. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** Writes a marker at the start of the guest's first disk through its shell, and syncs. */
async function writeMarker(h: TestHome, name: string, marker: string): Promise<void> {
  const c = openConsole(h, name);
  c.type(`echo ${marker} > /dev/vda; sync; echo done-${marker}\n`);
  await c.waitFor(`done-${marker}`, 30_000);
  c.child.kill();
}

describe('encrypted disks', () => {
  const home = useHome();

  it('keeps the guest data, and the key, out of every file and process list', async () => {
    const h = home();
    await createGuest(h, 'enc', ['--disk', '64M']);
    await createGuest(h, 'plain', ['--disk', '64M', '--no-encrypt']);
    const enc = await json<Vm>(h, ['status', 'enc']);
    expect(enc.spec.disks[0]).toMatchObject({ id: 'disk0', encrypted: true, format: 'qcow2' });
    expect((await json<Vm>(h, ['status', 'plain'])).spec.disks[0]!.encrypted).toBe(false);

    for (const name of ['enc', 'plain']) {
      await ok(h, ['start', name]);
      await waitForReady(h, name);
      await writeMarker(h, name, `PHYLLOME-MARKER-${name.toUpperCase()}`);
    }
    // The key, unwrapped here with the administrator passphrase the daemon was given.
    const keystore = new Keystore(path.join(h.home, 'keystore.json'));
    await keystore.unlock((await readFile(h.env.PHYLLOME_PASSPHRASE_FILE!, 'utf8')).trim());
    const key = await keystore.keyFor(enc.uuid);
    expect(key).toMatch(/^[A-Za-z0-9+/]{43}=$/);

    // Not in any process's argv (QEMU reads it from a pipe), nor in any file of the home or runtime folder.
    expect(await findProcesses((argv) => argv.join(' ').includes(key))).toEqual([]);
    for (const f of [...(await filesUnder(h.home)), ...(await filesUnder(h.run))]) {
      expect((await readFile(f)).includes(key), f).toBe(false);
    }
    for (const name of ['enc', 'plain']) await ok(h, ['stop', name, '--force']);
    // The guest's bytes: in the clear on the plain image, absent from the encrypted one.
    const image = (name: string) => readFile(path.join(h.home, 'vms', name, 'disk0.qcow2'));
    expect((await image('plain')).includes('PHYLLOME-MARKER-PLAIN')).toBe(true);
    expect((await image('enc')).includes('PHYLLOME-MARKER-ENC')).toBe(false);
    // The keystore holds the key wrapped only.
    expect((await readFile(path.join(h.home, 'keystore.json'), 'utf8')).includes(key)).toBe(false);
  });

  it('refuses to start while the keystore is locked, and a wrong passphrase changes nothing', async () => {
    const h = home();
    await createGuest(h, 'enc', ['--disk', '64M']);
    await ok(h, ['lock']);
    const locked = await cli(h, ['start', 'enc']);
    expect(locked.code).toBe(1);
    expect(locked.stderr).toMatch(/the keystore is locked: run "phyllome unlock"/);
    expect((await json<Vm>(h, ['status', 'enc'])).state).toBe('stopped');

    const store = path.join(h.home, 'keystore.json');
    const before = await readFile(store, 'utf8');
    const wrong = path.join(h.dir, 'wrong');
    await writeFile(wrong, 'not the passphrase\n');
    const bad = await cli(h, ['unlock', '--passphrase-file', wrong]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/wrong passphrase: the keystore stays locked/);
    expect(await readFile(store, 'utf8')).toBe(before);
    expect((await cli(h, ['start', 'enc'])).code).toBe(1);

    expect(
      await json<{ state: string }>(h, ['unlock', '--passphrase-file', h.env.PHYLLOME_PASSPHRASE_FILE!]),
    ).toEqual({
      state: 'unlocked',
    });
    await ok(h, ['start', 'enc']);
    await waitForReady(h, 'enc');
    await ok(h, ['stop', 'enc', '--force']);

    // A daemon started without the passphrase file starts locked.
    await stopDaemon(h);
    h.env = { ...h.env, PHYLLOME_PASSPHRASE_FILE: '' };
    expect(await json<{ state: string }>(h, ['lock'])).toEqual({ state: 'locked' });
  });
});

/** Runs a shell command in the guest and returns what it printed between two markers. */
async function inGuest(h: TestHome, name: string, command: string, timeoutMs = 30_000): Promise<string> {
  const c = openConsole(h, name);
  const tag = Math.random().toString(36).slice(2, 8);
  c.type(`echo B-${tag}; ${command}; echo E-${tag}\n`);
  // At a line start only in the output: the echoed command line has them after "echo ".
  await c.waitFor(`\nE-${tag}`, timeoutMs);
  c.child.kill();
  const out = c.output.replaceAll('\r', '');
  return out.slice(out.lastIndexOf(`\nB-${tag}\n`) + tag.length + 4, out.lastIndexOf(`\nE-${tag}`)).trim();
}

describe('disks, live', () => {
  const home = useHome();

  it('attaches, grows and detaches a disk while the guest runs, and the guest sees each change', async () => {
    const h = home();
    await createGuest(h, 'live', ['--disk', '64M']);
    await ok(h, ['start', 'live']);
    await waitForReady(h, 'live');
    expect(await inGuest(h, 'live', 'ls /sys/block | grep vd')).toBe('vda');

    const added = await json<Vm>(h, ['disk', 'add', 'live', '--size', '32M']);
    expect(added.spec.disks[1]).toMatchObject({ id: 'disk1', encrypted: true, bus: 'virtio' });
    const sectors = (n: number) => String((n * 2 ** 20) / 512);
    let seen = '';
    for (let i = 0; i < 60 && seen !== sectors(32); i++) {
      seen = await inGuest(h, 'live', 'cat /sys/block/vdb/size 2>/dev/null');
    }
    expect(seen).toBe(sectors(32));

    await ok(h, ['disk', 'resize', 'live', 'disk1', '48M']);
    for (let i = 0; i < 30 && seen !== sectors(48); i++)
      seen = await inGuest(h, 'live', 'cat /sys/block/vdb/size');
    expect(seen).toBe(sectors(48));
    const disks = await json<{ disks: { id: string; virtualSize: number }[] }>(h, ['disk', 'list', 'live']);
    expect(disks.disks.map((d) => [d.id, d.virtualSize])).toEqual([
      ['disk0', 64 * 2 ** 20],
      ['disk1', 48 * 2 ** 20],
    ]);

    // Bad input changes nothing.
    const shrink = await cli(h, ['disk', 'resize', 'live', 'disk1', '16M']);
    expect(shrink.code).toBe(1);
    expect(shrink.stderr).toMatch(/shrinking it to 16M would cut off the guest's data/);
    const boot = await cli(h, ['disk', 'remove', 'live', 'disk0']);
    expect(boot.code).toBe(1);
    expect(boot.stderr).toMatch(/disk0 is the boot disk of running VM "live": stop it first/);
    const sata = await cli(h, ['disk', 'add', 'live', '--size', '8M', '--bus', 'sata']);
    expect(sata.code).toBe(1);
    expect(sata.stderr).toMatch(/SATA disks cannot be hot-plugged/);
    expect((await json<Vm>(h, ['status', 'live'])).spec.disks).toHaveLength(2);

    await ok(h, ['disk', 'remove', 'live', 'disk1']);
    expect(await inGuest(h, 'live', 'ls /sys/block | grep vd')).toBe('vda');
    expect((await json<Vm>(h, ['status', 'live'])).spec.disks.map((d) => d.id)).toEqual(['disk0']);
    await ok(h, ['stop', 'live', '--force']);
    // Offline: grow with qemu-img (encrypted: with the key from the keystore).
    await ok(h, ['disk', 'resize', 'live', 'disk0', '96M']);
    const after = await json<{ disks: { virtualSize: number }[] }>(h, ['disk', 'list', 'live']);
    expect(after.disks[0]!.virtualSize).toBe(96 * 2 ** 20);
  });
});
