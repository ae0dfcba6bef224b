import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Keystore } from '../../src/storage/keystore.js';
import { checkImage, imageInfo } from '../../src/storage/qemu-img.js';
const run = promisify(execFile);

import {
  bootArgs,
  cli,
  createGuest,
  daemonPid,
  waitFor,
  findProcesses,
  json,
  ok,
  inGuest,
  markerOnDisk,
  writeMarker,
  stopDaemon,
  useHome,
  waitForReady,
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

describe('disks, live, on a VM that had no key', () => {
  const home = useHome();

  it('hands QEMU the new key as a secret object before hot-plugging the first encrypted disk', async () => {
    const h = home();
    await createGuest(h, 'bare');
    await ok(h, ['start', 'bare']);
    await waitForReady(h, 'bare');
    const vm = await json<Vm>(h, ['disk', 'add', 'bare', '--size', '16M']);
    expect(vm.spec.disks).toMatchObject([{ id: 'disk0', encrypted: true }]);
    let seen = '';
    for (let i = 0; i < 60 && seen !== String((16 * 2 ** 20) / 512); i++) {
      seen = await inGuest(h, 'bare', 'cat /sys/block/vda/size 2>/dev/null');
    }
    expect(seen).toBe(String((16 * 2 ** 20) / 512));
    // The key file QEMU read is gone from the runtime folder.
    expect(await readdir(path.join(h.run, 'vms', 'bare'))).not.toContain('key');
    await ok(h, ['stop', 'bare', '--force']);
  });
});

describe('snapshots', () => {
  const home = useHome();

  it('reverts an encrypted disk to a live snapshot: the guest sees only the first marker', async () => {
    const h = home();
    await createGuest(h, 'snap', ['--disk', '64M']);
    await ok(h, ['start', 'snap']);
    await waitForReady(h, 'snap');
    await writeMarker(h, 'snap', 'MARKER-ONE');
    expect(await json<{ name: string }>(h, ['snapshot', 'create', 'snap', 'one'])).toMatchObject({
      name: 'one',
      live: true,
    });
    // The guest runs on after a live snapshot.
    expect((await json<Vm>(h, ['status', 'snap'])).state).toBe('running');
    await writeMarker(h, 'snap', 'MARKER-TWO');
    expect(await markerOnDisk(h, 'snap')).toBe('MARKER-TWO');

    // Bad names and a revert while running change nothing.
    for (const bad of ['a,b', 'a/b', '..', 'x..y']) {
      const r = await cli(h, ['snapshot', 'create', 'snap', bad]);
      expect(r.code, bad).toBe(1);
      expect(r.stderr).toMatch(/invalid snapshot name|no snapshot/);
    }
    const running = await cli(h, ['snapshot', 'revert', 'snap', 'one']);
    expect(running.code).toBe(1);
    expect(running.stderr).toMatch(/stop "snap" first/);

    await ok(h, ['stop', 'snap', '--force']);
    await ok(h, ['snapshot', 'create', 'snap', 'two']);
    const list = await json<{ current: string; snapshots: { name: string; parent?: string }[] }>(h, [
      'snapshot',
      'list',
      'snap',
    ]);
    expect(list.snapshots.map((x) => [x.name, x.parent])).toEqual([
      ['one', undefined],
      ['two', 'one'],
    ]);
    expect(await ok(h, ['snapshot', 'list', 'snap'])).toMatch(/^one .*live\n {2}two \(current\)/);

    await ok(h, ['snapshot', 'revert', 'snap', 'one']);
    await ok(h, ['start', 'snap']);
    await waitForReady(h, 'snap');
    expect(await markerOnDisk(h, 'snap')).toBe('MARKER-ONE');
    await ok(h, ['stop', 'snap', '--force']);
    await ok(h, ['snapshot', 'delete', 'snap', 'one']);
    const after = await json<{ snapshots: { name: string; parent?: string }[] }>(h, [
      'snapshot',
      'list',
      'snap',
    ]);
    expect(after.snapshots).toMatchObject([{ name: 'two' }]);
    expect(after.snapshots[0]!.parent).toBeUndefined();
  });

  it('covers the UEFI variables and the TPM state of a UEFI VM with a TPM', async () => {
    const h = home();
    await ok(h, [
      'create',
      'uefi',
      '--os',
      'fedora37',
      '--tpm',
      '--disk',
      '64M',
      '--memory',
      '384M',
      '--cpus',
      '1',
      ...bootArgs('efi'),
    ]);
    const vm = await json<Vm>(h, ['status', 'uefi']);
    expect(vm.spec.firmware.type).toBe('uefi');
    await ok(h, ['start', 'uefi']);
    await waitForReady(h, 'uefi', 150_000);
    await writeMarker(h, 'uefi', 'MARKER-ONE');
    await ok(h, ['snapshot', 'create', 'uefi', 'one']);
    await writeMarker(h, 'uefi', 'MARKER-TWO');
    await ok(h, ['stop', 'uefi', '--force']);
    const dir = path.join(h.home, 'vms', 'uefi');
    const tags = async (file: string) =>
      (
        JSON.parse((await run('qemu-img', ['info', '--output=json', '-U', file])).stdout) as {
          snapshots?: { name: string }[];
        }
      ).snapshots?.map((x) => x.name) ?? [];
    expect(await tags(path.join(dir, 'nvram.qcow2'))).toEqual(['one']);
    expect(await tags(path.join(dir, 'disk0.qcow2'))).toEqual(['one']);
    expect((await readdir(path.join(dir, 'snapshots', 'one', 'tpm'))).length).toBeGreaterThan(0);

    await ok(h, ['snapshot', 'revert', 'uefi', 'one']);
    await ok(h, ['start', 'uefi']);
    await waitForReady(h, 'uefi', 150_000);
    expect(await markerOnDisk(h, 'uefi')).toBe('MARKER-ONE');
    expect(await readFile(path.join(dir, 'serial.log'), 'utf8')).toContain('tpm: tpm0 version 2');
    await ok(h, ['stop', 'uefi', '--force']);
  });
});

describe('clones', () => {
  const home = useHome();

  it('makes a full clone: new identity, own key, the same data, a copied TPM; progress as events', async () => {
    const h = home();
    await ok(h, [
      'create',
      'src',
      '--os',
      'debian11',
      '--firmware',
      'bios',
      '--graphics',
      'none',
      '--tpm',
      '--memory',
      '256M',
      '--cpus',
      '1',
      '--disk',
      '64M',
      ...bootArgs(),
    ]);
    await ok(h, ['start', 'src']);
    await waitForReady(h, 'src');
    await writeMarker(h, 'src', 'MARKER-SRC');
    const busy = await cli(h, ['clone', 'src', 'copy']);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/stop "src" first/);
    await ok(h, ['stop', 'src', '--force']);

    const { default: WebSocket } = await import('ws');
    const ws = new WebSocket(`ws+unix://${path.join(h.run, 'phyllomed.sock')}:/v1/events`);
    const events: { type: string; vm: string; percent?: number }[] = [];
    ws.on('message', (d: Buffer) => events.push(JSON.parse(d.toString()) as (typeof events)[number]));
    await new Promise((r) => ws.once('open', r));
    const copy = await json<Vm>(h, ['clone', 'src', 'copy']);
    ws.close();
    const src = await json<Vm>(h, ['status', 'src']);
    expect(copy.uuid).not.toBe(src.uuid);
    expect(copy.spec.nics[0]!.mac).not.toBe(src.spec.nics[0]!.mac);
    // The TPM state is encrypted; the clone's copy opens with the same TPM key (it starts below).
    expect(copy.spec.tpmEncrypted).toBe(true);
    expect(copy.spec.disks[0]).toMatchObject({
      encrypted: true,
      path: path.join(h.home, 'vms', 'copy', 'disk0.qcow2'),
    });
    const progress = events.filter((e) => e.type === 'progress' && e.vm === 'copy').map((e) => e.percent);
    expect(progress.at(-1)).toBe(100);
    // Its own key: the keystore holds two different ones.
    const keystore = new Keystore(path.join(h.home, 'keystore.json'));
    await keystore.unlock((await readFile(h.env.PHYLLOME_PASSPHRASE_FILE!, 'utf8')).trim());
    expect(await keystore.keyFor(copy.uuid)).not.toBe(await keystore.keyFor(src.uuid));
    expect((await readFile(copy.spec.disks[0]!.path)).includes('MARKER-SRC')).toBe(false);
    expect(await readdir(path.join(h.home, 'vms', 'copy', 'tpm'))).toEqual(
      await readdir(path.join(h.home, 'vms', 'src', 'tpm')),
    );

    await ok(h, ['start', 'copy']);
    await waitForReady(h, 'copy');
    expect(await markerOnDisk(h, 'copy')).toBe('MARKER-SRC');
    await ok(h, ['stop', 'copy', '--force']);

    const taken = await cli(h, ['clone', 'src', 'copy']);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/a VM named "copy" already exists/);
    // Linked clones of encrypted VMs are made too (clones.test.ts boots them).
    await ok(h, ['clone', 'src', 'other', '--linked']);
    expect((await json<Vm[]>(h, ['list'])).map((v) => v.name)).toEqual(['copy', 'other', 'src']);
  });

  it('makes a linked clone on a shared read-only base that neither VM can change for the other', async () => {
    const h = home();
    await createGuest(h, 'base', ['--disk', '64M', '--no-encrypt']);
    await ok(h, ['start', 'base']);
    await waitForReady(h, 'base');
    await writeMarker(h, 'base', 'MARKER-BASE');
    await ok(h, ['stop', 'base']);
    await ok(h, ['clone', 'base', 'thin', '--linked']);
    const info = async (name: string) =>
      JSON.parse(
        (
          await run('qemu-img', [
            'info',
            '--output=json',
            '-U',
            path.join(h.home, 'vms', name, 'disk0.qcow2'),
          ])
        ).stdout,
      ) as { 'backing-filename'?: string; 'actual-size': number };
    const thin = await info('thin');
    expect(thin['backing-filename']).toMatch(/\/bases\//);
    expect((await info('base'))['backing-filename']).toBe(thin['backing-filename']);
    expect(thin['actual-size']).toBeLessThan(1024 * 1024);

    await ok(h, ['start', 'thin']);
    await waitForReady(h, 'thin');
    expect(await markerOnDisk(h, 'thin')).toBe('MARKER-BASE');
    await writeMarker(h, 'thin', 'MARKER-THIN');
    await ok(h, ['stop', 'thin']);
    await ok(h, ['start', 'base']);
    await waitForReady(h, 'base');
    expect(await markerOnDisk(h, 'base')).toBe('MARKER-BASE');
    await ok(h, ['stop', 'base', '--force']);
  });
});

describe('crash safety', () => {
  const home = useHome();

  it('leaves clean images and no half-made snapshot or clone after SIGKILL of the daemon mid-operation', async () => {
    const h = home();
    await createGuest(h, 'vm', ['--disk', '64M']);
    await ok(h, ['start', 'vm']);
    await waitForReady(h, 'vm');
    await writeMarker(h, 'vm', 'MARKER-CRASH');
    const vm = await json<Vm>(h, ['status', 'vm']);
    const keystore = new Keystore(path.join(h.home, 'keystore.json'));
    await keystore.unlock((await readFile(h.env.PHYLLOME_PASSPHRASE_FILE!, 'utf8')).trim());
    const key = await keystore.keyFor(vm.uuid);
    const tags = async (file: string) => (await imageInfo({ file })).snapshots.sort();

    /** Starts a CLI command, SIGKILLs the daemon after `delay` ms, and waits for the CLI. */
    const killDuring = async (args: string[], delay: number) => {
      const daemon = (await daemonPid(h))!;
      const pending = cli(h, args);
      await new Promise((r) => setTimeout(r, delay));
      process.kill(daemon, 'SIGKILL');
      await pending;
    };
    const delays = [15, 60, 200];

    for (const [i, delay] of delays.entries()) {
      await killDuring(['snapshot', 'create', 'vm', `s${i}`], delay);
      const listed = (await json<{ snapshots: { name: string }[] }>(h, ['snapshot', 'list', 'vm'])).snapshots
        .map((x) => x.name)
        .sort();
      // The image holds exactly the snapshots that are listed: none half-made.
      expect(await tags(vm.spec.disks[0]!.path)).toEqual(listed);
    }
    expect((await json<Vm>(h, ['status', 'vm'])).state).toBe('running');
    // Shut down cleanly: pulling QEMU's plug can itself leak a cluster, which is not what is tested here.
    expect((await json<Vm>(h, ['stop', 'vm'])).forced).toBe(false);

    for (const [i, delay] of delays.entries()) {
      await killDuring(['clone', 'vm', `c${i}`], delay);
      const names = (await json<Vm[]>(h, ['list'])).map((v) => v.name);
      // No half-made VM folder, and every listed clone is whole.
      expect((await readdir(path.join(h.home, 'vms'))).filter((n) => n.startsWith('.'))).toEqual([]);
      if (names.includes(`c${i}`)) {
        const c = await json<Vm>(h, ['status', `c${i}`]);
        expect(await checkImage({ file: c.spec.disks[0]!.path, key: await keystore.keyFor(c.uuid) })).toBe(
          true,
        );
      }
    }
    // Keys only for VMs that exist.
    const stored = JSON.parse(await readFile(path.join(h.home, 'keystore.json'), 'utf8')) as { keys: object };
    const uuids = (await json<Vm[]>(h, ['list'])).map((v) => v.uuid).sort();
    expect(Object.keys(stored.keys).sort()).toEqual(uuids);

    for (const [i, delay] of delays.entries()) {
      await killDuring(['disk', 'resize', 'vm', 'disk0', `${65 + i}M`], delay);
      // A qemu-img the killed daemon started finishes on its own; it holds the image's lock until then.
      await waitFor(
        'the orphaned qemu-img to finish',
        async () => (await findProcesses((argv) => argv[0]!.endsWith('qemu-img'))).length === 0 || undefined,
      );
      const size = (await imageInfo({ file: vm.spec.disks[0]!.path })).virtualSize / 2 ** 20;
      expect([64 + i, 65 + i]).toContain(size);
      await ok(h, ['disk', 'resize', 'vm', 'disk0', `${65 + i}M`]);
    }

    expect(await checkImage({ file: vm.spec.disks[0]!.path, key })).toBe(true);
    await ok(h, ['start', 'vm']);
    await waitForReady(h, 'vm');
    expect(await markerOnDisk(h, 'vm')).toBe('MARKER-CRASH');
    await ok(h, ['stop', 'vm', '--force']);
  });
});
