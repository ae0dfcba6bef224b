import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { access, mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PSK_USER, pskFile } from '../../src/daemon/migrate-plan.js';
import { isQemuFor, readPidfile } from '../../src/qemu/process.js';
import { QmpClient } from '../../src/qemu/qmp.js';
import {
  alive,
  bootArgs,
  cli,
  createGuest,
  daemonPid,
  destroyHome,
  findProcesses,
  inGuest,
  json,
  makeHome,
  ok,
  openConsole,
  READY,
  root,
  waitFor,
  waitForReady,
  writeMarker,
  type ConsoleSession,
  type Result,
  type TestHome,
  type Vm,
} from './helpers.js';
import { API_PORT, isRoot, Netns } from './netns.js';

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
/** The marker writeMarker left, read from the disk itself (the page cache dropped first). */
const MARKER_ON_DISK = 'head -c 32 /dev/vda | tr -dc A-Z0-9-; echo';
const ticks = (log: string) => [...log.matchAll(/^TICK-(\d+)\r?$/gm)].map((m) => Number(m[1]));
/** Migrates `name` from the source to the daemon at `to`, whose home is `there`. */
const migrateTo = (to: string, there: TestHome, name: string, extra: string[] = []) =>
  cli(
    src,
    ['migrate', name, '--to', to, '--token-file', path.join(there.home, 'api-token'), ...extra],
    150_000,
  );
const migrate = (name: string, extra: string[] = []) => migrateTo(`127.0.0.1:${port}`, dst, name, extra);

/** Boots the test guest with an encrypted disk holding a marker, and starts a counter on its console. */
async function counting(name: string, extra: string[] = []): Promise<ConsoleSession> {
  await createGuest(src, name, ['--disk', '32M', ...extra]);
  await ok(src, ['start', name]);
  await waitForReady(src, name);
  await writeMarker(src, name, 'MIGRATED-DISK-MARKER');
  const c = openConsole(src, name);
  await c.waitFor(READY);
  c.type('i=0; while :; do echo TICK-$i; i=$((i+1)); sleep 1; done &\n');
  await waitFor('the counter', async () => ticks(await serialLog(src, name)).length >= 2 || undefined);
  return c;
}

/** The counter goes on at `h` where it was at the source (`lastAtSource`), and the guest never booted again. */
async function countsOn(h: TestHome, name: string, lastAtSource: number): Promise<void> {
  await waitFor(
    'the counter at the destination',
    async () => ticks(await serialLog(h, name)).length >= 3 || undefined,
  );
  const log = await serialLog(h, name);
  expect(log).not.toContain(READY);
  const seen = ticks(log);
  expect(seen[0]).toBeGreaterThan(lastAtSource);
  expect(seen[0]).toBeLessThanOrEqual(lastAtSource + 3);
  expect(seen).toEqual(seen.map((_, i) => seen[0]! + i));
}

/** Runs a program with a hard timeout; its exit code and output. */
function run(binary: string, args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(binary, args, { timeout: 10_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 124) : 0, stdout, stderr }),
    );
  });
}

/** Loopback TCP ports a process listens on that a client is connected to now (from /proc/net/tcp). */
async function servingPorts(pid: number): Promise<number[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) inodes.add(m[1]!);
  }
  const rows = (await readFile('/proc/net/tcp', 'utf8')).trim().split('\n').slice(1);
  const cols = rows.map((r) => r.trim().split(/\s+/));
  const port = (address: string) => Number.parseInt(address.split(':')[1]!, 16);
  const listening = cols.filter((c) => c[3] === '0A' && inodes.has(c[9]!)).map((c) => port(c[1]!));
  // An established connection whose local end is the listener's port: accepted by it.
  return listening.filter((p) => cols.some((c) => c[3] === '01' && port(c[1]!) === p));
}

/**
 * Starts migrating a counting guest slowly (data on its disk, `bandwidth` per second), so there is
 * time to break things midway; resolves once the destination's QEMU runs.
 */
async function slowMigration(name: string, bandwidth = '1M') {
  const c = await counting(name);
  c.type('dd if=/dev/urandom of=/dev/vda bs=1M count=6 seek=1 2>/dev/null; sync /dev/vda; echo filled\n');
  await c.waitFor('\nfilled', 60_000);
  const { uuid, pid } = await json<Vm>(src, ['status', name]);
  const running = migrate(name, ['--bandwidth', bandwidth]);
  const pidfile = path.join(dst.run, 'vms', name, 'qemu.pid');
  const dstPid = await waitFor('the destination QEMU', () => readPidfile(pidfile), 60_000);
  expect(await isQemuFor(dstPid, uuid)).toBe(true);
  await new Promise((r) => setTimeout(r, 2000));
  return { c, uuid, pid: pid!, running, dstPid };
}

/** The migration failed, and the source runs on: the same QEMU, its counter still counting. */
async function failedButRunning(name: string, pid: number, running: Promise<Result>): Promise<void> {
  const r = await running;
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(new RegExp(`migration of "${name}" failed: .*; it keeps running here`));
  expect(await json<Vm>(src, ['status', name])).toMatchObject({ state: 'running', pid });
  const count = ticks(await serialLog(src, name)).at(-1)!;
  await waitFor(
    'the counter to go on at the source',
    async () => (ticks(await serialLog(src, name)).at(-1) ?? 0) > count + 1 || undefined,
  );
}

describe('live migration between two daemons', () => {
  it('moves a running guest with its disk: the counter goes on without a reboot, the source is gone', async () => {
    const c = await counting('mover');
    const before = await json<Vm>(src, ['status', 'mover']);
    const r = await migrate('mover');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Migrated "mover": it is running at 127.0.0.1:\d+ now/);
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

    await countsOn(dst, 'mover', lastAtSource);

    // The disk's data arrived (read past the guest's page cache; the counter may print in between).
    const read = await inGuest(dst, 'mover', `echo 3 > /proc/sys/vm/drop_caches; ${MARKER_ON_DISK}`);
    expect(read).toContain('MIGRATED-DISK-MARKER');
  });

  // Two UEFI boots under TCG: more time than the default.
  it('moves a UEFI guest with a TPM: variables mirrored, TPM state in the stream, each under the new keys', async () => {
    // A Linux profile booting the test guest's kernel through UEFI, with a TPM and an encrypted disk.
    await ok(src, [
      'create',
      'secure',
      '--os',
      'debian11',
      ...bootArgs('efi'),
      '--memory',
      '256M',
      '--firmware',
      'uefi',
      '--tpm',
      '--disk',
      '32M',
      '--graphics',
      'none',
    ]);
    await ok(src, ['start', 'secure']);
    await waitForReady(src, 'secure', 150_000);
    const pcr0 = 'cat /sys/class/tpm/tpm0/pcr-sha256/0';
    const measured = await inGuest(src, 'secure', pcr0);
    // The firmware measured itself into PCR 0.
    expect(measured).toMatch(/^[0-9A-F]{64}$/);
    expect(measured).not.toMatch(/^0+$/);
    const { uuid } = await json<Vm>(src, ['status', 'secure']);

    const r = await migrate('secure');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(await json<Vm[]>(src, ['list'])).toEqual([]);
    expect(await readFile(path.join(src.home, 'keystore.json'), 'utf8')).not.toContain(uuid);

    // The same TPM, PCRs and all, runs on at the destination.
    expect(await json<Vm>(dst, ['status', 'secure'])).toMatchObject({ state: 'running', uuid });
    expect(await inGuest(dst, 'secure', pcr0)).toBe(measured);
    expect(await serialLog(dst, 'secure')).not.toContain(READY);
    // Both keys are the destination's own.
    const keys = Object.keys(
      (JSON.parse(await readFile(path.join(dst.home, 'keystore.json'), 'utf8')) as { keys: object }).keys,
    );
    expect(keys.sort()).toEqual([uuid, `${uuid}/tpm`]);

    // And what landed on its disk boots: the variable store and the TPM state, opened with those keys.
    await ok(dst, ['stop', 'secure', '--force']);
    await ok(dst, ['start', 'secure']);
    await waitForReady(dst, 'secure', 150_000);
    expect(await serialLog(dst, 'secure')).toContain('tpm: tpm0 version 2');
  }, 300_000);

  it('leaves the source running, and nothing at the destination, when the destination dies midway', async () => {
    const { c, uuid, pid, running, dstPid } = await slowMigration('stayer');
    // The disks' NBD server (the listener the source is connected to) serves no one without the key.
    const nbdPort = await waitFor('the NBD connection', async () => (await servingPorts(dstPid))[0]);
    const plain = await run('qemu-img', [
      'info',
      '--image-opts',
      `driver=nbd,host=127.0.0.1,port=${nbdPort},export=disk0`,
    ]);
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toMatch(/TLS negotiation required/);
    process.kill(dstPid, 'SIGKILL');
    await failedButRunning('stayer', pid, running);

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

  it('removes, at its next start, what a destination daemon killed midway left; the source runs on', async () => {
    const { c, uuid, pid, running, dstPid } = await slowMigration('orphan', '8M');
    // The daemon dies, its QEMU receives on: the source's last call (finish) finds no one.
    dstDaemon.kill('SIGKILL');
    await failedButRunning('orphan', pid, running);
    expect(alive(dstPid)).toBe(true);

    // The next daemon there finds the unfinished migration and removes all of it.
    expect(await json<Vm[]>(dst, ['list'])).toEqual([]);
    expect(alive(dstPid)).toBe(false);
    await expect(access(path.join(dst.home, 'vms/orphan'))).rejects.toThrow();
    await expect(access(path.join(dst.run, 'vms/orphan'))).rejects.toThrow();
    expect(await readFile(path.join(dst.home, 'keystore.json'), 'utf8')).not.toContain(uuid);
    c.child.kill();
  });

  it('refuses clearly what it cannot do, changing nothing, and keeps a paused guest paused', async () => {
    await createGuest(src, 'idle');
    await ok(src, ['start', 'idle']);
    const { pid } = await json<Vm>(src, ['status', 'idle']);
    const wrong = path.join(src.dir, 'wrong-token');
    await writeFile(wrong, 'not-the-token\n');
    const badToken = await cli(src, ['migrate', 'idle', '--to', `127.0.0.1:${port}`, '--token-file', wrong]);
    expect(badToken.code).toBe(1);
    expect(badToken.stderr).toMatch(
      /the destination 127\.0\.0\.1:\d+ refused "idle": missing or wrong bearer token/,
    );
    // Beyond loopback only with the certificate to pin: refused before anything is contacted.
    const elsewhere = await cli(src, [
      'migrate',
      'idle',
      '--to',
      '192.0.2.1:8470',
      '--token-file',
      path.join(dst.home, 'api-token'),
    ]);
    expect(elsewhere.stderr).toMatch(
      /a destination on another host \(192\.0\.2\.1:8470\) needs its certificate's fingerprint/,
    );
    await createGuest(dst, 'idle');
    const taken = await migrate('idle');
    expect(taken.stderr).toMatch(/refused "idle": a VM named "idle" already exists here/);
    await ok(dst, ['delete', 'idle']);
    expect(await json<Vm>(src, ['status', 'idle'])).toMatchObject({ state: 'running', pid });
    expect(await json<Vm[]>(dst, ['list'])).toEqual([]);

    // A paused guest arrives paused, and runs once resumed there. Progress goes out as events.
    await waitForReady(src, 'idle');
    await ok(src, ['pause', 'idle']);
    const { default: WebSocket } = await import('ws');
    const ws = new WebSocket(`ws+unix://${path.join(src.run, 'phyllomed.sock')}:/v1/events`);
    const events: { type: string; vm: string; op?: string; percent?: number }[] = [];
    ws.on('message', (d: Buffer) => events.push(JSON.parse(d.toString()) as (typeof events)[number]));
    await new Promise((r) => ws.once('open', r));
    const r = await migrate('idle');
    ws.close();
    expect(r.code).toBe(0);
    const progress = events.filter((e) => e.type === 'progress' && e.op === 'migrate').map((e) => e.percent!);
    expect(progress.at(-1)).toBe(100);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(r.stdout).toMatch(/Migrated "idle": it is paused at/);
    expect((await json<Vm>(dst, ['status', 'idle'])).state).toBe('paused');
    await ok(dst, ['resume', 'idle']);
    expect(await inGuest(dst, 'idle', 'echo $((6*7))')).toBe('42');
  });

  it('undoes a migration whose source daemon died midway, on both sides, and a second try finishes it', async () => {
    const { c, uuid, pid, running, dstPid } = await slowMigration('phoenix');
    // The source daemon dies; its QEMU runs on, the guest with it, mirroring into the void.
    process.kill((await daemonPid(src))!, 'SIGKILL');
    expect((await running).code).not.toBe(0);
    expect(alive(pid)).toBe(true);

    // A new daemon adopts the VM and undoes the first try on both sides: it runs on here, unpaused,
    // and the destination drops what it made.
    await ok(src, ['list']);
    await waitFor(
      'the source to undo the first try',
      async () =>
        (await json<Vm>(src, ['status', 'phoenix'])).state === 'running' &&
        (await json<Vm[]>(dst, ['list'])).length === 0,
      60_000,
    );
    await waitFor('the destination QEMU to go', () => !alive(dstPid) || undefined, 10_000);
    await expect(access(path.join(src.run, 'vms/phoenix/migration-out.json'))).rejects.toThrow();
    const undone = ticks(await serialLog(src, 'phoenix')).at(-1)!;
    await waitFor(
      'the counter to go on at the source',
      async () => (ticks(await serialLog(src, 'phoenix')).at(-1) ?? 0) > undone + 1 || undefined,
    );
    const before = ticks(await serialLog(src, 'phoenix')).at(-1)!;

    // Migrating again works as a first try.
    const r = await migrate('phoenix');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(await json<Vm[]>(src, ['list'])).toEqual([]);
    expect(alive(pid)).toBe(false);
    expect(await json<Vm>(dst, ['status', 'phoenix'])).toMatchObject({ state: 'running', uuid });
    await waitFor(
      'the counter at the destination',
      async () => (ticks(await serialLog(dst, 'phoenix')).at(-1) ?? 0) > before || undefined,
    );
    expect(await serialLog(dst, 'phoenix')).not.toContain(READY);
    // Only the second try's QEMU runs there.
    expect(
      await findProcesses((argv) => argv.includes(uuid) && argv.some((a) => a.includes(dst.run))),
    ).toHaveLength(1);
    c.child.kill();
  });

  it('lets no stranger into the migration stream, and an abort removes all that an incoming made', async () => {
    // What a source daemon sends, from a VM defined at the source (only its spec is needed).
    await createGuest(src, 'lure');
    const { spec, uuid } = await json<Vm>(src, ['status', 'lure']);
    const api = (method: string, url: string, body?: unknown) =>
      readFile(path.join(dst.home, 'api-token'), 'utf8').then((token) =>
        fetch(`http://127.0.0.1:${port}${url}`, {
          method,
          headers: {
            authorization: `Bearer ${token.trim()}`,
            ...(body ? { 'content-type': 'application/json' } : {}),
          },
          ...(body ? { body: JSON.stringify(body) } : {}),
        }),
      );
    const res = await api('POST', '/v1/migrations/incoming', { spec, sizes: {}, psk: 'ab'.repeat(32) });
    expect(res.status).toBe(201);
    const { migration } = (await res.json()) as { migration: { host: string; port: number } };
    expect(migration.host).toBe('127.0.0.1');

    // Someone else on this machine connects first and speaks plain QEMU migration: QEMU hangs up
    // (the TLS handshake fails) and goes on waiting for the real source.
    const stranger = net.connect(migration.port, migration.host);
    stranger.on('error', () => undefined);
    stranger.write(Buffer.from('QEVM\0\0\0\x03'));
    await new Promise((r) => stranger.once('close', r));
    const log = path.join(dst.home, 'vms/lure/qemu.log');
    await waitFor(
      'QEMU to log the refusal',
      async () => (await readFile(log, 'utf8')).includes('TLS handshake failed') || undefined,
    );
    expect(await json<Vm>(dst, ['status', 'lure'])).toMatchObject({
      state: 'starting',
      reason: 'incoming migration',
    });
    const qemuPid = (await readPidfile(path.join(dst.run, 'vms/lure/qemu.pid')))!;
    expect(await isQemuFor(qemuPid, uuid)).toBe(true);

    expect((await api('DELETE', '/v1/migrations/incoming/lure')).status).toBe(204);
    expect(await json<Vm[]>(dst, ['list'])).toEqual([]);
    expect(alive(qemuPid)).toBe(false);
    await expect(access(path.join(dst.home, 'vms/lure'))).rejects.toThrow();
    await expect(access(path.join(dst.run, 'vms/lure'))).rejects.toThrow();
  });

  it('removes, after a minute, a VM whose stream arrived when the source never confirms it', async () => {
    // A source daemon that dies right after the stream lands: the test plays its part on the source
    // QEMU's QMP, sends the stream, and never says "run it".
    await createGuest(src, 'stray');
    await ok(src, ['start', 'stray']);
    await waitForReady(src, 'stray');
    const { spec, uuid } = await json<Vm>(src, ['status', 'stray']);
    process.kill((await daemonPid(src))!, 'SIGKILL');
    const token = (await readFile(path.join(dst.home, 'api-token'), 'utf8')).trim();
    const psk = 'cd'.repeat(32);
    const res = await fetch(`http://127.0.0.1:${port}/v1/migrations/incoming`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ spec, sizes: {}, psk }),
    });
    expect(res.status).toBe(201);
    const { migration } = (await res.json()) as { migration: { host: string; port: number } };
    const dstPid = (await readPidfile(path.join(dst.run, 'vms/stray/qemu.pid')))!;

    const tls = path.join(src.home, 'stray-tls');
    await mkdir(tls, { mode: 0o700 });
    await writeFile(path.join(tls, 'keys.psk'), pskFile(psk), { mode: 0o600 });
    const qmp = await QmpClient.connect(path.join(src.run, 'vms/stray/qmp.sock'));
    try {
      await qmp.execute('object-add', {
        'qom-type': 'tls-creds-psk',
        id: 'tls',
        endpoint: 'client',
        dir: tls,
        username: PSK_USER,
      });
      await qmp.execute('migrate-set-parameters', { 'tls-creds': 'tls' });
      await qmp.execute('migrate', { uri: `tcp:${migration.host}:${migration.port}` });
      await waitFor(
        'the stream to arrive',
        async () =>
          (await qmp.execute<{ status: string }>('query-migrate')).status === 'completed' || undefined,
        60_000,
      );
    } finally {
      qmp.close();
    }
    const arrived = Date.now();

    // The destination waits for the source's word, the VM held where it landed...
    await new Promise((r) => setTimeout(r, 10_000));
    expect(await json<Vm>(dst, ['status', 'stray'])).toMatchObject({
      state: 'starting',
      reason: 'incoming migration',
      uuid,
    });
    expect(alive(dstPid)).toBe(true);
    // ...then gives up on it and removes everything it made.
    await waitFor(
      'the destination to give up',
      async () => (await json<Vm[]>(dst, ['list'])).length === 0 || undefined,
      90_000,
    );
    expect(Date.now() - arrived).toBeGreaterThanOrEqual(55_000);
    await waitFor('the destination QEMU to go', () => !alive(dstPid) || undefined, 10_000);
    await expect(access(path.join(dst.home, 'vms/stray'))).rejects.toThrow();
    await expect(access(path.join(dst.run, 'vms/stray'))).rejects.toThrow();
  });
});

// "Another host": a daemon in a network namespace of the test's own, reached over a veth pair.
describe.skipIf(!isRoot)('live migration to another host', () => {
  let far: TestHome;
  let lan: Awaited<ReturnType<typeof Netns.linked>>;
  let to: string;
  beforeEach(async () => {
    far = await makeHome();
    lan = await Netns.linked();
    to = `${lan.address}:${API_PORT}`;
    await lan.startDaemon(far, {}, lan.address);
  });
  afterEach(async () => {
    // Everything in the namespace (daemon, QEMU) is the test's: destroy kills it by pid.
    await lan.destroy();
    await destroyHome(far);
  });

  it('serves HTTPS only, with the fingerprint it prints, wants its own address as Host, and serves the streams there under TLS', async () => {
    const printed = await ok(far, ['host', 'tls-fingerprint']);
    const fingerprint = printed.trim();
    expect(fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(await readFile(path.join(far.dir, 'daemon.log'), 'utf8')).toContain(
      `certificate SHA-256 fingerprint ${fingerprint}`,
    );
    // Plain HTTP gets no answer at all: the bearer token would cross the network in clear.
    await expect(fetch(`http://${to}/v1/vms`, { signal: AbortSignal.timeout(5000) })).rejects.toThrow();
    // Over TLS, pinned: the token is enough, but only with the listener's own address as Host.
    const { callDaemon } = await import('../../src/cli/client.js');
    const token = (await readFile(path.join(far.home, 'api-token'), 'utf8')).trim();
    const peer = { host: lan.address, port: API_PORT, token, fingerprint };
    expect(await callDaemon(peer, 'GET', '/v1/vms')).toEqual([]);
    const https = await import('node:https');
    const status = await new Promise<number | undefined>((resolve, reject) =>
      https
        .get(
          {
            host: lan.address,
            port: API_PORT,
            path: '/v1/vms',
            rejectUnauthorized: false,
            headers: { host: `127.0.0.1:${API_PORT}`, authorization: `Bearer ${token}` },
          },
          (res) => resolve(res.resume().statusCode),
        )
        .on('error', reject),
    );
    expect(status).toBe(403);

    // The streams listen on the address the call came in on, and still speak only TLS (PSK).
    await createGuest(src, 'lure', ['--nic', 'none']);
    const { spec } = await json<Vm>(src, ['status', 'lure']);
    const incoming = { spec, sizes: {}, psk: 'ab'.repeat(32) };
    const { migration } = await callDaemon<{ migration: { host: string; port: number } }>(
      peer,
      'POST',
      '/v1/migrations/incoming',
      incoming,
    );
    expect(migration.host).toBe(lan.address);
    const stranger = net.connect(migration.port, migration.host);
    stranger.on('error', () => undefined);
    stranger.write(Buffer.from('QEVM\0\0\0\x03'));
    await new Promise((r) => stranger.once('close', r));
    await waitFor(
      'QEMU to refuse the plain stream',
      async () =>
        (await readFile(path.join(far.home, 'vms/lure/qemu.log'), 'utf8')).includes('TLS handshake failed') ||
        undefined,
    );
    await callDaemon(peer, 'DELETE', '/v1/migrations/incoming/lure');
    expect(await json<Vm[]>(far, ['list'])).toEqual([]);
  });

  it('moves a running guest there with the right fingerprint only: the counter goes on', async () => {
    const fingerprint = (await ok(far, ['host', 'tls-fingerprint'])).trim();
    const c = await counting('traveller', ['--nic', 'none']);
    const before = await json<Vm>(src, ['status', 'traveller']);

    // A wrong fingerprint: refused before the token is sent, both named, nothing changed.
    const wrong = '00:'.repeat(31) + '00';
    const refused = await migrateTo(to, far, 'traveller', ['--fingerprint', wrong]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`presented a certificate with SHA-256 fingerprint ${fingerprint}`);
    expect(refused.stderr).toContain(`not the expected ${wrong}`);
    expect(await json<Vm>(src, ['status', 'traveller'])).toMatchObject({ state: 'running', pid: before.pid });
    expect(await json<Vm[]>(far, ['list'])).toEqual([]);
    await expect(access(path.join(far.home, 'vms/traveller'))).rejects.toThrow();

    const r = await migrateTo(to, far, 'traveller', ['--fingerprint', fingerprint.replace(/:/g, '')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`Migrated "traveller": it is running at ${to} now`));
    await c.exited;
    const lastAtSource = ticks(c.output).at(-1)!;
    expect(await json<Vm[]>(src, ['list'])).toEqual([]);
    expect(alive(before.pid!)).toBe(false);

    // It runs in the namespace now, the same guest, counting on from where it was.
    const after = await json<Vm>(far, ['status', 'traveller']);
    expect(after).toMatchObject({ state: 'running', uuid: before.uuid });
    expect(await lan.pids()).toContain(after.pid);
    await countsOn(far, 'traveller', lastAtSource);
    expect(await inGuest(far, 'traveller', `echo 3 > /proc/sys/vm/drop_caches; ${MARKER_ON_DISK}`)).toContain(
      'MIGRATED-DISK-MARKER',
    );
  });
});
