import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import { ApiError, callDaemon, type DaemonAddress } from '../cli/client.js';
import type { QmpClient, QmpEvent } from '../qemu/qmp.js';
import { parseSpec } from '../spec/schema.js';
import { createQcow2, imageInfo } from '../storage/qemu-img.js';
import { conflict, UserError } from './errors.js';
import {
  INCOMING_MARKER,
  incomingSpec,
  migrationPercent,
  migrationProblems,
  mirroredImages,
  outgoingRecovery,
  pskFile,
  type DestinationAnswer,
  PSK_USER,
  type Peer,
} from './migrate-plan.js';
import { runtimeFiles, stateFiles, vmDir } from './paths.js';
import { readSnapshots } from './snapshots.js';
import type { VmInfo, VmManager } from './vms.js';

/** What the source sends the destination: the VM, its disks' sizes and the streams' TLS key. */
export interface IncomingRequest {
  spec: unknown;
  /** Virtual size in bytes of each mirrored disk, by node name. */
  sizes: Record<string, number>;
  /** 32 random bytes, hex: the PSK both QEMUs' TLS uses for the NBD and migration streams. */
  psk: string;
}

/** Where the destination's QEMU listens: disks (NBD exports named by node name) and the migration stream. */
export interface IncomingReply {
  nbd: Peer;
  migration: Peer;
}

/** QMP ids of what a migration adds to a QEMU; `mig-` keeps them clear of the VM's own. */
const TLS_ID = 'mig-tls';
const nbdNode = (disk: string) => `mig-${disk}`;

const PEER_TIMEOUT_MS = 120_000;
/** How long the last of the stream may take to land once sent (the destination's RAM, the mirrors' last writes). */
const ARRIVAL_TIMEOUT_MS = 30_000;
/** How long a destination whose stream has arrived waits for the source's word before it gives up. */
const CONFIRM_TIMEOUT_MS = 60_000;
const POLL_MS = 200;
/** How long a daemon recovering from a crash waits for the destination's answer. */
const RECOVERY_TIMEOUT_MS = 10_000;

/** `host:port` as QEMU's URIs take it: an IPv6 host in brackets. */
const uriOf = (p: Peer) => `tcp:${p.host.includes(':') ? `[${p.host}]` : p.host}:${p.port}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ignore = () => undefined;

/** A promise with its settlers (Promise.withResolvers, which this TypeScript target lacks). */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (why: Error) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

interface MigrateStatus {
  status?: string;
  'error-desc'?: string;
  ram?: { transferred: number; remaining: number };
}

interface BlockJob {
  device: string;
  len: number;
  offset: number;
  ready: boolean;
}

/** A TCP port free on `host` now, for a QEMU listener (the moment between is the usual small race). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A TLS (PSK) credentials object in QEMU. The key file lives in a 0700 folder of the VM's runtime
 * folder: a client reads it at once, a server at each handshake; the function returned removes it.
 */
async function addTls(qmp: QmpClient, dir: string, psk: string, endpoint: 'server' | 'client') {
  // One a daemon that died midway left is stale.
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { mode: 0o700 });
  try {
    await writeFile(path.join(dir, 'keys.psk'), pskFile(psk), { mode: 0o600, flag: 'wx' });
    await qmp.execute('object-add', {
      'qom-type': 'tls-creds-psk',
      id: TLS_ID,
      endpoint,
      dir,
      ...(endpoint === 'client' ? { username: PSK_USER } : {}),
    });
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return () => rm(dir, { recursive: true, force: true });
}

/** Polls query-migrate until the stream is over; `onRam` sees its progress. Failure says QEMU's why. */
async function migrationEnd(
  qmp: QmpClient,
  timeoutMs: number,
  onRam: (done: number, total: number) => void = ignore,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = await qmp.execute<MigrateStatus>('query-migrate');
    if (m.ram) onRam(m.ram.transferred, m.ram.transferred + m.ram.remaining);
    if (m.status === 'completed') return;
    if (m.status === 'failed' || m.status === 'cancelled') {
      throw new Error(`the migration stream ${m.status}${m['error-desc'] ? `: ${m['error-desc']}` : ''}`);
    }
    if (Date.now() > deadline) throw new Error(`the migration stream did not end within ${timeoutMs} ms`);
    await sleep(POLL_MS);
  }
}

/** Our block jobs as QEMU lists them. */
async function jobsOf(qmp: QmpClient, ids: string[]): Promise<BlockJob[]> {
  return (await qmp.execute<BlockJob[]>('query-block-jobs')).filter((j) => ids.includes(j.device));
}

type Destination = Peer & { token: string; fingerprint?: string };

/** What a source keeps (0600, in the VM's runtime folder) while a migration out is under way. */
interface Outgoing {
  to: Destination;
  /** The VM was paused before the migration: undoing it keeps it paused. */
  paused: boolean;
  /** The destination has been told to run the VM: from here on only it can say where the VM lives. */
  handingOver: boolean;
}

const incomingUrl = (name: string) => `/v1/migrations/incoming/${encodeURIComponent(name)}`;
const vmThere = (name: string, to: Destination, timeoutMs: number) =>
  callDaemon<VmInfo>(to, 'GET', `/v1/vms/${encodeURIComponent(name)}`, undefined, timeoutMs);
const nodesOf = (images: { node: string }[]) => images.map((img) => nbdNode(img.node));

interface Incoming {
  uuid: string;
  decide: (run: boolean) => void;
  abort: (why: Error) => void;
  done: Promise<VmInfo>;
}

/**
 * Live migration between two daemons, without shared storage (as libvirt does it): the destination
 * makes the VM with empty disks and a QEMU waiting for the stream, and serves its disks over NBD; the
 * source mirrors each writable disk there (blockdev-mirror) and, once all are in step, sends the RAM
 * and device state (migrate). Both streams are TLS with a fresh pre-shared key that travels only in
 * the authenticated API call. The source is removed only after the destination runs; any failure
 * before that leaves the source running and the destination without a trace.
 */
export class Migrations {
  private readonly incoming = new Map<string, Incoming>();

  constructor(
    private readonly manager: VmManager,
    private readonly log: Logger,
  ) {}

  /** Destination: make the VM and start receiving; answers once QEMU listens on `address`. */
  async receive(req: IncomingRequest, address: string): Promise<IncomingReply> {
    const host = address.replace(/^::ffff:/, '');
    const source = parseSpec(req.spec);
    const { name } = source;
    const earlier = this.incoming.get(name);
    if (earlier) {
      // The same VM again: its source gave up on the earlier attempt (a daemon that died, say).
      if (earlier.uuid !== source.uuid) throw conflict(`another VM named "${name}" is arriving here`);
      earlier.abort(new UserError('superseded by a new migration of the same VM'));
      await earlier.done.catch(ignore);
    }
    if (!/^[0-9a-f]{64}$/.test(req.psk)) throw new UserError('psk: 32 bytes in hex expected');
    const problems = migrationProblems(source, vmDir(this.manager.layout, name), 0);
    if (problems.length) throw new UserError(problems.join('; '));
    const spec = incomingSpec(source, vmDir(this.manager.layout, name));
    const images = mirroredImages(spec, stateFiles(this.manager.layout, name).nvram).map((img) => {
      const bytes = req.sizes[img.node];
      if (!Number.isSafeInteger(bytes) || bytes! <= 0) throw new UserError(`sizes.${img.node}: missing`);
      return { ...img, bytes: bytes! };
    });

    const ready = deferred<IncomingReply>();
    const decision = deferred<boolean>();
    // Once settled, a late abort (or QEMU exiting) has nothing left to change.
    decision.promise.catch(ignore);
    const prepare = async (staging: string, key?: string) => {
      await writeFile(path.join(staging, INCOMING_MARKER), '');
      // Each lands in the VM's folder (incomingSpec), so under the same name in its staging folder.
      for (const img of images) {
        const file = path.join(staging, path.basename(img.path));
        await createQcow2(img.encrypted ? { file, key: key! } : { file }, img.bytes);
      }
    };
    const session = async (qmp: QmpClient) => {
      const exited = () => decision.reject(new Error('QEMU exited during the incoming migration'));
      qmp.once('close', exited);
      // A stream that failed will not be finished; one that arrived is finished at once, unless the
      // source died on the way: then no one would, and the VM is removed after a while.
      let unconfirmed: NodeJS.Timeout | undefined;
      const onStream = (e: QmpEvent) => {
        if (e.event !== 'MIGRATION') return;
        if (e.data?.status === 'failed') decision.reject(new Error('the migration stream failed'));
        if (e.data?.status === 'completed') {
          unconfirmed = setTimeout(
            () => decision.reject(new Error('the source never confirmed the migration')),
            CONFIRM_TIMEOUT_MS,
          );
        }
      };
      qmp.on('event', onStream);
      const removeKey = await addTls(
        qmp,
        path.join(runtimeFiles(this.manager.layout, name).dir, 'migration-tls'),
        req.psk,
        'server',
      );
      try {
        const nbd = { host, port: await freePort(host) };
        await qmp.execute('nbd-server-start', {
          addr: { type: 'inet', data: { host, port: String(nbd.port) } },
          'tls-creds': TLS_ID,
        });
        for (const img of images) {
          await qmp.execute('block-export-add', {
            type: 'nbd',
            id: nbdNode(img.node),
            'node-name': img.node,
            name: img.node,
            writable: true,
          });
        }
        await qmp.execute('migrate-set-capabilities', {
          capabilities: [{ capability: 'events', state: true }],
        });
        await qmp.execute('migrate-set-parameters', { 'tls-creds': TLS_ID });
        const migration = { host, port: await freePort(host) };
        await qmp.execute('migrate-incoming', { uri: uriOf(migration) });
        ready.resolve({ nbd, migration });
        const run = await decision.promise;
        await migrationEnd(qmp, ARRIVAL_TIMEOUT_MS);
        // The disks are the VM's own again before it runs.
        await qmp.execute('nbd-server-stop');
        await rm(path.join(vmDir(this.manager.layout, name), INCOMING_MARKER));
        return { run };
      } finally {
        clearTimeout(unconfirmed);
        qmp.off('event', onStream);
        qmp.off('close', exited);
        await removeKey();
      }
    };

    const done = this.manager.migrateIn(spec, prepare, session);
    this.incoming.set(name, { uuid: spec.uuid, decide: decision.resolve, abort: decision.reject, done });
    done.then(
      () => this.log.info({ vm: name }, 'migration in: the VM runs here'),
      (e: Error) => {
        ready.reject(e);
        this.log.warn({ vm: name, err: e.message }, 'migration in failed; removed what it made');
      },
    );
    void done.catch(ignore).finally(() => this.incoming.delete(name));
    return ready.promise;
  }

  private arriving(name: string): Incoming {
    const m = this.incoming.get(name);
    if (!m) throw new UserError(`no migration of "${name}" is arriving here`, 404, 'not-found');
    return m;
  }

  /** Destination: the source has sent everything; run the VM (or keep it paused) here. */
  finish(name: string, run: boolean): Promise<VmInfo> {
    const m = this.arriving(name);
    m.decide(run);
    return m.done;
  }

  /** Destination: the source gave up; remove everything the migration made. */
  async abort(name: string): Promise<void> {
    const m = this.arriving(name);
    m.abort(new UserError('the source aborted the migration'));
    await m.done.catch(ignore);
  }

  /**
   * Source: move `name` to the daemon at `to`. `bandwidth` (bytes/s) caps the disk mirrors and the
   * RAM stream each. Progress goes out as events (op `migrate`).
   */
  send(name: string, to: Destination, bandwidth?: number): Promise<VmInfo> {
    const progress = (percent: number) =>
      this.manager.emit('event', {
        type: 'progress',
        vm: name,
        op: 'migrate',
        percent,
        at: new Date().toISOString(),
      });
    const record = runtimeFiles(this.manager.layout, name).migrationOut;
    const keep = (o: Outgoing) => writeFile(record, JSON.stringify(o), { mode: 0o600 });
    return this.manager.migrateOut(name, 'migrate', async ({ spec, qmp, paused }) => {
      const dir = vmDir(this.manager.layout, name);
      const snapshots = (await readSnapshots(dir)).snapshots.length;
      const problems = migrationProblems(spec, dir, snapshots);
      if (problems.length) throw new UserError(`cannot migrate "${name}": ${problems.join('; ')}`);
      const images = mirroredImages(spec, stateFiles(this.manager.layout, name).nvram);
      const sizes: Record<string, number> = {};
      for (const img of images) {
        const info = await imageInfo({ file: img.path, format: img.format }).catch((e: Error) => {
          throw new UserError(`cannot read the size of ${img.path}: ${e.message}`);
        });
        sizes[img.node] = info.virtualSize;
      }
      const psk = randomBytes(32).toString('hex');
      const peer: DaemonAddress = to;
      const url = incomingUrl(name);
      const dst = await callDaemon<IncomingReply>(
        peer,
        'POST',
        '/v1/migrations/incoming',
        { spec, sizes, psk } satisfies IncomingRequest,
        PEER_TIMEOUT_MS,
      ).catch((e: Error) => {
        if (!(e instanceof ApiError)) {
          throw new UserError(`cannot reach the destination ${to.host}:${to.port}: ${e.message}`);
        }
        throw new UserError(
          `the destination ${to.host}:${to.port} refused "${name}": ${e.message}`,
          e.status === 409 ? 409 : 400,
        );
      });
      // The answer names where QEMU connects: addresses and ports, nothing else.
      for (const at of [dst.nbd, dst.migration]) {
        if (!net.isIP(at?.host ?? '') || !Number.isInteger(at.port) || at.port < 1 || at.port > 65535) {
          await callDaemon(peer, 'DELETE', url, undefined, PEER_TIMEOUT_MS).catch(ignore);
          throw new UserError(`the destination ${to.host}:${to.port} answered an unusable address`);
        }
      }
      await keep({ to, paused, handingOver: false });
      const ids = images.map((img) => img.node);
      const nodes: string[] = [];
      // A failed mirror leaves the job list at once: its error comes only in its event. Until the
      // mirrors are cancelled on purpose, any end is a failure: that disk is no longer in step.
      let mirrorError: string | undefined;
      let cancelled = false;
      const onEvent = (e: QmpEvent) => {
        if (e.event === 'BLOCK_JOB_COMPLETED' && nodes.includes(String(e.data?.device))) {
          const error = typeof e.data?.error === 'string' ? e.data.error : undefined;
          if (error || !cancelled) mirrorError ??= error ?? 'it ended early';
        }
      };
      qmp.on('event', onEvent);
      let there: VmInfo;
      try {
        // What an earlier attempt left in this QEMU (its daemon died midway) goes first.
        await this.undo(qmp, ids.map(nbdNode), paused);
        const removeKey = await addTls(
          qmp,
          path.join(runtimeFiles(this.manager.layout, name).dir, 'migration-tls'),
          psk,
          'client',
        );
        // A client reads its key when made.
        await removeKey();
        for (const id of ids) {
          await qmp.execute('blockdev-add', {
            driver: 'nbd',
            'node-name': nbdNode(id),
            server: { type: 'inet', host: dst.nbd.host, port: String(dst.nbd.port) },
            export: id,
            'tls-creds': TLS_ID,
          });
          nodes.push(nbdNode(id));
          await qmp.execute('blockdev-mirror', {
            'job-id': nbdNode(id),
            device: id,
            target: nbdNode(id),
            sync: 'full',
            ...(bandwidth ? { speed: bandwidth } : {}),
          });
        }
        // In step once every mirror is ready: from then on each guest write goes to both sides.
        for (;;) {
          const jobs = await jobsOf(qmp, nodes);
          if (jobs.length < nodes.length) {
            throw new Error(`a disk mirror stopped: ${mirrorError ?? 'no reason given'}`);
          }
          progress(
            migrationPercent(
              'disks',
              jobs.reduce((n, j) => n + j.offset, 0),
              jobs.reduce((n, j) => n + j.len, 0),
            ),
          );
          if (jobs.every((j) => j.ready)) break;
          await sleep(POLL_MS);
        }
        await qmp.execute('migrate-set-capabilities', {
          capabilities: [{ capability: 'events', state: true }],
        });
        await qmp.execute('migrate-set-parameters', {
          'tls-creds': TLS_ID,
          ...(bandwidth ? { 'max-bandwidth': bandwidth } : {}),
        });
        await qmp.execute('migrate', { uri: uriOf(dst.migration) });
        await migrationEnd(qmp, Number.MAX_SAFE_INTEGER, (done, total) =>
          progress(migrationPercent('ram', done, total)),
        );
        // The source is paused now: a ready mirror cancelled completes cleanly, the copies identical.
        cancelled = true;
        for (const node of nodes) await qmp.execute('block-job-cancel', { device: node });
        const deadline = Date.now() + ARRIVAL_TIMEOUT_MS;
        while ((await jobsOf(qmp, nodes)).length) {
          if (Date.now() > deadline) throw new Error('the disk mirrors did not complete');
          await sleep(POLL_MS / 4);
        }
        if (mirrorError) throw new Error(`a disk mirror failed: ${mirrorError}`);
        await keep({ to, paused, handingOver: true });
        there = await callDaemon<VmInfo>(
          peer,
          'POST',
          `${url}/finish`,
          { run: !paused },
          PEER_TIMEOUT_MS,
        ).catch(async (e: Error) => {
          // A lost answer is no proof of failure: if the VM runs there already, resuming it here
          // would make two. Ask.
          const vm = await vmThere(name, to, PEER_TIMEOUT_MS).catch(() => undefined);
          if (vm?.uuid === spec.uuid && (vm.state === 'running' || vm.state === 'paused')) return vm;
          throw e;
        });
      } catch (e) {
        await this.undo(qmp, ids.map(nbdNode), paused);
        await this.abortThere(name, to, PEER_TIMEOUT_MS);
        await rm(record, { force: true });
        throw new UserError(
          `migration of "${name}" failed: ${(e as Error).message}; it keeps running here`,
          e instanceof UserError ? e.status : 400,
        );
      } finally {
        qmp.off('event', onEvent);
      }
      progress(100);
      this.log.info({ vm: name, to: `${to.host}:${to.port}` }, 'migrated out; removing the source');
      return { left: true, value: there };
    });
  }

  /**
   * At start-up: a source daemon killed mid-migration leaves its VM paused or still mirroring, with
   * its record. The VM runs on here as before, unless it was handed over and the destination has it.
   */
  async recover(): Promise<void> {
    // Locked VM storage lists nothing (423): it is locked after a reboot, when no QEMU is left either.
    const vms = await this.manager.list().catch(() => []);
    for (const { name } of vms) {
      const record = runtimeFiles(this.manager.layout, name).migrationOut;
      const read = () =>
        readFile(record, 'utf8').then(
          (text) => JSON.parse(text) as Outgoing,
          () => undefined,
        );
      if (!(await read())) continue;
      await this.manager
        .migrateOut(name, 'migration recovery', async ({ spec, qmp }) => {
          // Read again under the lock: a migration the user started meanwhile may have settled it.
          const left = await read();
          if (!left) return { left: false, value: undefined };
          const there = left.handingOver ? await this.askThere(name, left.to) : 'unreachable';
          const action = outgoingRecovery(left.handingOver, spec.uuid, there);
          const nodes = nodesOf(mirroredImages(spec, stateFiles(this.manager.layout, name).nvram));
          if (action === 'resume') {
            await this.undo(qmp, nodes, left.paused);
            await this.abortThere(name, left.to, RECOVERY_TIMEOUT_MS);
          }
          await rm(record, { force: true });
          const where = `${left.to.host}:${left.to.port}`;
          if (action === 'hold') {
            this.log.warn(
              { vm: name, to: where },
              'a migration was being handed over when phyllomed stopped, and the destination cannot tell where the VM runs: it stays paused here; resume it only if it does not run there',
            );
          } else this.log.warn({ vm: name, to: where, action }, 'finished a migration a crash cut short');
          return { left: action === 'gone', value: undefined };
        })
        .catch(async (e: Error) => {
          // A VM that has left (a second migration) took its record with it.
          if (await read())
            this.log.error({ vm: name, err: e.message }, 'cannot recover a migration a crash cut short');
        });
    }
  }

  /** The destination's view of `name`, waiting a while for one still arriving there. */
  private async askThere(name: string, to: Destination): Promise<DestinationAnswer> {
    const deadline = Date.now() + ARRIVAL_TIMEOUT_MS;
    for (;;) {
      const there = await vmThere(name, to, RECOVERY_TIMEOUT_MS).then(
        (vm): DestinationAnswer => ({ uuid: vm.uuid, state: vm.state }),
        (e: Error): DestinationAnswer =>
          e instanceof ApiError && e.status === 404 ? 'absent' : 'unreachable',
      );
      if (typeof there === 'string' || there.state !== 'starting' || Date.now() > deadline) return there;
      await sleep(POLL_MS * 5);
    }
  }

  /** Tells the destination to drop what it made for `name` (it may be gone already). */
  private async abortThere(name: string, to: Destination, timeoutMs: number): Promise<void> {
    await callDaemon(to, 'DELETE', incomingUrl(name), undefined, timeoutMs).catch((why: Error) =>
      this.log.warn({ vm: name, err: why.message }, 'cannot tell the destination to abort'),
    );
  }

  /** Source: undo a migration in any phase, so the VM runs on here as before. */
  private async undo(qmp: QmpClient, nodes: string[], paused: boolean): Promise<void> {
    await qmp.execute('migrate-cancel').catch(ignore);
    // Cancelling takes a moment; QEMU resumes the vCPUs itself if it had paused them.
    const settled = Date.now() + 10_000;
    while (Date.now() < settled) {
      const m = await qmp.execute<MigrateStatus>('query-migrate').catch(() => ({}) as MigrateStatus);
      if (!['setup', 'active', 'cancelling', 'pre-switchover', 'device'].includes(m.status ?? '')) break;
      await sleep(POLL_MS);
    }
    for (const node of nodes)
      await qmp.execute('block-job-cancel', { device: node, force: true }).catch(ignore);
    const deadline = Date.now() + 10_000;
    while ((await jobsOf(qmp, nodes).catch(() => [])).length && Date.now() < deadline) await sleep(POLL_MS);
    for (const node of nodes) await qmp.execute('blockdev-del', { 'node-name': node }).catch(ignore);
    await qmp.execute('migrate-set-parameters', { 'tls-creds': '' }).catch(ignore);
    await qmp.execute('object-del', { id: TLS_ID }).catch(ignore);
    // A migration that got as far as its last pass has paused the vCPUs.
    const status = await qmp.execute<{ running: boolean }>('query-status').catch(() => undefined);
    if (!paused && status && !status.running) await qmp.execute('cont').catch(ignore);
  }
}
