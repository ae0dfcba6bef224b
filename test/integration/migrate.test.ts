import { spawn, type ChildProcess } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isQemuFor, readPidfile } from '../../src/qemu/process.js';
import {
  alive,
  cli,
  createGuest,
  destroyHome,
  json,
  makeHome,
  ok,
  openConsole,
  READY,
  root,
  waitFor,
  waitForReady,
  type ConsoleSession,
  type TestHome,
  type Vm,
} from './helpers.js';

let src: TestHome;
let dst: TestHome;
let dstDaemon: ChildProcess;
const port = 20000 + Math.floor(Math.random() * 2000);

// Two daemons on this machine: the source started by the CLI, the destination in the foreground on
// loopback TCP, as a second host would serve it.
beforeEach(async () => {
  src = await makeHome();
  dst = await makeHome();
  dstDaemon = spawn(
    process.execPath,
    [path.join(root, 'dist/phyllome.mjs'), 'daemon', '--listen', `127.0.0.1:${port}`],
    { env: dst.env, stdio: 'ignore' },
  );
  await waitFor(
    'the destination to listen',
    () =>
      fetch(`http://127.0.0.1:${port}/v1/vms`).then(
        () => true,
        () => undefined,
      ),
    20_000,
  );
});
afterEach(async () => {
  dstDaemon.kill('SIGKILL');
  await destroyHome(src);
  await destroyHome(dst);
});

const serialLog = (h: TestHome, name: string) =>
  readFile(path.join(h.home, 'vms', name, 'serial.log'), 'utf8').catch(() => '');
const ticks = (log: string) => [...log.matchAll(/^TICK-(\d+)\r?$/gm)].map((m) => Number(m[1]));
const migrate = (name: string, extra: string[] = []) =>
  cli(
    src,
    [
      'migrate',
      name,
      '--to',
      `127.0.0.1:${port}`,
      '--token-file',
      path.join(dst.home, 'api-token'),
      ...extra,
    ],
    150_000,
  );

/** Boots the test guest with an encrypted disk holding a marker, and starts a counter on its console. */
async function counting(name: string): Promise<ConsoleSession> {
  await createGuest(src, name, ['--disk', '32M']);
  await ok(src, ['start', name]);
  await waitForReady(src, name);
  const c = openConsole(src, name);
  await c.waitFor(READY);
  c.type('echo MIGRATED-DISK-MARKER > /dev/vda; sync /dev/vda; echo marked\n');
  await c.waitFor('\nmarked');
  c.type('i=0; while :; do echo TICK-$i; i=$((i+1)); sleep 1; done &\n');
  await waitFor('the counter', async () => ticks(await serialLog(src, name)).length >= 2 || undefined);
  return c;
}

describe('live migration between two daemons', () => {
  it('moves a running guest with its disk: the counter goes on without a reboot, the source is gone', async () => {
    const c = await counting('mover');
    const before = await json<Vm>(src, ['status', 'mover']);
    const r = await migrate('mover');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Migrated "mover"/);
    // The source's console ends with it; what it showed last is where the counter was.
    await c.exited;
    const lastAtSource = ticks(c.output).at(-1)!;
    expect(lastAtSource).toBeGreaterThanOrEqual(1);

    // Gone from the source: QEMU, files, key.
    expect(await json<Vm[]>(src, ['list'])).toEqual([]);
    expect(alive(before.pid!)).toBe(false);
    await expect(access(path.join(src.home, 'vms/mover'))).rejects.toThrow();
    expect(await readFile(path.join(src.home, 'keystore.json'), 'utf8')).not.toContain(before.uuid);

    // Running at the destination: the same guest (uuid, MACs), its disk now there, encrypted.
    const after = await json<Vm>(dst, ['status', 'mover']);
    expect(after).toMatchObject({ state: 'running', uuid: before.uuid });
    expect(after.spec.nics).toEqual(before.spec.nics);
    expect(after.spec.disks).toMatchObject([
      { id: 'disk0', path: path.join(dst.home, 'vms/mover/disk0.qcow2'), encrypted: true },
    ]);
    expect(await readFile(path.join(dst.home, 'keystore.json'), 'utf8')).toContain(before.uuid);

    // The counter goes on where it was, and the guest never booted again.
    await waitFor(
      'the counter at the destination',
      async () => ticks(await serialLog(dst, 'mover')).length >= 3 || undefined,
    );
    const log = await serialLog(dst, 'mover');
    expect(log).not.toContain(READY);
    const seen = ticks(log);
    expect(seen[0]).toBeGreaterThan(lastAtSource);
    expect(seen[0]).toBeLessThanOrEqual(lastAtSource + 3);
    expect(seen).toEqual(seen.map((_, i) => seen[0]! + i));

    // The disk's data arrived (read past the guest's page cache).
    const d = openConsole(dst, 'mover');
    d.type('sync; echo 3 > /proc/sys/vm/drop_caches; head -c 20 /dev/vda | tr -dc A-Z-; echo =read\n');
    await d.waitFor('MIGRATED-DISK-MARKER=read');
    d.child.kill();
  });

  it('leaves the source running, and nothing at the destination, when the destination dies midway', async () => {
    const c = await counting('stayer');
    // Data to mirror, slowly, so there is time to kill the destination while the disk moves.
    c.type('dd if=/dev/urandom of=/dev/vda bs=1M count=6 seek=1 2>/dev/null; sync /dev/vda; echo filled\n');
    await c.waitFor('\nfilled', 60_000);
    const { uuid, pid } = await json<Vm>(src, ['status', 'stayer']);
    const running = migrate('stayer', ['--bandwidth', '1M']);
    const pidfile = path.join(dst.run, 'vms/stayer/qemu.pid');
    const dstPid = await waitFor('the destination QEMU', () => readPidfile(pidfile), 60_000);
    expect(await isQemuFor(dstPid, uuid)).toBe(true);
    await new Promise((r) => setTimeout(r, 2000));
    process.kill(dstPid, 'SIGKILL');

    const r = await running;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/migration of "stayer" failed: .*; it keeps running here/);

    // The source runs on, the same QEMU, its counter still counting.
    expect(await json<Vm>(src, ['status', 'stayer'])).toMatchObject({ state: 'running', pid });
    const count = ticks(await serialLog(src, 'stayer')).at(-1)!;
    await waitFor(
      'the counter to go on at the source',
      async () => (ticks(await serialLog(src, 'stayer')).at(-1) ?? 0) > count + 1 || undefined,
    );

    // The destination kept nothing: no VM, no files, no key, no process.
    await waitFor('the destination to clean up', async () =>
      (await json<Vm[]>(dst, ['list'])).length === 0 ? true : undefined,
    );
    await expect(access(path.join(dst.home, 'vms/stayer'))).rejects.toThrow();
    await expect(access(path.join(dst.run, 'vms/stayer'))).rejects.toThrow();
    expect(await readFile(path.join(dst.home, 'keystore.json'), 'utf8')).not.toContain(uuid);
    expect(alive(dstPid)).toBe(false);
    c.child.kill();
  });
});
