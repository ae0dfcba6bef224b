import { renderNodes } from '../host/display.js';
import { offScreen, withWindow } from '../spec/window.js';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { constants } from 'node:fs';
import { access, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { AccelDecision } from '../host/accel.js';
import type { QemuInfo } from '../host/qemu-binary.js';
import { HostDeviceError, prepareHostDevices, releaseMdevs } from '../host/passthrough.js';
import {
  buildQemuArgs,
  qemuEnv,
  hasScreen,
  HOTPLUG_PORTS,
  hotplugPort,
  KEY_SECRET,
  needsKey,
} from '../qemu/cmdline.js';
import { Keystore, KeystoreError } from '../storage/keystore.js';
import { QmpClient, type QmpEvent } from '../qemu/qmp.js';
import { guestInterfaces, QGA_CHARDEV } from '../qemu/qga.js';
import {
  isQemuFor,
  killQemu,
  readPidfile,
  reapHelper,
  spawnDetached,
  terminate,
  waitGone,
} from '../qemu/process.js';
import {
  diskId,
  parseSpecInput,
  SCHEMA_VERSION,
  type DiskSpec,
  type ForwardSpec,
  type NetSpec,
  type NicSpec,
  type VmSpec,
  type VmSpecInput,
} from '../spec/schema.js';
import { formatSize, parseSize, SizeError } from '../spec/size.js';
import { copyImage, createQcow2, imageInfo, QemuImgError, resizeImage } from '../storage/qemu-img.js';
import { SeedIsoError, writeSeedIso } from '../storage/seed-iso.js';
import { checkCloudInit, CloudInitError, cloudInitFiles, type CloudInit } from '../guest/cloud-init.js';
import { findSwtpm, isSwtpmFor, startSwtpm, SwtpmError, swtpmLogTail } from '../qemu/swtpm.js';
import { conflict, notFound, UserError, userErrorsFrom } from './errors.js';
import { exists } from './files.js';
import { KeyedLock } from './lock.js';
import { checkSocketPath, runtimeFiles, stateFiles, vmDir, vmsDir, type Layout } from './paths.js';
import { BundleError, fileSink, streamSink } from '../bundle/archive.js';
import { exportBundle, importHost, readImport, type WriteBundle } from './bundles.js';
import { liveCopy, liveParts } from './live-copy.js';
import { resumeHeld } from './brief-pause.js';
import { unbundledPaths } from '../bundle/layout.js';
import { replan, type Change } from '../bundle/replan.js';
import { FirmwareError } from '../host/firmware.js';
import type { QemuFeatures } from '../host/qemu-features.js';
import { SerialHub } from './serial.js';
import type { StatsTarget } from './stats-sampler.js';
import { needsSealing, sealingWarning, sealState } from './seal.js';
import { checkClone, cloneSpec, encryptedBases, makeClone, unusedBases, type CloneRequest } from './clone.js';
import { vmNameProblem } from '../spec/names.js';
import {
  createSnapshot,
  deleteSnapshot,
  readSnapshots,
  recoverSnapshots,
  revertSnapshot,
  snapshotTree,
  type Snapshot,
  type SnapshotFile,
  type SnapshotTarget,
} from './snapshots.js';
import { StateStore } from './store.js';
import { checkForwardsFree, checkHostSide, closeFds, plugNics, replugTaps, unplugNics } from './nics.js';
import { noSuchNic, withNic, withoutNic, type NicRequest } from '../spec/nics.js';
import type { NetworkManager } from './networks.js';
import type { Lease } from '../net/dnsmasq.js';
import { findPasst } from '../net/passt.js';
import { chooseUserBackend, formatForward, slirpHostfwd, wireNics, type NicWiring } from '../net/wiring.js';
import { withDiskFormats } from '../storage/format.js';
import { INCOMING_MARKER } from './migrate-plan.js';
import { readStorage, type StorageFacts } from '../host/storage.js';
import { folderState, unlockFolder } from '../storage/fscrypt.js';
import { encryptVmFolder, recoverStorageSwap, STORAGE_KEY_ID } from './storage-crypt.js';

export type VmState = 'stopped' | 'starting' | 'running' | 'paused' | 'stopping';

export interface VmInfo {
  name: string;
  uuid: string;
  state: VmState;
  /** Why the VM is in this state, e.g. "crashed: QEMU exited while phyllomed was down". */
  reason?: string;
  pid?: number;
  accel?: string;
  warnings: string[];
  /** Each NIC: where it is plugged, how, and the guest's addresses where known. */
  nics: NicInfo[];
  spec: VmSpec;
}

export interface NicInfo {
  index: number;
  model: string;
  mac: string;
  /** `user (passt)`, `user (QEMU slirp)`, `bridge br0`, `network lan`. */
  network: string;
  /** Why this backend (user-mode NICs). */
  reason?: string;
  forwards: string[];
  /** The guest's addresses on this NIC, where known. */
  ips: string[];
  /** Where they come from: the guest agent, or Phyllome's DHCP leases (private networks). */
  ipsFrom?: 'guest agent' | 'DHCP leases';
}

export interface DriveMedia {
  drive: number;
  role: string;
  path?: string;
  /** Read from the running QEMU rather than the spec. */
  live?: boolean;
}

export interface VmEvent {
  type: 'state' | 'created' | 'deleted' | 'qemu-event' | 'progress';
  /** For progress: what runs (clone, …) and how far it is. */
  op?: string;
  percent?: number;
  vm: string;
  state?: VmState;
  reason?: string;
  event?: string;
  /** For qemu-event: when QEMU emitted it, by its own clock (what the UI latency bench measures from). */
  emittedAt?: string;
  at: string;
}

interface Vm {
  spec: VmSpec;
  state: VmState;
  reason?: string;
  pid?: number;
  accel?: string;
  qmp?: QmpClient;
  serial?: SerialHub;
  /** The guest or the user asked for a shutdown, so QEMU exiting is expected. */
  shutdownExpected?: boolean;
  exited?: Promise<void>;
  startedAt?: string;
  /** How the NICs were wired at start (while running). */
  nets?: NicWiring[];
}

export interface HostFacts {
  qemu: QemuInfo;
  accel: Promise<AccelDecision>;
  /** What this QEMU can do, asked once, when first needed. */
  features: () => Promise<QemuFeatures>;
  /** The host's own screen that VM windows open on (graphics.window), from the daemon's environment. */
  localDisplay?: string;
}

const LOCK_WAIT_MS = 120_000;
const QMP_START_TIMEOUT_MS = 15_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Owns every VM of one PHYLLOME_HOME: lifecycle over QMP, state from QMP events, state kept as files. */
export class VmManager extends EventEmitter<{ event: [VmEvent] }> {
  private readonly vms = new Map<string, Vm>();
  private readonly lock = new KeyedLock();
  readonly store: StateStore;
  /** Private networks, for NICs that join one; set by the daemon once both exist. */
  networks?: NetworkManager;

  constructor(
    readonly layout: Layout,
    readonly host: HostFacts,
    private readonly log: Logger,
    readonly keystore: Keystore,
  ) {
    super();
    this.store = new StateStore(layout);
  }

  /**
   * The VM folder is fscrypt-encrypted and its key is not in the kernel yet: nothing can be read until
   * the keystore (which keeps that key) is unlocked.
   */
  private storageLocked = false;

  /** Loads every VM and re-adopts QEMU processes that outlived a previous daemon. */
  async load(): Promise<void> {
    const vms = vmsDir(this.layout);
    const swap = await recoverStorageSwap(vms);
    if (swap.length) this.log.warn({ steps: swap }, 'finished a VM storage encryption a crash cut short');
    if (!(await this.openStorage())) {
      this.storageLocked = true;
      this.log.warn(
        'the VM storage is encrypted and the keystore is locked: no VM is loaded until "phyllome unlock"',
      );
      return;
    }
    this.storageLocked = false;
    const leftovers = await this.store.init();
    if (leftovers.length) this.log.warn({ leftovers }, 'removed what a crash left half-made');
    await mkdir(this.layout.run, { recursive: true, mode: 0o750 });
    let unreadable = 0;
    for (const name of await this.store.listNames()) {
      try {
        const spec = await this.store.readSpec(name);
        const vm: Vm = { spec, state: 'stopped' };
        this.vms.set(name, vm);
        await this.adopt(vm);
        // A migration in that this daemon did not live to finish: what it made goes.
        if (await exists(path.join(vmDir(this.layout, name), INCOMING_MARKER))) {
          await this.remove(vm, true);
          this.log.warn({ vm: name }, 'removed a VM whose incoming migration never finished');
          continue;
        }
        // The journal first: only a crash mid-snapshot needs the images (and maybe the key) opened.
        const journal = await readSnapshots(vmDir(this.layout, name));
        if (journal.snapshots.some((x) => x.state !== 'ready')) {
          const broken = await recoverSnapshots(await this.snapshotTarget(vm, false)).catch((e: Error) => {
            this.log.error({ vm: name, err: e.message }, 'cannot clean up an unfinished snapshot');
            return [];
          });
          if (broken.length) {
            this.log.warn({ vm: name, snapshots: broken }, 'removed snapshots a crash left unfinished');
          }
        }
      } catch (e) {
        unreadable++;
        this.log.error({ vm: name, err: (e as Error).message }, 'cannot load VM, skipping it');
      }
    }
    // Keys of VMs that never came to be (a create killed midway); only when every VM was read.
    if (!unreadable) {
      const gone = await this.keystore.prune(
        new Set([
          STORAGE_KEY_ID,
          ...[...this.vms.values()].flatMap((v) => [v.spec.uuid, tpmKeyId(v.spec.uuid)]),
        ]),
      );
      if (gone.length) this.log.warn({ keys: gone.length }, 'dropped keys of VMs a crash left unmade');
      await this.collectBases();
    }
  }

  /** Unlocks an fscrypt-encrypted VM folder with its key from the keystore; false when that is locked. */
  private async openStorage(): Promise<boolean> {
    const vms = vmsDir(this.layout);
    if (!(await readStorage(vms)).fscrypt || (await folderState(vms)).unlocked) return true;
    if (!this.keystore.unlocked) return false;
    const key = await this.keystore.keyFor(STORAGE_KEY_ID);
    await unlockFolder(vms, Buffer.from(key, 'base64'));
    this.log.info('unlocked the encrypted VM storage');
    return true;
  }

  /** After a keystore unlock: a locked VM folder opens, and its VMs load. */
  async keystoreUnlocked(): Promise<void> {
    if (this.storageLocked) await this.load();
  }

  /** Refuses to act on VMs while their folder cannot be read. */
  private requireStorage(): void {
    if (this.storageLocked) {
      throw new UserError(
        'the VM storage is encrypted and locked: run "phyllome unlock" (or start phyllomed with PHYLLOME_PASSPHRASE_FILE)',
        423,
        'locked',
      );
    }
  }

  async storageStatus(): Promise<StorageFacts & { locked: boolean }> {
    return { ...(await readStorage(vmsDir(this.layout))), locked: this.storageLocked };
  }

  /**
   * Puts the VM folder under fscrypt (names, specs, disks, variables, TPM state, logs in it), every VM
   * moved into it. Every VM must be stopped; the key is made and kept in the keystore first.
   */
  encryptStorage(): Promise<{ path: string; moved: string[] }> {
    this.requireStorage();
    return this.withLock(STORAGE_LOCK, 'storage encryption', async () => {
      const busy = [...this.vms.values()].filter((v) => v.state !== 'stopped').map((v) => v.spec.name);
      if (busy.length) throw conflict(`stop every VM first: ${busy.join(', ')} still run`);
      const vms = vmsDir(this.layout);
      const existing = await this.keystore.keyFor(STORAGE_KEY_ID).catch(() => undefined);
      // A key kept from an attempt that failed is used again: a crash may have left a copy under it.
      const key = existing ?? (await this.keystore.newKey(STORAGE_KEY_ID).catch(keystoreError));
      const { moved } = await encryptVmFolder(vms, Buffer.from(key, 'base64'));
      this.log.info({ vms: moved.length }, 'the VM storage is encrypted');
      return { path: vms, moved };
    });
  }

  /** Removes the linked-clone bases no VM reads from any more (after a delete, and at start). */
  private async collectBases(): Promise<void> {
    try {
      await this.withLock(BASES_LOCK, 'base cleanup', async () => {
        const unused = await unusedBases(
          this.basesDir,
          [...this.vms.values()].map((v) => v.spec),
        );
        for (const file of unused) await rm(file, { force: true });
        if (unused.length) this.log.info({ bases: unused }, 'removed linked-clone bases no VM uses');
      });
    } catch (e) {
      this.log.warn(
        { err: (e as Error).message },
        'cannot tell which linked-clone bases are in use; kept all',
      );
    }
  }

  private get basesDir(): string {
    return path.join(this.layout.home, 'bases');
  }

  private async adopt(vm: Vm): Promise<void> {
    const files = runtimeFiles(this.layout, vm.spec.name);
    const stored = await this.store.readStatus(vm.spec.name);
    const pid = await readPidfile(files.pidfile);
    if (pid && (await isQemuFor(pid, vm.spec.uuid))) {
      try {
        const qmp = await QmpClient.connect(files.qmp, { connectTimeoutMs: 5000 });
        vm.pid = pid;
        vm.accel = stored?.accel;
        vm.startedAt = stored?.startedAt;
        vm.nets = wireNics(vm.spec, await exists(files.passtPidfile(0)), files.passtSocket);
        await replugTaps(vm.nets).catch((e: Error) =>
          this.log.warn({ vm: vm.spec.name, err: e.message }, 'cannot put a tap back on its bridge'),
        );
        this.attach(vm, qmp);
        vm.serial = await SerialHub.connect(files.serial, files.serialLog).catch((e: Error) => {
          this.log.warn({ vm: vm.spec.name, err: e.message }, 'serial console unavailable');
          return undefined;
        });
        let status = await qmp.execute<{ status: string; running: boolean }>('query-status');
        if (await resumeHeld(qmp, files.held, status.status === 'paused')) {
          this.log.warn(
            { vm: vm.spec.name },
            'resumed a VM the previous daemon had paused for a snapshot or copy',
          );
          status = await qmp.execute<{ status: string; running: boolean }>('query-status');
        }
        this.setState(vm, status.running ? 'running' : status.status === 'shutdown' ? 'stopping' : 'paused');
        this.log.info({ vm: vm.spec.name, pid }, 're-adopted running VM');
        return;
      } catch (e) {
        this.log.warn(
          { vm: vm.spec.name, pid, err: (e as Error).message },
          'QEMU alive but QMP unusable; killing it',
        );
        await killQemu(pid, vm.spec.uuid);
        await waitGone(pid, vm.spec.uuid, 5000);
      }
    }
    // QEMU removes its pidfile on a clean exit, not when killed: a leftover pidfile means a crash.
    const wasUp = stored && stored.state !== 'stopped';
    let reason = stored?.reason;
    if (wasUp) {
      reason = pid ? 'crashed: QEMU exited while phyllomed was down' : 'shut down while phyllomed was down';
    }
    await this.reapSwtpm(vm);
    await unplugNics(vm.spec, files);
    await rm(files.dir, { recursive: true, force: true });
    vm.state = 'stopped';
    vm.reason = reason;
    if (wasUp) await this.persist(vm);
  }

  private attach(vm: Vm, qmp: QmpClient): void {
    vm.qmp = qmp;
    let resolveExited!: () => void;
    vm.exited = new Promise((r) => (resolveExited = r));
    qmp.on('event', (e: QmpEvent) => this.onQmpEvent(vm, e));
    qmp.once('close', () => {
      void this.onQemuGone(vm, qmp).finally(resolveExited);
    });
  }

  private onQmpEvent(vm: Vm, e: QmpEvent): void {
    const t = e.timestamp;
    this.emitEvent({
      type: 'qemu-event',
      vm: vm.spec.name,
      event: e.event,
      ...(t ? { emittedAt: new Date(t.seconds * 1000 + t.microseconds / 1000).toISOString() } : {}),
    });
    switch (e.event) {
      case 'STOP':
        if (vm.state === 'running') this.setState(vm, 'paused');
        break;
      case 'RESUME':
        this.setState(vm, 'running');
        break;
      case 'SHUTDOWN':
        vm.shutdownExpected = true;
        this.setState(vm, 'stopping', e.data?.guest ? 'guest shut down' : 'shut down by the host');
        break;
    }
  }

  /** QMP closed: QEMU is exiting. Wait for the process, clean runtime files, record why it stopped. */
  private async onQemuGone(vm: Vm, qmp: QmpClient): Promise<void> {
    if (vm.qmp !== qmp) return;
    const pid = vm.pid;
    if (pid && !(await waitGone(pid, vm.spec.uuid, 10_000))) {
      this.log.warn({ vm: vm.spec.name, pid }, 'QEMU closed QMP but did not exit; killing it');
      await killQemu(pid, vm.spec.uuid);
      await waitGone(pid, vm.spec.uuid, 5000);
    }
    const reason = vm.shutdownExpected
      ? (vm.reason ?? 'shut down')
      : `crashed: ${await this.lastQemuError(vm)}`;
    vm.qmp = undefined;
    vm.serial?.close();
    vm.serial = undefined;
    vm.pid = undefined;
    vm.nets = undefined;
    vm.shutdownExpected = false;
    await this.reapSwtpm(vm);
    await unplugNics(vm.spec, runtimeFiles(this.layout, vm.spec.name));
    await rm(runtimeFiles(this.layout, vm.spec.name).dir, { recursive: true, force: true });
    this.setState(vm, 'stopped', reason);
    await this.persist(vm);
    this.log.info({ vm: vm.spec.name, reason }, 'VM stopped');
  }

  private async lastQemuError(vm: Vm): Promise<string> {
    try {
      const log = await readFile(runtimeFiles(this.layout, vm.spec.name).qemuLog, 'utf8');
      const last = log.trim().split('\n').pop();
      if (last?.includes('tpm') && vm.spec.tpm) {
        const swtpm = await swtpmLogTail(stateFiles(this.layout, vm.spec.name).swtpmLog);
        return `${last}${swtpm ? ` (swtpm: ${swtpm})` : ''}`;
      }
      if (last) return last;
    } catch {
      /* no log */
    }
    return 'QEMU exited unexpectedly';
  }

  private setState(vm: Vm, state: VmState, reason?: string): void {
    vm.state = state;
    vm.reason = reason;
    this.emitEvent({ type: 'state', vm: vm.spec.name, state, ...(reason ? { reason } : {}) });
  }

  private emitEvent(e: Omit<VmEvent, 'at'>): void {
    this.emit('event', { ...e, at: new Date().toISOString() });
  }

  private persist(vm: Vm): Promise<void> {
    const state = vm.state === 'paused' ? 'paused' : vm.state === 'stopped' ? 'stopped' : 'running';
    return this.store.writeStatus(vm.spec.name, {
      state,
      ...(vm.reason ? { reason: vm.reason } : {}),
      ...(vm.pid ? { pid: vm.pid } : {}),
      ...(vm.accel ? { accel: vm.accel } : {}),
      ...(vm.startedAt ? { startedAt: vm.startedAt } : {}),
    });
  }

  private get(name: string): Vm {
    this.requireStorage();
    const vm = this.vms.get(name);
    if (!vm) throw notFound(name);
    return vm;
  }

  private async warnings(vm: Vm): Promise<string[]> {
    const sealing = sealingWarning(vm.spec);
    if (vm.state === 'stopped') return sealing ? [sealing] : [];
    const decision = vm.accel === 'tcg' ? await this.host.accel : undefined;
    const slirp = (vm.nets ?? []).flatMap((w, i) => {
      const net = vm.spec.nics[i]?.net;
      return w.kind === 'slirp' && net?.type === 'user' ? [chooseUserBackend(net, false).warning] : [];
    });
    return [decision?.warning, ...slirp, sealing].filter((w): w is string => !!w);
  }

  /** Each NIC as the user sees it: the wiring it started with, else what a start would choose now. */
  private async nicInfo(vm: Vm, passtInstalled: () => Promise<boolean>): Promise<NicInfo[]> {
    // A running VM's NICs are all wired; only a stopped one's user NICs need the prediction.
    const passt = !vm.nets && vm.spec.nics.some((n) => n.net.type === 'user') && (await passtInstalled());
    const leases = new Map<string, Lease[]>();
    for (const nic of vm.spec.nics) {
      if (nic.net.type === 'network' && !leases.has(nic.net.network)) {
        leases.set(nic.net.network, (await this.networks?.leases(nic.net.network)) ?? []);
      }
    }
    return vm.spec.nics.map((nic, index) => {
      const net = nic.net;
      const base = { index, model: nic.model, mac: nic.mac, forwards: [] as string[], ips: [] as string[] };
      switch (net.type) {
        case 'user': {
          const wired = vm.nets?.[index];
          const choice = chooseUserBackend(net, wired ? wired.kind === 'passt' : passt);
          return {
            ...base,
            network: `user (${choice.backend === 'passt' ? 'passt' : 'QEMU slirp'})`,
            reason: choice.reason,
            forwards: net.forwards.map(formatForward),
          };
        }
        case 'bridge':
          return { ...base, network: `bridge ${net.bridge}` };
        case 'macvtap':
          return { ...base, network: `macvtap on ${net.device}` };
        case 'network': {
          const ips = (leases.get(net.network) ?? []).filter((l) => l.mac === nic.mac).map((l) => l.ip);
          return {
            ...base,
            network: `network ${net.network}`,
            ips,
            ...(ips.length ? { ipsFrom: 'DHCP leases' as const } : {}),
          };
        }
      }
    });
  }

  /** Every NIC on a private network must name one that exists; the error says how to make it. */
  private checkNetworks(nics: readonly NicSpec[]): void {
    for (const nic of nics) {
      if (nic.net.type === 'network' && !this.networks?.has(nic.net.network)) {
        throw new UserError(
          `no network named "${nic.net.network}": create it with "phyllome network create ${nic.net.network}" (see "phyllome network list")`,
          404,
          'not-found',
        );
      }
    }
  }

  /**
   * Adds a NIC to a stopped VM (QEMU's NICs are set at its start), checked as at create, and what it
   * plugs into as its start would: a missing network, bridge or host NIC is refused now.
   */
  nicAdd(name: string, nic: NicRequest): Promise<VmInfo> {
    return this.withLock(name, 'nic add', async () => {
      const vm = this.stoppedFor(name, 'add a NIC');
      const spec = respec(vm.spec, { nics: withNic(vm.spec.nics, nic) });
      const added = spec.nics.at(-1)!;
      this.checkNetworks([added]);
      await checkHostSide(added.net);
      await this.store.writeSpec(spec);
      vm.spec = spec;
      return this.info(name);
    });
  }

  /** Removes NIC `index` of a stopped VM; the NICs after it move up one. */
  nicRemove(name: string, index: number): Promise<VmInfo> {
    return this.withLock(name, 'nic remove', async () => {
      const vm = this.stoppedFor(name, 'remove a NIC');
      const nics = withoutNic(vm.spec.nics, index);
      if (!nics) throw new UserError(noSuchNic(name, vm.spec.nics.length, index), 404, 'not-found');
      const spec = respec(vm.spec, { nics });
      await this.store.writeSpec(spec);
      vm.spec = spec;
      return this.info(name);
    });
  }

  /** A VM whose NICs may change: only a stopped one, since QEMU sets its devices at start. */
  private stoppedFor(name: string, what: string): Vm {
    const vm = this.get(name);
    if (vm.state !== 'stopped') {
      throw conflict(`stop VM "${name}" to ${what}: QEMU sets its NICs at start (it is ${vm.state})`);
    }
    return vm;
  }

  /** The VMs with a NIC on this private network, and which of them run. */
  usersOfNetwork(network: string): { vms: string[]; running: string[] } {
    const on = [...this.vms.values()].filter((vm) =>
      vm.spec.nics.some((n) => n.net.type === 'network' && n.net.network === network),
    );
    return {
      vms: on.map((vm) => vm.spec.name).sort(),
      running: on
        .filter((vm) => vm.state !== 'stopped')
        .map((vm) => vm.spec.name)
        .sort(),
    };
  }

  /** The VMs with `file` in a drive (a CD-ROM or a disk), sorted. */
  usersOfFile(file: string): string[] {
    return [...this.vms.values()]
      .filter((vm) => [...vm.spec.cdroms, ...vm.spec.disks].some((d) => d.path === file))
      .map((vm) => vm.spec.name)
      .sort();
  }

  /**
   * One VM with what only a closer look gives: the guest's addresses from its agent, when the guest
   * runs one (QEMU says whether the agent's port is open, so a guest without one costs no wait).
   */
  async status(name: string): Promise<VmInfo> {
    const info = await this.info(name);
    const vm = this.get(name);
    if (!isLive(vm)) return info;
    try {
      const chardevs = await vm.qmp.execute<{ label: string; 'frontend-open': boolean }[]>('query-chardev');
      if (!chardevs.some((c) => c.label === QGA_CHARDEV && c['frontend-open'])) return info;
      const seen = await guestInterfaces(runtimeFiles(this.layout, name).qga);
      return {
        ...info,
        nics: info.nics.map((n) => {
          const ips = seen.find((i) => i.mac === n.mac)?.ips;
          return ips?.length ? { ...n, ips, ipsFrom: 'guest agent' } : n;
        }),
      };
    } catch (e) {
      this.log.debug({ vm: name, err: (e as Error).message }, 'no addresses from the guest agent');
      return info;
    }
  }

  async info(name: string, passtInstalled = passtLookup()): Promise<VmInfo> {
    const vm = this.get(name);
    return {
      name: vm.spec.name,
      uuid: vm.spec.uuid,
      state: vm.state,
      ...(vm.reason ? { reason: vm.reason } : {}),
      ...(vm.pid ? { pid: vm.pid } : {}),
      ...(vm.accel ? { accel: vm.accel } : {}),
      warnings: await this.warnings(vm),
      nics: await this.nicInfo(vm, passtInstalled),
      spec: vm.spec,
    };
  }

  async list(): Promise<VmInfo[]> {
    this.requireStorage();
    const passtInstalled = passtLookup();
    return Promise.all([...this.vms.keys()].sort().map((n) => this.info(n, passtInstalled)));
  }

  private withLock<T>(name: string, what: string, fn: () => Promise<T>): Promise<T> {
    return this.lock.run(name, what, LOCK_WAIT_MS, fn);
  }

  async create(input: unknown): Promise<VmInfo> {
    this.requireStorage();
    const {
      input: withPaths,
      newDisks,
      cloudInit,
      seed,
    } = madeAtCreate(input, (name) => vmDir(this.layout, name));
    const parsed = parseSpecInput(await withDiskFormats(withPaths));
    if (cloudInit) {
      try {
        checkCloudInit(cloudInit);
      } catch (e) {
        userErrorsFrom(CloudInitError)(e);
      }
    }
    return this.withLock(parsed.name, 'create', async () => {
      if (this.vms.has(parsed.name)) {
        throw conflict(`a VM named "${parsed.name}" already exists: pick another name or delete it first`);
      }
      const spec: VmSpec = {
        ...parsed,
        // Every disk gets a stable id (its QEMU node name) for live operations and snapshots.
        disks: parsed.disks.map((d, i) => ({ ...d, id: diskId(d, i) })),
        // A VM made with encrypted disks keeps its UEFI variables and TPM state encrypted too.
        tpmEncrypted: parsed.tpm && newDisks.some((d) => d.encrypted),
        firmware:
          parsed.firmware.type === 'uefi'
            ? { ...parsed.firmware, nvramEncrypted: newDisks.some((d) => d.encrypted) }
            : parsed.firmware,
        schemaVersion: SCHEMA_VERSION,
        uuid: randomUUID(),
        createdAt: new Date().toISOString(),
      };
      await checkFiles(spec, new Set([...newDisks.map((d) => d.file), ...(seed ? [seed] : [])]));
      this.checkNetworks(spec.nics);
      if (spec.tpm) await findSwtpm().catch(userErrorsFrom(SwtpmError));
      if (needsKey(spec) && !newDisks.some((d) => d.encrypted)) {
        throw new UserError(
          'an existing encrypted disk cannot be attached at create: its key is not in the keystore',
        );
      }
      const key = needsKey(spec) ? await this.keystore.newKey(spec.uuid).catch(keystoreError) : undefined;
      if (spec.tpmEncrypted) await this.keystore.newKey(tpmKeyId(spec.uuid)).catch(keystoreError);
      // Made under the staging folder, the files land at their final paths with its rename.
      const makeFiles = async (staging: string) => {
        for (const d of newDisks) {
          const file = path.join(staging, path.basename(d.file));
          await createQcow2(d.encrypted ? { file, key: key! } : { file }, d.bytes);
        }
        if (cloudInit) {
          await writeSeedIso(path.join(staging, CLOUD_INIT_SEED), cloudInitFiles(cloudInit, spec.uuid));
        }
        if (spec.firmware.type === 'uefi') {
          const nvram = stateFiles(this.layout, spec.name).nvram;
          // qcow2, so it can be snapshotted with the disks; encrypted like them.
          await copyImage(
            { file: spec.firmware.varsTemplate, format: 'raw' },
            {
              file: path.join(staging, path.basename(nvram)),
              ...(spec.firmware.nvramEncrypted ? { key: key! } : {}),
            },
          );
        }
      };
      try {
        // A missing tool or a failed qemu-img is the user's to fix; the staging folder is removed.
        await this.store.create(spec, (staging) =>
          makeFiles(staging).catch(userErrorsFrom(QemuImgError, SeedIsoError)),
        );
      } catch (e) {
        await this.forgetKeys(spec.uuid);
        throw e;
      }
      this.vms.set(spec.name, { spec, state: 'stopped' });
      this.emitEvent({ type: 'created', vm: spec.name });
      return this.info(spec.name);
    });
  }

  async keystoreState(): Promise<'absent' | 'locked' | 'unlocked'> {
    if (this.keystore.unlocked) return 'unlocked';
    return (await exists(this.keystore.file)) ? 'locked' : 'absent';
  }

  private async forgetKeys(uuid: string): Promise<void> {
    await this.keystore.removeKey(uuid);
    await this.keystore.removeKey(tpmKeyId(uuid));
  }

  /** Where create puts a VM's cloud-init seed, so a plan can name it beforehand. */
  cloudInitSeed(name: string): string {
    return path.join(vmDir(this.layout, name), CLOUD_INIT_SEED);
  }

  start(name: string): Promise<VmInfo> {
    return this.withLock(name, 'start', async () => {
      const vm = this.get(name);
      if (vm.state !== 'stopped') {
        throw conflict(
          `VM "${name}" is already ${vm.state}: stop it first, or use "phyllome restart ${name}"`,
        );
      }
      await this.launch(vm);
      return this.info(name);
    });
  }

  /** A VM shown in a window needs a screen to open it on and a QEMU that draws windows. */
  private async checkWindow(name: string): Promise<void> {
    const off = `or turn its window off (phyllome set ${name} --window off) and use the web console`;
    if (!this.host.localDisplay) {
      throw new UserError(
        `VM "${name}" shows in a window on this host's screen, but the daemon has no display (neither WAYLAND_DISPLAY nor DISPLAY is set): start phyllomed from the graphical session, ${off}`,
      );
    }
    if (!(await this.host.features()).displays.includes('gtk')) {
      throw new UserError(
        `VM "${name}" shows in a window, which this QEMU cannot draw: apt-get install qemu-system-gui, ${off}`,
      );
    }
  }

  /** `incoming`: QEMU waits, paused, for a live migration (migrateIn) instead of booting. */
  private async launch(vm: Vm, incoming = false): Promise<void> {
    if (!incoming && needsSealing(vm.spec)) await this.seal(vm);
    const { spec } = vm;
    await checkFiles(spec);
    // Before anything is set up: a GPU not ready for vfio-pci is for the user to fix, with the commands.
    if (spec.graphics.hostDevices)
      await prepareHostDevices('/', spec.graphics.hostDevices).catch(userErrorsFrom(HostDeviceError));
    if (spec.graphics.window) await this.checkWindow(spec.name);
    const files = runtimeFiles(this.layout, spec.name);
    checkSocketPath(files.qmp);
    const decision = await this.host.accel;
    if (decision.warning) this.log.warn({ vm: spec.name }, decision.warning);
    await rm(files.dir, { recursive: true, force: true });
    await mkdir(files.dir, { recursive: true, mode: 0o750 });
    const state = stateFiles(this.layout, spec.name);
    await Promise.all([rm(files.qemuLog, { force: true }), rm(files.serialLog, { force: true })]);
    const key = needsKey(spec) ? await this.keystore.keyFor(spec.uuid).catch(keystoreError) : undefined;
    this.checkNetworks(spec.nics);
    const swtpm = spec.tpm ? await this.startTpm(vm) : undefined;
    let nets, fds;
    try {
      ({ nets, fds } = await plugNics(spec, files));
    } catch (e) {
      if (swtpm) terminate(swtpm);
      await rm(files.dir, { recursive: true, force: true });
      throw e;
    }
    const args = buildQemuArgs({
      // Off-screen GL with no render node named (a spec written by hand or for another host) renders on
      // this host's first GPU, else on the CPU: egl-headless would not find one by itself.
      spec: spec.graphics.window
        ? spec
        : { ...spec, graphics: offScreen(spec.graphics, await renderNodes()) },
      files,
      state,
      accel: decision.accel,
      caps: this.host.qemu.caps,
      nets,
      incoming,
      backings: await encryptedBases(spec),
    });
    this.setState(vm, 'starting');
    if (key) await writeFile(files.key, key, { mode: 0o600, flag: 'wx' });
    let pid;
    try {
      pid = spawnDetached(
        this.host.qemu.binary,
        args,
        files.qemuLog,
        undefined,
        fds,
        qemuEnv(spec, process.env),
      );
    } finally {
      closeFds(fds);
    }
    this.log.info({ vm: spec.name, pid, accel: decision.accel }, 'started QEMU');
    let qmp: QmpClient | undefined;
    let serial: SerialHub;
    try {
      qmp = await this.connectWhileAlive(files.qmp, pid, spec.uuid);
      // QMP answers only after QEMU has read every -object: the key file can go.
      await rm(files.key, { force: true });
      serial = await SerialHub.connect(files.serial, files.serialLog);
    } catch (e) {
      qmp?.close();
      await killQemu(pid, spec.uuid);
      if (swtpm) terminate(swtpm);
      await unplugNics(spec, files);
      await rm(files.dir, { recursive: true, force: true });
      const why = await this.lastQemuError(vm);
      this.setState(vm, 'stopped', `failed to start: ${why}`);
      await this.persist(vm);
      throw new UserError(
        `VM "${spec.name}" failed to start: ${why} (${(e as Error).message}); see ${files.qemuLog}`,
        400,
        'start-failed',
      );
    }
    vm.pid = pid;
    vm.accel = decision.accel;
    vm.startedAt = new Date().toISOString();
    vm.shutdownExpected = false;
    vm.serial = serial;
    vm.nets = nets;
    this.attach(vm, qmp);
    if (!incoming) await this.cont(qmp);
    await this.persist(vm);
  }

  /** Runs the paused vCPUs; RESUME says they run. */
  private async cont(qmp: QmpClient): Promise<void> {
    const resumed = qmp.waitForEvent('RESUME', QMP_START_TIMEOUT_MS);
    await qmp.execute('cont');
    await resumed;
  }

  /**
   * A VM whose first encrypted disk came after it was made gets its UEFI variables and TPM state
   * encrypted at its next start, before QEMU opens them (seal.ts); snapshots hold that off.
   */
  private async seal(vm: Vm): Promise<void> {
    const { uuid, name } = vm.spec;
    const state = stateFiles(this.layout, name);
    const sealed = await sealState({
      spec: vm.spec,
      dir: vmDir(this.layout, name),
      nvram: state.nvram,
      tpmState: state.tpmState,
      diskKey: await this.keystore.keyFor(uuid).catch(keystoreError),
      tpmKey: () =>
        this.keystore
          .keyFor(tpmKeyId(uuid))
          .catch((e: Error) =>
            e instanceof KeystoreError && e.reason === 'missing-key'
              ? this.keystore.newKey(tpmKeyId(uuid))
              : keystoreError(e),
          ),
      writeSpec: (spec) => this.store.writeSpec(spec),
    }).catch(userErrorsFrom(QemuImgError, SwtpmError));
    if (sealed === 'has-snapshots') {
      this.log.warn(
        { vm: name },
        'UEFI variables and TPM state stay unencrypted until the snapshots are deleted',
      );
    } else {
      vm.spec = sealed;
      this.log.info(
        { vm: name },
        'encrypted the UEFI variables and TPM state (the VM has an encrypted disk now)',
      );
    }
  }

  /** swtpm first: QEMU connects to its socket at start-up. Failures say what to install or read. */
  private async startTpm(vm: Vm): Promise<number> {
    const files = runtimeFiles(this.layout, vm.spec.name);
    const state = stateFiles(this.layout, vm.spec.name);
    try {
      checkSocketPath(files.tpm);
      const binary = await findSwtpm();
      const keyFile = vm.spec.tpmEncrypted ? files.swtpmKey : undefined;
      if (keyFile) {
        const key = await this.keystore.keyFor(tpmKeyId(vm.spec.uuid)).catch(keystoreError);
        await writeFile(keyFile, Buffer.from(key, 'base64').toString('hex'), { mode: 0o600, flag: 'wx' });
      }
      try {
        return await startSwtpm(binary, {
          stateDir: state.tpmState,
          socket: files.tpm,
          pidfile: files.swtpmPidfile,
          log: state.swtpmLog,
          ...(keyFile ? { keyFile } : {}),
        });
      } finally {
        // swtpm removes it once read; this covers an swtpm that never got that far.
        if (keyFile) await rm(keyFile, { force: true });
      }
    } catch (e) {
      if (!(e instanceof SwtpmError)) throw e;
      await rm(files.dir, { recursive: true, force: true });
      this.setState(vm, 'stopped', `failed to start: ${e.message}`);
      await this.persist(vm);
      throw new UserError(`VM "${vm.spec.name}" failed to start: ${e.message}`, 400, 'start-failed');
    }
  }

  /** swtpm exits with QEMU (--terminate); one left behind (QEMU killed mid-start) is stopped here. */
  private async reapSwtpm(vm: Vm): Promise<void> {
    if (!vm.spec.tpm) return;
    const pid = await readPidfile(runtimeFiles(this.layout, vm.spec.name).swtpmPidfile);
    const dir = stateFiles(this.layout, vm.spec.name).tpmState;
    if (pid) await reapHelper(pid, () => isSwtpmFor(pid, dir), 1000);
  }

  /** QEMU creates its QMP socket early; retry connecting until then, failing fast if it exits. */
  private async connectWhileAlive(socket: string, pid: number, uuid: string): Promise<QmpClient> {
    const deadline = Date.now() + QMP_START_TIMEOUT_MS;
    for (;;) {
      try {
        return await QmpClient.connect(socket, { connectTimeoutMs: 5000 });
      } catch (e) {
        if (!(await isQemuFor(pid, uuid))) throw new Error('QEMU exited during start-up', { cause: e });
        if (Date.now() > deadline) throw e;
        await sleep(25);
      }
    }
  }

  pause(name: string): Promise<VmInfo> {
    return this.withLock(name, 'pause', async () => {
      const vm = this.running(name, ['running']);
      const stopped = vm.qmp!.waitForEvent('STOP', 10_000);
      await vm.qmp!.execute('stop');
      await stopped;
      await this.persist(vm);
      return this.info(name);
    });
  }

  resume(name: string): Promise<VmInfo> {
    return this.withLock(name, 'resume', async () => {
      const vm = this.running(name, ['paused']);
      const resumed = vm.qmp!.waitForEvent('RESUME', 10_000);
      await vm.qmp!.execute('cont');
      await resumed;
      await this.persist(vm);
      return this.info(name);
    });
  }

  private running(name: string, allowed: VmState[]): Vm {
    const vm = this.get(name);
    if (!allowed.includes(vm.state) || !vm.qmp) {
      throw conflict(`VM "${name}" is ${vm.state}; this needs it to be ${allowed.join(' or ')}`);
    }
    return vm;
  }

  stop(
    name: string,
    opts: { force?: boolean; timeoutS?: number } = {},
  ): Promise<VmInfo & { forced: boolean }> {
    return this.withLock(name, opts.force ? 'force-stop' : 'stop', async () => {
      const forced = await this.halt(this.get(name), opts);
      return { ...(await this.info(name)), forced };
    });
  }

  /** ACPI power button, wait up to timeoutS, then force. Returns whether force was needed. */
  private async halt(
    vm: Vm,
    { force = false, timeoutS = 60 }: { force?: boolean; timeoutS?: number },
  ): Promise<boolean> {
    if (vm.state === 'stopped' || !vm.qmp || !vm.pid) {
      throw conflict(`VM "${vm.spec.name}" is not running`);
    }
    const exited = vm.exited!;
    vm.shutdownExpected = true;
    if (!force) {
      // A paused guest cannot see the power button: let it run so it can shut down.
      if (vm.state === 'paused') await vm.qmp.execute('cont');
      this.setState(vm, 'stopping', 'ACPI power button pressed');
      await vm.qmp.execute('system_powerdown');
      const inTime = await Promise.race([exited.then(() => true), sleep(timeoutS * 1000).then(() => false)]);
      if (inTime) return false;
      this.log.warn({ vm: vm.spec.name }, `guest did not power off within ${timeoutS}s; forcing`);
    }
    // onQemuGone records the stop once the process is gone.
    this.setState(vm, 'stopping', 'forced off');
    await killQemu(vm.pid, vm.spec.uuid);
    await exited;
    return true;
  }

  restart(name: string, opts: { timeoutS?: number } = {}): Promise<VmInfo> {
    return this.withLock(name, 'restart', async () => {
      const vm = this.get(name);
      if (vm.state !== 'stopped') await this.halt(vm, opts);
      await this.launch(vm);
      return this.info(name);
    });
  }

  /**
   * Clones a stopped VM under a new name: a new uuid and MACs, its own copies of disks (or overlays on
   * a shared base with --linked), UEFI variables and TPM state. An encrypted source gives an encrypted
   * clone with a key of its own (a copy of the source's when linked). Progress goes out as events.
   */
  clone(srcName: string, name: string, opts: { linked?: boolean } = {}): Promise<VmInfo> {
    return this.withLock(srcName, 'clone', () =>
      this.withLock(name, 'create', async () => {
        const src = this.get(srcName);
        if (src.state !== 'stopped') throw conflict(`stop "${srcName}" first: a clone copies a stopped VM`);
        if (this.vms.has(name)) {
          throw conflict(`a VM named "${name}" already exists: pick another name or delete it first`);
        }
        const problem = vmNameProblem(name);
        if (problem) throw new UserError(`name: ${problem}`);
        const req: CloneRequest = {
          src: src.spec,
          srcDir: vmDir(this.layout, srcName),
          name,
          dstDir: vmDir(this.layout, name),
          basesDir: this.basesDir,
          linked: !!opts.linked,
          onProgress: (percent) => this.emitEvent({ type: 'progress', vm: name, op: 'clone', percent }),
        };
        await checkClone(req);
        const spec = cloneSpec(req, randomUUID(), new Date().toISOString());
        if (needsKey(src.spec)) req.srcKey = await this.keystore.keyFor(src.spec.uuid).catch(keystoreError);
        // A linked clone's bases stay encrypted under the source's key: the clone gets a copy of it.
        if (needsKey(spec) && req.linked) {
          await this.keystore.copyKey(src.spec.uuid, spec.uuid).catch(keystoreError);
          req.dstKey = req.srcKey;
        } else if (needsKey(spec)) {
          req.dstKey = await this.keystore.newKey(spec.uuid).catch(keystoreError);
        }
        // The TPM is copied whole, so its state keeps its key.
        if (spec.tpmEncrypted) {
          await this.keystore.copyKey(tpmKeyId(src.spec.uuid), tpmKeyId(spec.uuid)).catch(keystoreError);
        }
        const make = () =>
          this.store.create(spec, (staging) => makeClone(req, spec, staging).catch(qemuImgError));
        try {
          // A new base is referenced only once the source's overlay is in place: no cleanup meanwhile.
          await (req.linked ? this.withLock(BASES_LOCK, 'linked clone', make) : make());
        } catch (e) {
          await this.forgetKeys(spec.uuid);
          throw e;
        }
        if (req.linked) {
          // The source's disks are overlays now (same paths): its spec is unchanged.
          this.log.info(
            { vm: srcName, clone: name },
            'linked clone made; the source now runs on an overlay too',
          );
        }
        this.vms.set(name, { spec, state: 'stopped' });
        this.emitEvent({ type: 'created', vm: name });
        return this.info(name);
      }),
    );
  }

  /**
   * Streams a VM as a bundle: a stopped one from its files, a running one from a point-in-time copy
   * (liveCopy) while it runs on. The VM stays locked (no start, stop or change) until the stream
   * ends, so what is read is what the manifest vouches for.
   */
  exportVm(name: string, opts: { passphrase?: string } = {}): Promise<Readable> {
    return new Promise<Readable>((resolve, reject) => {
      this.exportWith(name, opts, async (write) => {
        const out = streamSink();
        resolve(out.stream);
        try {
          await write(out.sink);
          out.end();
        } catch (e) {
          out.fail(e as Error);
          throw e;
        }
      }).catch(reject);
    });
  }

  /**
   * The bundle written by the daemon itself into `file` on this host (zstd writes into it directly:
   * nothing is relayed through the daemon or the client). Resolves to its size once it is whole.
   */
  async exportVmToFile(
    name: string,
    file: string,
    opts: { passphrase?: string; signal?: AbortSignal } = {},
  ): Promise<number> {
    if (!path.isAbsolute(file)) throw new UserError(`the bundle path must be absolute: ${file}`);
    // The file is claimed first, so a name that is taken is refused before any work (a live copy).
    const out = await fileSink(file).catch((e: unknown) => {
      throw e instanceof BundleError
        ? new UserError(`${e.message}: choose another --output, or remove it first`)
        : e;
    });
    let bytes = 0;
    try {
      await this.exportWith(name, opts, async (write) => {
        await write(out.sink, opts.signal);
        bytes = await out.end();
      });
    } catch (e) {
      await out.fail();
      throw e;
    }
    return bytes;
  }

  /** Prepares a VM's bundle (a running one from a live copy) and hands its writer to `use`, under the VM's lock. */
  private exportWith(
    name: string,
    opts: { passphrase?: string },
    use: (write: WriteBundle) => Promise<void>,
  ): Promise<void> {
    return this.withLock(name, 'export', async () => {
      const vm = this.get(name);
      if (vm.state !== 'stopped' && !(isLive(vm) && (vm.state === 'running' || vm.state === 'paused'))) {
        throw conflict(`"${name}" is ${vm.state}: export it once it is running or stopped`);
      }
      const keys = {
        ...(needsKey(vm.spec) ? { disk: await this.keystore.keyFor(vm.spec.uuid).catch(keystoreError) } : {}),
        ...(vm.spec.tpmEncrypted
          ? { tpm: await this.keystore.keyFor(tpmKeyId(vm.spec.uuid)).catch(keystoreError) }
          : {}),
      };
      const dir = vmDir(this.layout, name);
      const temp = isLive(vm) ? await mkdtemp(path.join(tmpdir(), 'phyllome-live-')) : undefined;
      try {
        const live =
          temp && isLive(vm)
            ? {
                dir: temp,
                files: await liveCopy(
                  vm.qmp,
                  liveParts(vm.spec, stateFiles(this.layout, name).nvram, keys.disk),
                  vm.spec.tpm ? stateFiles(this.layout, name).tpmState : undefined,
                  temp,
                  runtimeFiles(this.layout, name).held,
                ),
              }
            : undefined;
        await use(
          await exportBundle({
            spec: vm.spec,
            dir,
            keys,
            ...(opts.passphrase !== undefined ? { passphrase: opts.passphrase } : {}),
            ...(live ? { live } : {}),
            onProgress: (percent) => this.emitEvent({ type: 'progress', vm: name, op: 'export', percent }),
          }),
        );
      } catch (e) {
        qemuImgError(e);
      } finally {
        if (temp) await rm(temp, { recursive: true, force: true });
      }
    });
  }

  /**
   * Registers a VM from a bundle, under its own name or `name`. Everything is read and checked in a
   * staging folder first; a refused bundle leaves nothing behind. Host-specific parts are fitted to
   * this host, each change with its reason; the VM gets a new uuid and MACs.
   */
  async importVm(
    body: Readable,
    opts: { name?: string; passphrase?: string; size?: number } = {},
  ): Promise<{ vm: VmInfo; changes: Change[] }> {
    this.requireStorage();
    if (opts.name) {
      const problem = vmNameProblem(opts.name);
      if (problem) throw new UserError(`name: ${problem}`);
    }
    const taken = (name: string) => {
      if (this.vms.has(name)) {
        throw conflict(
          `a VM named "${name}" already exists: import under another name with --name NEW, or delete it first`,
        );
      }
    };
    const staging = await mkdtemp(path.join(vmsDir(this.layout), '.creating-import-'));
    try {
      let name = opts.name ?? '';
      let read = 0;
      let shown = -1;
      const bundle = await readImport(body, staging, {
        ...(opts.passphrase !== undefined ? { passphrase: opts.passphrase } : {}),
        onSpec: (spec) => taken((name ||= spec.name)),
        onBytes: (n) => {
          read += n;
          const pct = opts.size ? Math.min(99, Math.floor((100 * read) / opts.size)) : -1;
          if (pct > shown)
            this.emitEvent({ type: 'progress', vm: name, op: 'import', percent: (shown = pct) });
        },
      });
      return await this.withLock(name, 'create', async () => {
        taken(name);
        const host = await importHost(
          bundle.spec,
          bundle.spec.nics.flatMap((n) =>
            n.net.type === 'network' && this.networks?.has(n.net.network) ? [n.net.network] : [],
          ),
          async () => (await this.host.features()).virtioVgaGl,
          this.host.localDisplay,
        );
        let planned;
        try {
          planned = replan(bundle.spec, host, {
            name,
            uuid: randomUUID(),
            createdAt: new Date().toISOString(),
          });
        } catch (e) {
          throw e instanceof FirmwareError ? new UserError(`cannot import "${name}": ${e.message}`) : e;
        }
        const spec = unbundledPaths(planned.spec, vmDir(this.layout, name));
        if (needsKey(spec) !== !!bundle.keys.disk || spec.tpmEncrypted !== !!bundle.keys.tpm) {
          throw new UserError(
            'refused: the bundle lacks the keys its encrypted files need; nothing was imported',
          );
        }
        if (bundle.keys.disk) await this.keystore.putKey(spec.uuid, bundle.keys.disk).catch(keystoreError);
        if (bundle.keys.tpm)
          await this.keystore.putKey(tpmKeyId(spec.uuid), bundle.keys.tpm).catch(keystoreError);
        try {
          await this.store.create(spec, async (target) => {
            for (const entry of await readdir(staging))
              await rename(path.join(staging, entry), path.join(target, entry));
          });
        } catch (e) {
          await this.forgetKeys(spec.uuid);
          throw e;
        }
        this.vms.set(name, { spec, state: 'stopped' });
        this.emitEvent({ type: 'progress', vm: name, op: 'import', percent: 100 });
        this.emitEvent({ type: 'created', vm: name });
        for (const c of planned.changes)
          this.log.info({ vm: name, change: c.what, why: c.why }, 'import changed');
        return { vm: await this.info(name), changes: planned.changes };
      });
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  delete(name: string, opts: { force?: boolean } = {}): Promise<void> {
    return this.withLock(name, 'delete', () => this.remove(this.get(name), opts.force));
  }

  /** Under the VM's lock: its files, its keys and itself; a running one only when forced (killed). */
  private async remove(vm: Vm, force = false): Promise<void> {
    const { name } = vm.spec;
    if (vm.state !== 'stopped') {
      if (!force) {
        throw conflict(`VM "${name}" is ${vm.state}: stop it first, or delete with --force to kill it`);
      }
      // A QEMU that already exited is being cleaned up by onQemuGone: wait for that instead.
      if (vm.qmp && !vm.qmp.closed) await this.halt(vm, { force: true });
      else await vm.exited;
    }
    await this.store.delete(name);
    await this.forgetKeys(vm.spec.uuid);
    // The GPU slices it held go back to the host (a failure leaves one for mdevctl to remove).
    if (vm.spec.graphics.hostDevices) {
      await releaseMdevs('/', vm.spec.graphics.hostDevices).catch((e: Error) =>
        this.log.warn({ vm: name, err: e.message }, 'could not remove its mediated devices'),
      );
    }
    this.vms.delete(name);
    this.emitEvent({ type: 'deleted', vm: name });
    await this.collectBases();
  }

  /**
   * Live migration out (migrate.ts): `send` moves the running VM (or finds where a crash left a move)
   * while its lock is held; when it says the VM has left, it runs elsewhere and is removed here (QEMU,
   * files, keys). A `send` that throws must leave it running as it was.
   */
  migrateOut<T>(
    name: string,
    op: string,
    send: (vm: { spec: VmSpec; qmp: QmpClient; paused: boolean }) => Promise<{ left: boolean; value: T }>,
  ): Promise<T> {
    return this.withLock(name, op, async () => {
      const vm = this.running(name, ['running', 'paused']);
      const { left, value } = await send({ spec: vm.spec, qmp: vm.qmp!, paused: vm.state === 'paused' });
      if (left) await this.remove(vm, true);
      return value;
    });
  }

  /**
   * Live migration in (migrate.ts): makes the VM from the source's spec (`prepare` makes its empty
   * images in the staging folder, with its new disk key where it needs one), starts QEMU waiting for the
   * stream, and holds the VM's lock while `session` receives it. Then the VM runs, or stays paused, as
   * `session` says; a session that throws (or a QEMU that dies) removes all of it.
   */
  migrateIn(
    spec: VmSpec,
    prepare: (staging: string, key?: string) => Promise<void>,
    session: (qmp: QmpClient) => Promise<{ run: boolean }>,
  ): Promise<VmInfo> {
    return this.withLock(spec.name, 'incoming migration', async () => {
      if (this.vms.has(spec.name)) {
        throw conflict(`a VM named "${spec.name}" already exists here: delete or rename one of them first`);
      }
      await checkFiles(spec, new Set(spec.disks.filter((d) => !d.readOnly).map((d) => d.path)));
      this.checkNetworks(spec.nics);
      const key = needsKey(spec) ? await this.keystore.newKey(spec.uuid).catch(keystoreError) : undefined;
      // The TPM's state arrives in the stream; this swtpm keeps it under a key of its own.
      if (spec.tpmEncrypted) await this.keystore.newKey(tpmKeyId(spec.uuid)).catch(keystoreError);
      try {
        await this.store.create(spec, (staging) => prepare(staging, key).catch(qemuImgError));
      } catch (e) {
        await this.forgetKeys(spec.uuid);
        throw e;
      }
      const vm: Vm = { spec, state: 'stopped' };
      this.vms.set(spec.name, vm);
      this.emitEvent({ type: 'created', vm: spec.name });
      try {
        await this.launch(vm, true);
        this.setState(vm, 'starting', 'incoming migration');
        const { run } = await session(vm.qmp!);
        if (run) await this.cont(vm.qmp!);
        else this.setState(vm, 'paused');
        await this.persist(vm);
      } catch (e) {
        await this.remove(vm, true);
        throw e;
      }
      return this.info(spec.name);
    });
  }

  /**
   * Ejects or inserts a CD-ROM's medium: through QMP while the VM runs, and in the spec either way so
   * the next start sees the same. `drive` defaults to the first CD-ROM; a stopped VM without one gains
   * a drive (IDE and SATA cannot be hot-plugged).
   */
  media(name: string, change: { path?: string; drive?: number }): Promise<VmInfo> {
    return this.withLock(name, change.path ? 'insert' : 'eject', async () => {
      const vm = this.get(name);
      const live = isLive(vm);
      const drive = change.drive ?? 0;
      let cdroms = [...vm.spec.cdroms];
      if (!cdroms.length && change.path && !live) cdroms = [{ role: 'media' }];
      if (!cdroms[drive]) {
        throw new UserError(
          cdroms.length
            ? `VM "${name}" has CD-ROM drives 0 to ${cdroms.length - 1}, not ${drive}`
            : `VM "${name}" has no CD-ROM drive, and one can be added only while it is stopped`,
        );
      }
      cdroms[drive] = { role: cdroms[drive]!.role, ...(change.path ? { path: change.path } : {}) };
      const spec = respec(vm.spec, { cdroms });
      await checkFiles(spec, new Set(spec.disks.map((d) => d.path)));
      if (live) {
        const id = `cd${drive}`;
        if (change.path) {
          await vm.qmp!.execute('blockdev-change-medium', {
            id,
            filename: spec.cdroms[drive]!.path,
            format: 'raw',
            'read-only-mode': 'read-only',
          });
        } else {
          await vm.qmp!.execute('eject', { id, force: true });
        }
      }
      vm.spec = spec;
      await this.store.writeSpec(spec);
      return this.info(name);
    });
  }

  /** The VM's disks with their sizes (qemu-img reads sizes from the clear qcow2 header, no key needed). */
  async diskList(name: string): Promise<{ disks: DiskInfo[] }> {
    const vm = this.get(name);
    return {
      disks: await Promise.all(
        vm.spec.disks.map(async (d, i) => {
          const [info, file] = await Promise.all([
            imageInfo({ file: d.path, format: d.format }).catch(() => undefined),
            stat(d.path).catch(() => undefined),
          ]);
          return {
            ...d,
            id: diskId(d, i),
            ...(info ? { virtualSize: info.virtualSize } : {}),
            // What it takes on the host now (sparse files and qcow2 grow as the guest writes).
            ...(file ? { allocated: file.blocks * 512 } : {}),
          };
        }),
      ),
    };
  }

  /**
   * Adds a disk: a new qcow2 image (encrypted unless asked otherwise) or an existing file. While the
   * VM runs it is hot-plugged into a free PCIe root port (virtio only: SATA and IDE cannot be).
   */
  diskAdd(
    name: string,
    req: { size?: string; path?: string; bus?: DiskSpec['bus']; encrypt?: boolean; readOnly?: boolean },
  ): Promise<VmInfo> {
    return this.withLock(name, 'disk add', async () => {
      const vm = this.get(name);
      const live = isLive(vm);
      if (!req.size === !req.path)
        throw new UserError(
          'give a new disk a size (--size 10G) or an existing image (--path FILE), not both',
        );
      const bus = req.bus ?? 'virtio';
      if (live && bus !== 'virtio') {
        throw conflict(
          `${bus.toUpperCase()} disks cannot be hot-plugged: use --bus virtio, or stop "${name}" first`,
        );
      }
      const ids = new Set(vm.spec.disks.map(diskId));
      let n = 0;
      while (ids.has(`disk${n}`)) n++;
      const id = `disk${n}`;
      const encrypted = !!req.size && req.encrypt !== false;
      let made: string | undefined;
      let disk: DiskSpec;
      if (req.size) {
        const bytes = sizeOf(req.size, 'size');
        made = path.join(vmDir(this.layout, name), `${id}.qcow2`);
        if (await exists(made)) throw conflict(`${made} already exists: remove it or pick another VM`);
        const key = encrypted ? await this.vmKey(vm) : undefined;
        await createQcow2({ file: made, ...(key ? { key } : {}) }, bytes).catch(qemuImgError);
        disk = { id, path: made, format: 'qcow2', bus, encrypted, readOnly: false };
      } else {
        const probed = await withDiskFormats({ disks: [{ path: req.path }] });
        const format = (probed as { disks: { format: 'raw' | 'qcow2' }[] }).disks[0]!.format;
        disk = {
          id,
          path: req.path!,
          format,
          bus,
          encrypted: false,
          readOnly: req.readOnly ?? false,
        };
      }
      const spec = respec(vm.spec, { disks: [...vm.spec.disks, disk] });
      try {
        await checkFiles(spec);
        if (live) await this.hotplugDisk(vm, spec.disks.at(-1)!);
      } catch (e) {
        if (made) await rm(made, { force: true });
        throw e;
      }
      vm.spec = spec;
      await this.store.writeSpec(spec);
      return this.info(name);
    });
  }

  /** The VM's disk key, made on first need; a running QEMU without it gets it as a secret object. */
  private async vmKey(vm: Vm): Promise<string> {
    const has = needsKey(vm.spec);
    const key = has
      ? await this.keystore.keyFor(vm.spec.uuid).catch(keystoreError)
      : await this.keystore.newKey(vm.spec.uuid).catch(keystoreError);
    if (!has && isLive(vm)) {
      const file = runtimeFiles(this.layout, vm.spec.name).key;
      await writeFile(file, key, { mode: 0o600, flag: 'wx' });
      try {
        await vm.qmp.execute('object-add', { 'qom-type': 'secret', id: KEY_SECRET, file, format: 'raw' });
      } finally {
        await rm(file, { force: true });
      }
    }
    return key;
  }

  private async hotplugDisk(vm: Vm, d: DiskSpec): Promise<void> {
    const qmp = vm.qmp!;
    const id = d.id!;
    let bus: string | undefined;
    if (vm.spec.machine === 'q35') {
      const devices = (await qmp.execute<{ devices: PciDevice[] }[]>('query-pci')).flatMap((b) => b.devices);
      const occupied = (port: string) =>
        !!devices.find((dev) => dev.qdev_id === port)?.pci_bridge?.devices?.length;
      bus = Array.from({ length: HOTPLUG_PORTS }, (_, n) => hotplugPort(n)).find((p) => !occupied(p));
      if (!bus) {
        throw conflict(
          `all ${HOTPLUG_PORTS} hot-plug slots of "${vm.spec.name}" are in use: stop it to add more disks`,
        );
      }
    }
    await qmp.execute('blockdev-add', {
      'node-name': id,
      driver: d.format,
      'read-only': d.readOnly,
      file: { driver: 'file', filename: d.path, 'node-name': `${id}-file`, 'read-only': d.readOnly },
      ...(d.encrypted ? { encrypt: { format: 'luks', 'key-secret': KEY_SECRET } } : {}),
    });
    try {
      await qmp.execute('device_add', {
        driver: 'virtio-blk-pci',
        drive: id,
        id: `${id}-dev`,
        ...(bus ? { bus } : {}),
      });
    } catch (e) {
      await qmp.execute('blockdev-del', { 'node-name': id }).catch(() => undefined);
      throw e;
    }
  }

  /** Removes a disk from the VM (its image stays). A running VM's boot disk stays where it is. */
  diskRemove(name: string, id: string): Promise<VmInfo> {
    return this.withLock(name, 'disk remove', async () => {
      const vm = this.get(name);
      const index = diskIndex(vm.spec, id);
      const live = isLive(vm);
      if (live && index === 0) {
        throw conflict(`${id} is the boot disk of running VM "${name}": stop it first`);
      }
      if (live) {
        const d = vm.spec.disks[index]!;
        if (d.bus !== 'virtio')
          throw conflict(`${d.bus.toUpperCase()} disks cannot be unplugged: stop "${name}" first`);
        const gone = vm.qmp!.waitForEvent('DEVICE_DELETED', 30_000, (e) => e.data?.device === `${id}-dev`);
        await vm.qmp!.execute('device_del', { id: `${id}-dev` });
        await gone.catch(() => {
          throw conflict(
            `the guest did not release ${id} within 30 s: it may be in use; try again or stop the VM`,
          );
        });
        await vm.qmp!.execute('blockdev-del', { 'node-name': id });
      }
      vm.spec = { ...vm.spec, disks: vm.spec.disks.filter((_, i) => i !== index) };
      await this.store.writeSpec(vm.spec);
      return this.info(name);
    });
  }

  /** Grows a disk, live through QMP or offline with qemu-img. Shrinking would cut the guest's data: refused. */
  diskResize(name: string, id: string, size: string): Promise<VmInfo> {
    return this.withLock(name, 'disk resize', async () => {
      const vm = this.get(name);
      const index = diskIndex(vm.spec, id);
      const d = vm.spec.disks[index]!;
      const bytes = sizeOf(size, 'size');
      const current = (await imageInfo({ file: d.path, format: d.format }).catch(qemuImgError)).virtualSize;
      if (bytes < current) {
        throw new UserError(
          `${id} is ${formatSize(current)}; shrinking it to ${formatSize(bytes)} would cut off the guest's data: only growing is allowed`,
        );
      }
      if (bytes === current) return this.info(name);
      if (isLive(vm)) {
        await vm.qmp.execute('block_resize', { 'node-name': id, size: bytes });
      } else {
        const key = d.encrypted ? await this.keystore.keyFor(vm.spec.uuid).catch(keystoreError) : undefined;
        await resizeImage({ file: d.path, format: d.format, ...(key ? { key } : {}) }, bytes).catch(
          qemuImgError,
        );
      }
      return this.info(name);
    });
  }

  /** What a snapshot operation works on; the key only when the keystore is open (live ones need none). */
  private async snapshotTarget(vm: Vm, needKey: boolean): Promise<SnapshotTarget> {
    const state = stateFiles(this.layout, vm.spec.name);
    const live = isLive(vm);
    const key =
      needsKey(vm.spec) && (needKey || this.keystore.unlocked) && !live
        ? await this.keystore.keyFor(vm.spec.uuid).catch(keystoreError)
        : undefined;
    return {
      spec: vm.spec,
      dir: vmDir(this.layout, vm.spec.name),
      nvram: state.nvram,
      tpmState: state.tpmState,
      heldMarker: runtimeFiles(this.layout, vm.spec.name).held,
      ...(key ? { key } : {}),
      ...(live ? { qmp: vm.qmp! } : {}),
    };
  }

  async snapshotList(name: string): Promise<SnapshotFile & { tree: string }> {
    const f = await readSnapshots(vmDir(this.layout, this.get(name).spec.name));
    const ready = { ...f, snapshots: f.snapshots.filter((s) => s.state === 'ready') };
    return { ...ready, tree: snapshotTree(ready) };
  }

  snapshotCreate(name: string, snap: string): Promise<Snapshot> {
    return this.withLock(name, 'snapshot', async () =>
      createSnapshot(await this.snapshotTarget(this.get(name), true), snap).catch(qemuImgError),
    );
  }

  snapshotRevert(name: string, snap: string): Promise<VmInfo> {
    return this.withLock(name, 'revert', async () => {
      await revertSnapshot(await this.snapshotTarget(this.get(name), true), snap).catch(qemuImgError);
      return this.info(name);
    });
  }

  snapshotDelete(name: string, snap: string): Promise<void> {
    return this.withLock(name, 'snapshot delete', async () =>
      deleteSnapshot(await this.snapshotTarget(this.get(name), true), snap).catch(qemuImgError),
    );
  }

  /** The CD-ROM drives and their media: what QEMU has inserted while running, else the spec. */
  async mediaList(name: string): Promise<{ drives: DriveMedia[] }> {
    const vm = this.get(name);
    const drives: DriveMedia[] = vm.spec.cdroms.map((c, drive) => ({
      drive,
      role: c.role,
      ...(c.path ? { path: c.path } : {}),
    }));
    if (!isLive(vm)) return { drives };
    const blocks = await vm.qmp.execute<{ qdev?: string; inserted?: { file: string } }[]>('query-block');
    return {
      drives: drives.map(({ path: _spec, ...d }) => {
        const inserted = blocks.find((b) => b.qdev === `cd${d.drive}`)?.inserted?.file;
        return { ...d, ...(inserted ? { path: inserted } : {}), live: true };
      }),
    };
  }

  /** The user-mode NIC a forward goes through: the given one, else the first. */
  private userNic(vm: Vm, index?: number): { index: number; net: Extract<NetSpec, { type: 'user' }> } {
    const i = index ?? vm.spec.nics.findIndex((n) => n.net.type === 'user');
    const net = vm.spec.nics[i]?.net;
    if (net?.type !== 'user') {
      throw new UserError(
        index === undefined
          ? `VM "${vm.spec.name}" has no user-mode NIC to forward ports through (a bridged or private-network guest is reached at its own address)`
          : `NIC ${index} of "${vm.spec.name}" is not on user-mode networking: forwards need one`,
      );
    }
    return { index: i, net };
  }

  /** The NIC's user-mode settings changed: in the spec now; `now` says whether the running VM has it too. */
  private async setUserNet(vm: Vm, index: number, net: Extract<NetSpec, { type: 'user' }>): Promise<void> {
    const nics = vm.spec.nics.map((n, i) => (i === index ? { ...n, net } : n));
    vm.spec = respec(vm.spec, { nics });
    await this.store.writeSpec(vm.spec);
  }

  /**
   * Adds a port forward. QEMU's own user networking takes it at once (HMP hostfwd_add); passt reads
   * its forwards at start, so there it applies from the next start, and the answer says so.
   */
  forwardAdd(name: string, f: ForwardSpec, nicIndex?: number): Promise<ForwardChange> {
    return this.withLock(name, 'forward add', async () => {
      const vm = this.get(name);
      const { index, net } = this.userNic(vm, nicIndex);
      const same = net.forwards.find((x) => x.proto === f.proto && x.hostPort === f.hostPort);
      if (same)
        throw conflict(`host port ${f.hostPort}/${f.proto} is already forwarded (${formatForward(same)})`);
      await checkForwardsFree([f]);
      const wired = isLive(vm) ? vm.nets?.[index] : undefined;
      if (wired?.kind === 'slirp') {
        await this.hmp(vm, `hostfwd_add net${index} ${slirpHostfwd(f)}`);
      }
      await this.setUserNet(vm, index, { ...net, forwards: [...net.forwards, f] });
      return { vm: await this.info(name), applied: wired && wired.kind !== 'slirp' ? 'next-start' : 'now' };
    });
  }

  forwardRemove(
    name: string,
    f: Pick<ForwardSpec, 'proto' | 'hostPort'>,
    nicIndex?: number,
  ): Promise<ForwardChange> {
    return this.withLock(name, 'forward remove', async () => {
      const vm = this.get(name);
      const { index, net } = this.userNic(vm, nicIndex);
      const old = net.forwards.find((x) => x.proto === f.proto && x.hostPort === f.hostPort);
      if (!old) {
        throw new UserError(
          `"${name}" forwards no host port ${f.hostPort}/${f.proto}: see "phyllome net forward list ${name}"`,
          404,
          'not-found',
        );
      }
      const wired = isLive(vm) ? vm.nets?.[index] : undefined;
      if (wired?.kind === 'slirp') {
        await this.hmp(
          vm,
          `hostfwd_remove net${index} ${f.proto}:${old.public ? '' : '127.0.0.1'}:${f.hostPort}`,
          // Gone already is what was asked for.
          /^host forwarding rule for \S+ (removed|not found)$/,
        );
      }
      await this.setUserNet(vm, index, { ...net, forwards: net.forwards.filter((x) => x !== old) });
      return { vm: await this.info(name), applied: wired && wired.kind !== 'slirp' ? 'next-start' : 'now' };
    });
  }

  /** Lets the guest reach the host's loopback services (or not again); from the next start. */
  hostLoopback(name: string, enabled: boolean, nicIndex?: number): Promise<ForwardChange> {
    return this.withLock(name, 'host-loopback', async () => {
      const vm = this.get(name);
      const { index, net } = this.userNic(vm, nicIndex);
      await this.setUserNet(vm, index, { ...net, hostLoopback: enabled });
      return { vm: await this.info(name), applied: isLive(vm) ? 'next-start' : 'now' };
    });
  }

  /** Changes a stopped VM's CPUs, memory or window; the spec's own rules check the values. */
  changeSettings(
    name: string,
    change: { cpus?: number | undefined; memory?: string | undefined; window?: boolean | undefined },
  ): Promise<VmInfo> {
    return this.withLock(name, 'settings', async () => {
      const vm = this.get(name);
      const { window, ...resources } = change;
      if (vm.state !== 'stopped') {
        throw conflict(
          window === undefined
            ? `stop VM "${name}" to change its CPUs or memory`
            : `stop VM "${name}" to turn its window ${window ? 'on' : 'off'}: QEMU opens its display only at start`,
        );
      }
      const graphics =
        window === undefined
          ? vm.spec.graphics
          : window
            ? withWindow(vm.spec.graphics)
            : offScreen(vm.spec.graphics, await renderNodes());
      const spec = respec(vm.spec, { ...resources, graphics });
      await this.store.writeSpec(spec);
      vm.spec = spec;
      return this.info(name);
    });
  }

  /**
   * HMP through QMP, for the few commands QMP lacks. HMP answers in text: anything but what `ok`
   * accepts (silence, by default) is a refusal.
   */
  private async hmp(vm: Vm, command: string, ok = /^$/): Promise<void> {
    const out = (await vm.qmp!.execute<string>('human-monitor-command', { 'command-line': command })).trim();
    if (!ok.test(out)) throw new UserError(`QEMU refused "${command}": ${out}`);
  }

  /** The VM's serial console, for any number of viewers. */
  console(name: string): SerialHub {
    const vm = this.running(name, ['running', 'paused', 'stopping']);
    if (!vm.serial || vm.serial.closed) throw conflict(`VM "${name}" has no serial console connected`);
    return vm.serial;
  }

  /** The Unix socket QEMU serves the VM's screen on (VNC); only the daemon bridges it to browsers. */
  vncSocket(name: string): string {
    const vm = this.running(name, ['running', 'paused', 'stopping']);
    if (!hasScreen(vm.spec)) throw conflict(`VM "${name}" has no screen (graphics none)`);
    return runtimeFiles(this.layout, name).vnc;
  }

  /** What the stats sampler reads of a running or paused VM: its QEMU process, QMP and NIC wiring. */
  statsTarget(name: string): StatsTarget {
    const vm = this.running(name, ['running', 'paused']);
    return {
      pid: vm.pid!,
      qmp: vm.qmp!,
      nets: vm.nets ?? [],
      configuredBytes: parseSize(vm.spec.memory),
      balloon: vm.spec.balloon,
    };
  }

  /** Detach from every QEMU without stopping any: VMs keep running for the next daemon. */
  detachAll(): void {
    for (const vm of this.vms.values()) {
      const qmp = vm.qmp;
      vm.qmp = undefined;
      qmp?.close();
      vm.serial?.close();
    }
  }
}

const CLOUD_INIT_SEED = 'cloud-init.iso';

interface NewDisk {
  file: string;
  bytes: number;
  encrypted: boolean;
}

/**
 * What create makes inside the VM's folder: disks given as `{size}` become new qcow2 images
 * (`disk0.qcow2`, …), and `cloudInit` settings a NoCloud seed ISO. Both leave the spec input.
 */
function madeAtCreate(
  input: unknown,
  dirOf: (name: string) => string,
): { input: unknown; newDisks: NewDisk[]; cloudInit?: CloudInit; seed?: string } {
  if (typeof input !== 'object' || input === null) return { input, newDisks: [] };
  const { cloudInit, ...rest } = input as { cloudInit?: CloudInit; cdroms?: unknown };
  const { name, disks } = rest as { name?: unknown; disks?: unknown };
  if (typeof name !== 'string') return { input: rest, newDisks: [] };
  let withCloudInit = {};
  if (cloudInit) {
    // The seed is attached as a CD-ROM unless the request (a plan) already names it.
    const seed = path.join(dirOf(name), CLOUD_INIT_SEED);
    const cdroms = Array.isArray(rest.cdroms) ? (rest.cdroms as { path?: unknown }[]) : [];
    if (!cdroms.some((c) => c.path === seed)) rest.cdroms = [...cdroms, { path: seed, role: 'cloud-init' }];
    withCloudInit = { cloudInit, seed };
  }
  if (!Array.isArray(disks)) return { input: rest, newDisks: [], ...withCloudInit };
  const newDisks: NewDisk[] = [];
  const mapped = disks.map((d: unknown, i) => {
    if (typeof d !== 'object' || d === null || !('size' in d) || 'path' in d) return d;
    // New disks are encrypted unless asked otherwise.
    const { size, encrypt = true, ...rest } = d as { size: unknown; encrypt?: boolean };
    const bytes = sizeOf(size as string, `disks[${i}].size`);
    const file = path.join(dirOf(name), `disk${i}.qcow2`);
    newDisks.push({ file, bytes, encrypted: encrypt });
    return { ...rest, id: `disk${i}`, path: file, format: 'qcow2', encrypted: encrypt };
  });
  return { input: { ...rest, disks: mapped }, newDisks, ...withCloudInit };
}

/** Keystore refusals are the user's to fix: locked (423, unlock it) or a missing key. */
export const keystoreError = (e: unknown): never => {
  if (e instanceof KeystoreError) {
    throw new UserError(e.message, e.reason === 'locked' ? 423 : 400, e.reason);
  }
  throw e;
};

/** Whether passt is installed, looked up on first need and at most once (per list, not per VM). */
function passtLookup(): () => Promise<boolean> {
  let found: Promise<boolean> | undefined;
  return () => (found ??= findPasst().then(Boolean));
}

/** QEMU runs and answers QMP: changes go to it as well as to the spec. */
const isLive = (vm: Vm): vm is Vm & { qmp: QmpClient } => !!vm.qmp && vm.state !== 'stopped';

/** The spec with these user-level changes, checked like a new one; its identity stays. */
function respec(spec: VmSpec, changes: Partial<VmSpecInput>): VmSpec {
  const { uuid, createdAt, schemaVersion, ...input } = spec;
  return { ...parseSpecInput({ ...input, ...changes }), uuid, createdAt, schemaVersion };
}

/** Where the disk with this id is in the spec; a clear 404 when there is none. */
function diskIndex(spec: VmSpec, id: string): number {
  const index = spec.disks.findIndex((d, i) => diskId(d, i) === id);
  if (index < 0) {
    throw new UserError(
      `"${spec.name}" has no disk ${id}: see "phyllome disk list ${spec.name}"`,
      404,
      'not-found',
    );
  }
  return index;
}

/** The lock key linked clones and base cleanup share (no VM name has a slash). */
const BASES_LOCK = '/bases';
const STORAGE_LOCK = '/storage';

/** The keystore entry of a VM's TPM state key: separate from its disk key, so a clone can share it. */
const tpmKeyId = (uuid: string) => `${uuid}/tpm`;

const qemuImgError = userErrorsFrom(QemuImgError);

function sizeOf(value: string, what: string): number {
  try {
    return parseSize(value);
  } catch (e) {
    if (e instanceof SizeError) throw new UserError(`${what}: ${e.message}`);
    throw e;
  }
}

interface PciDevice {
  qdev_id?: string;
  pci_bridge?: { devices?: PciDevice[] };
}

/** A network change: `now` when the VM (running or not) has it, `next-start` when the running VM gets it at its next start. */
export interface ForwardChange {
  vm: VmInfo;
  applied: 'now' | 'next-start';
}

export type DiskInfo = DiskSpec & { id: string; virtualSize?: number; allocated?: number };

/** Every file a spec names must exist before QEMU sees it (or be made by create), so the error names the file. */
async function checkFiles(spec: VmSpec, toBeMade = new Set<string>()): Promise<void> {
  const files: [string, string, number][] = [];
  if (spec.firmware.type === 'uefi') {
    files.push(['firmware.code', spec.firmware.code, constants.R_OK]);
    files.push(['firmware.varsTemplate', spec.firmware.varsTemplate, constants.R_OK]);
  }
  spec.cdroms.forEach((c, i) => {
    if (c.path) files.push([`cdroms[${i}].path`, c.path, constants.R_OK]);
  });
  if (spec.boot) {
    files.push(['boot.kernel', spec.boot.kernel, constants.R_OK]);
    if (spec.boot.initrd) files.push(['boot.initrd', spec.boot.initrd, constants.R_OK]);
  }
  spec.disks.forEach((d, i) =>
    files.push([`disks[${i}].path`, d.path, d.readOnly ? constants.R_OK : constants.R_OK | constants.W_OK]),
  );
  for (const [where, file, mode] of files.filter(([, f]) => !toBeMade.has(f))) {
    try {
      await access(file, mode);
    } catch {
      throw new UserError(`${where}: ${file} does not exist or is not accessible: check the path`);
    }
  }
}
