import { pickFirmware, type FirmwareDescriptor } from '../host/firmware.js';
import { formatSize, parseSize } from '../spec/size.js';
import type { Accel } from '../qemu/cmdline.js';
import { chooseUserBackend } from '../net/wiring.js';
import {
  hostDeviceAddresses,
  type CdromSpec,
  type FirmwareChoice,
  type GraphicsChoice,
  type GraphicsSpec,
  type NicSpec,
  type VmSpecInput,
} from '../spec/schema.js';
import type { GuestFamily, Intent, Strategy } from './graphics-plan.js';
import type { OsEntry } from './osinfo.js';

/** What the host offers the planner; gathered by the daemon, passed in so the planner stays pure. */
export interface HostOffer {
  accel: Accel;
  /** Ranked graphics strategies for this guest family and intent (graphics-plan.ts). */
  graphics: Strategy[];
  firmware: FirmwareDescriptor[];
  /** The virtio-win driver ISO, when the host has one. */
  virtioWin?: string;
  memoryBytes?: number;
  cpus?: number;
  /** Whether passt is installed, for user-mode networking (net/wiring.ts). */
  passt?: boolean;
}

/** What an expert may force; anything unset is planned. */
export interface Overrides {
  memory?: string;
  cpus?: number;
  diskSize?: string;
  machine?: 'q35' | 'pc';
  firmware?: 'bios' | 'uefi' | 'uefi-secure';
  tpm?: boolean;
  diskBus?: 'virtio' | 'sata' | 'ide';
  nic?: NicSpec['model'] | 'none';
  input?: 'ps2' | 'usb-tablet' | 'virtio-tablet';
  sound?: 'none' | 'ich9-intel-hda' | 'ac97';
  graphics?: GraphicsSpec['device'];
  /** Hand this host GPU (a PCI address, or an SR-IOV PF's or mdev parent's) to the guest. */
  gpu?: string;
}

export interface PlanRequest {
  name: string;
  os: OsEntry;
  intent: Intent;
  /** The install medium, attached as the first CD-ROM. */
  iso?: string;
  /** Existing disks to use instead of a new one. */
  disks?: { path: string; readOnly?: boolean }[];
  boot?: VmSpecInput['boot'];
  /** A cloud-init NoCloud seed (made by the daemon), attached as a CD-ROM. */
  cloudInitSeed?: string;
  /** A fresh locally administered MAC for the NIC (the caller draws it, so the planner stays pure). */
  mac: string;
  overrides?: Overrides;
}

/** One decision and why, shown by `create --dry-run` and the web UI's review page. */
export interface Choice {
  item: string;
  value: string;
  reason: string;
}

export interface GuestPlan {
  /** A spec input; a disk given as `{size}` is a new qcow2 image the daemon makes. */
  spec: Record<string, unknown>;
  choices: Choice[];
  notes: string[];
}

const GiB = 2 ** 30;

/** osinfo-db names devices by PCI id; virtio ids come in a legacy and a modern (1.0) flavour. */
const VIRTIO = {
  blk: ['1af4/1001', '1af4/1042'],
  net: ['1af4/1000', '1af4/1041'],
  balloon: ['1af4/1002', '1af4/1045'],
  rng: ['1af4/1005', '1af4/1044'],
  input: ['1af4/1052'],
  gpu: ['1af4/1050'],
} as const;

const drives = (os: OsEntry, ids: readonly string[]) =>
  ids.some((id) => os.devices.includes(`http://pcisig.com/pci/${id}`));

export function guestFamily(os: OsEntry): GuestFamily {
  const f = os.family ?? '';
  if (['winnt', 'win9x', 'win16', 'msdos'].includes(f)) return 'windows';
  if (f === 'darwin') return 'macos';
  if (f.endsWith('bsd')) return 'bsd';
  return 'linux';
}

const isWindows = (os: OsEntry) => guestFamily(os) === 'windows';
const released = (os: OsEntry) => os.releaseDate ?? '9999';
/** Windows 8 / Server 2012 and later boot UEFI with Secure Boot; osinfo-db says so only for Windows 11. */
const modernWindows = (os: OsEntry) => os.family === 'winnt' && released(os) >= '2012-08';
const isWindows11 = (os: OsEntry) =>
  os.family === 'winnt' && os.firmware.efi === true && os.firmware.bios === false;

/**
 * Pure: the VM for an OS on this host, every device with its reason. Windows 11's requirements (UEFI,
 * Secure Boot with Microsoft keys, TPM 2.0, 4 GiB, 2 vCPUs, 64 GiB) are met whatever the host has.
 */
export function planGuest(req: PlanRequest, host: HostOffer): GuestPlan {
  const { os } = req;
  const o = req.overrides ?? {};
  /** Which figure a resource came from: the OS's recommendation, its minimum, or our default. */
  const source = (value: number, recommended?: number, minimum?: number, fallback = '') =>
    recommended !== undefined && value === recommended
      ? `${os.name}'s recommendation`
      : minimum !== undefined && value === minimum
        ? `${os.name}'s minimum`
        : fallback;
  const choices: Choice[] = [];
  const notes: string[] = [];
  const choose = (item: string, value: string, reason: string) => choices.push({ item, value, reason });
  const win = isWindows(os);
  // virtio-win brings Windows drivers for every virtio device Phyllome uses.
  const virtioWin = win && host.virtioWin ? host.virtioWin : undefined;
  const hasVirtio = (ids: readonly string[]) => drives(os, ids) || !!virtioWin;
  const virtioWhy = (what: string) =>
    drives(os, VIRTIO.blk) || !virtioWin
      ? `${os.name} has a ${what} driver`
      : `the virtio-win ISO attached gives ${os.name} its ${what} driver`;

  // Machine: q35 (PCIe, AHCI) unless the OS predates AHCI drivers.
  const oldOs = released(os) < '2006-11' || ['win9x', 'win16', 'msdos'].includes(os.family ?? '');
  const machine = o.machine ?? (oldOs ? 'pc' : 'q35');
  choose(
    'machine',
    machine,
    o.machine
      ? 'chosen by you'
      : oldOs
        ? `${os.name} predates AHCI and PCIe drivers: i440fx with IDE`
        : 'q35: PCI Express and AHCI, what every OS since 2007 expects',
  );

  // Firmware.
  let fwWant: 'bios' | 'uefi' | 'uefi-secure';
  let fwWhy: string;
  if (o.firmware) {
    fwWant = o.firmware;
    fwWhy = 'chosen by you';
  } else if (isWindows11(os)) {
    fwWant = 'uefi-secure';
    fwWhy = `${os.name} requires UEFI with Secure Boot; Microsoft's keys are enrolled so its boot loader is trusted`;
  } else if (modernWindows(os) && machine === 'q35') {
    fwWant = 'uefi-secure';
    fwWhy = `${os.name} boots UEFI with Secure Boot (Microsoft keys enrolled), as on a new PC`;
  } else if (os.firmware.efi === true && !win && machine === 'q35') {
    fwWant = 'uefi';
    fwWhy = `${os.name} boots UEFI; without Secure Boot so unsigned kernels and modules (DKMS, NVIDIA) still load`;
  } else {
    fwWant = 'bios';
    fwWhy =
      machine === 'pc'
        ? 'the i440fx machine gets BIOS, which old OSes expect'
        : `osinfo-db does not list UEFI support for ${os.name}: BIOS`;
  }
  let firmware: FirmwareChoice = { type: 'bios' };
  if (fwWant !== 'bios') {
    firmware = pickFirmware(host.firmware, { machine, secureBoot: fwWant === 'uefi-secure' });
  }
  choose(
    'firmware',
    firmware.type === 'bios'
      ? 'BIOS (SeaBIOS)'
      : `UEFI${firmware.secureBoot ? ' with Secure Boot' : ''}${firmware.enrolledKeys ? ', Microsoft keys enrolled' : ''} (${firmware.code})`,
    fwWhy,
  );

  const tpm = o.tpm ?? (isWindows11(os) || (os.family === 'winnt' && released(os) >= '2015-07'));
  choose(
    'tpm',
    tpm ? 'TPM 2.0 (swtpm)' : 'none',
    o.tpm !== undefined
      ? 'chosen by you'
      : isWindows11(os)
        ? `${os.name} requires TPM 2.0; swtpm emulates one, so the host's own TPM does not matter`
        : tpm
          ? 'BitLocker and Windows Hello use it'
          : `${os.name} does not need one (add with --tpm)`,
  );

  // Resources: the OS's recommendation, at least its minimum, whatever the host has.
  const min = os.minimum;
  const rec = os.recommended;
  const defaultMemory = req.intent === 'server' ? 1 * GiB : 2 * GiB;
  // An inherited recommendation can be below the OS's own minimum (Windows 11 inherits Windows 10's).
  let memory = Math.max(rec.ramBytes ?? defaultMemory, min.ramBytes ?? 0);
  let memoryWhy = source(memory, rec.ramBytes, min.ramBytes, `enough for a ${req.intent} guest`);
  if (host.memoryBytes && memory > host.memoryBytes / 2 && memory > (min.ramBytes ?? 0)) {
    memory = Math.max(min.ramBytes ?? 0, Math.floor(host.memoryBytes / 2 / 2 ** 20) * 2 ** 20);
    memoryWhy = `half of the host's memory, at least ${os.name}'s minimum`;
  }
  if (o.memory) {
    memory = parseSize(o.memory);
    memoryWhy = 'chosen by you';
  }
  if (min.ramBytes && memory < min.ramBytes) {
    notes.push(
      `${formatSize(memory)} of memory is below ${os.name}'s minimum of ${formatSize(min.ramBytes)}`,
    );
  }
  choose('memory', formatSize(memory), memoryWhy);

  let cpus = Math.max(rec.cpus ?? 2, min.cpus ?? 1);
  let cpusWhy = source(cpus, rec.cpus, min.cpus, 'two: one for the guest, one for its devices');
  if (host.cpus && cpus > host.cpus && host.cpus >= (min.cpus ?? 1)) {
    cpus = host.cpus;
    cpusWhy = "no more than the host's CPUs";
  }
  if (o.cpus) {
    cpus = o.cpus;
    cpusWhy = 'chosen by you';
  }
  if (min.cpus && cpus < min.cpus) notes.push(`${cpus} vCPUs is below ${os.name}'s minimum of ${min.cpus}`);
  choose(
    'cpu',
    `${cpus} × ${host.accel === 'kvm' ? 'host' : 'max'} (1 socket)`,
    `${cpusWhy}; ${host.accel === 'kvm' ? "KVM passes the host CPU's features through" : 'KVM is unusable here, so TCG emulates the most capable CPU model'}`,
  );

  // Disks.
  const ata = machine === 'q35' ? 'sata' : 'ide';
  const bus = o.diskBus ?? (hasVirtio(VIRTIO.blk) ? 'virtio' : ata);
  choose(
    'disk bus',
    bus,
    o.diskBus
      ? 'chosen by you'
      : bus === 'virtio'
        ? `virtio-blk is the fastest; ${virtioWhy('virtio-blk')}`
        : `${os.name} has no virtio-blk driver${win ? ' and no virtio-win ISO is on this host' : ''}: ${ata.toUpperCase()} works without one`,
  );
  let disks: Record<string, unknown>[];
  if (req.disks?.length) {
    disks = req.disks.map((d) => ({ path: d.path, readOnly: d.readOnly ?? false, bus }));
    choose('disks', req.disks.map((d) => d.path).join(', '), 'given by you');
  } else {
    const planned = Math.max(rec.storageBytes ?? 0, min.storageBytes ?? 0, 20 * GiB);
    const size = o.diskSize ? parseSize(o.diskSize) : planned;
    if (min.storageBytes && size < min.storageBytes) {
      notes.push(
        `a ${formatSize(size)} disk is below ${os.name}'s minimum of ${formatSize(min.storageBytes)}`,
      );
    }
    disks = [{ size: formatSize(size), bus }];
    choose(
      'disks',
      `new ${formatSize(size)} qcow2`,
      o.diskSize
        ? 'chosen by you'
        : `${source(size, rec.storageBytes, min.storageBytes, 'room for an OS and applications')}; qcow2 takes only what is written`,
    );
  }

  const cdroms: CdromSpec[] = [];
  if (req.iso) cdroms.push({ path: req.iso, role: 'install' });
  if (virtioWin) cdroms.push({ path: virtioWin, role: 'drivers' });
  if (req.cloudInitSeed) cdroms.push({ path: req.cloudInitSeed, role: 'cloud-init' });
  if (cdroms.length) {
    choose(
      'media',
      cdroms.map((c) => `${c.role}: ${c.path}`).join('; '),
      [
        req.iso ? 'the installer boots first, then the disk' : '',
        virtioWin ? 'virtio-win carries the Windows drivers for the virtio devices' : '',
        req.cloudInitSeed ? 'cloud-init reads the user, keys and hostname from the NoCloud seed' : '',
      ]
        .filter(Boolean)
        .join('; '),
    );
  } else if (win) {
    notes.push(
      'no virtio-win ISO on this host (/usr/share/virtio-win/virtio-win.iso): Windows gets SATA and e1000e, which are slower',
    );
  }

  // NIC.
  const nicModel: NicSpec['model'] | 'none' =
    o.nic ??
    (hasVirtio(VIRTIO.net)
      ? 'virtio-net-pci'
      : drives(os, ['8086/10d3']) || (os.family === 'winnt' && released(os) >= '2012-08')
        ? 'e1000e'
        : 'e1000');
  const nics = nicModel === 'none' ? [] : [{ model: nicModel, mac: req.mac }];
  const userNet = chooseUserBackend({ type: 'user', forwards: [], hostLoopback: false }, !!host.passt);
  choose(
    'network',
    nicModel === 'none'
      ? 'none'
      : `${nicModel} on user-mode networking (${userNet.backend === 'passt' ? 'passt' : 'QEMU’s built-in'}), MAC ${req.mac}`,
    `${
      o.nic
        ? 'chosen by you'
        : nicModel === 'virtio-net-pci'
          ? `virtio-net is the fastest; ${virtioWhy('virtio-net')}`
          : `${os.name} has a driver for the Intel ${nicModel === 'e1000e' ? '82574L' : '82540EM'} built in`
    }; ${userNet.reason}`,
  );

  // Input.
  const input =
    o.input ?? (drives(os, VIRTIO.input) ? 'virtio-tablet' : machine === 'q35' ? 'usb-tablet' : 'ps2');
  choose(
    'input',
    input,
    o.input
      ? 'chosen by you'
      : input === 'ps2'
        ? 'the i440fx machine has no USB 3 controller; PS/2 mouse and keyboard'
        : `an absolute pointer follows the console's mouse without grabbing it; ${input === 'virtio-tablet' ? `${os.name} drives virtio-input` : 'a USB tablet needs no extra driver'}`,
  );

  const sound = o.sound ?? (req.intent === 'server' ? 'none' : machine === 'q35' ? 'ich9-intel-hda' : 'ac97');
  choose(
    'sound',
    sound,
    o.sound
      ? 'chosen by you'
      : sound === 'none'
        ? 'a server needs no sound card'
        : sound === 'ac97'
          ? 'AC97: old OSes have a driver for it'
          : 'Intel HD Audio: every current OS has a driver',
  );

  const rng = hasVirtio(VIRTIO.rng);
  choose(
    'rng',
    rng ? 'virtio-rng' : 'none',
    rng ? 'the guest seeds its entropy from the host at boot' : `${os.name} has no virtio-rng driver`,
  );
  const balloon = hasVirtio(VIRTIO.balloon) && req.intent !== 'gaming';
  choose(
    'balloon',
    balloon ? 'virtio-balloon' : 'none',
    balloon
      ? 'lets the host reclaim memory the guest does not use, and reports guest memory statistics'
      : req.intent === 'gaming'
        ? 'memory stays fixed for a gaming guest: reclaiming it causes stutter'
        : `${os.name} has no balloon driver`,
  );

  // Graphics: the best strategy this host allows without taking host hardware, unless a GPU is named.
  let graphics: GraphicsChoice;
  if (o.gpu && o.graphics) {
    throw new PlanError('--gpu chooses the graphics itself: leave out --graphics');
  }
  if (o.gpu) {
    const picked = pickGpu(host.graphics, o.gpu);
    graphics = picked.graphics;
    choose('graphics', `${picked.kind}: ${picked.devices!.join(', ')}`, `chosen by you: ${picked.why}`);
    notes.push(...(picked.caveats ?? []));
  } else if (o.graphics) {
    // The planner's own strategy for that device brings what it needs here: a render node, or a window.
    graphics = host.graphics.find((s) => s.graphics.device === o.graphics && !s.graphics.hostDevices)
      ?.graphics ?? { device: o.graphics };
    choose('graphics', o.graphics, 'chosen by you');
  } else if (machine === 'pc') {
    graphics = { device: 'vga' };
    choose('graphics', 'vga', 'standard VGA: every OS drives it');
  } else {
    const usable = host.graphics.find((s) => !s.graphics.hostDevices);
    const better = host.graphics.filter(
      (s) => s.graphics.hostDevices && host.graphics.indexOf(s) < host.graphics.indexOf(usable!),
    );
    graphics = usable?.graphics ?? { device: 'virtio-vga' };
    choose(
      'graphics',
      `${usable?.kind ?? 'virtio-2d'}: ${graphics.device}`,
      usable?.why ?? 'works with every guest',
    );
    for (const s of better) {
      notes.push(
        `${s.kind} (${s.devices!.join(', ')}) would be better on this host: create with --gpu ${s.graphics.hostDevices![0]!.address} to hand it over`,
      );
    }
  }

  choose(
    'hyperv',
    win ? (host.accel === 'kvm' ? 'on' : 'on (applied under KVM; TCG here cannot use them)') : 'off',
    win ? 'Hyper-V enlightenments make Windows faster and keep its clock steady' : 'only Windows uses them',
  );
  const clock = win ? 'localtime' : 'utc';
  choose(
    'clock',
    clock,
    win ? 'Windows keeps the hardware clock in local time' : 'the hardware clock in UTC',
  );

  const spec: Record<string, unknown> = {
    name: req.name,
    os: os.shortId,
    memory: formatSize(memory),
    cpus,
    machine,
    firmware,
    tpm,
    hyperv: win,
    clock,
    disks,
    cdroms,
    nics,
    input,
    sound,
    rng,
    balloon,
    graphics,
    ...(req.boot ? { boot: req.boot } : {}),
  };
  return { spec, choices, notes };
}

export class PlanError extends Error {}

/**
 * The hardware strategy that hands over the named GPU (any address it takes, or an mdev's parent): the
 * one that leaves the host its display when there is a choice (GVT-g before single-GPU passthrough).
 */
function pickGpu(plan: Strategy[], address: string): Strategy {
  const hardware = plan.filter((s) => s.graphics.hostDevices);
  const naming = hardware.filter((s) =>
    s.graphics.hostDevices!.some((d) => hostDeviceAddresses(d).includes(address)),
  );
  const picked = naming.find((s) => !s.caveats) ?? naming[0];
  if (picked) return picked;
  const offered = hardware.map((s) => s.graphics.hostDevices![0]!.address);
  throw new PlanError(
    `--gpu ${address}: this host offers no way to hand that GPU to this guest (${offered.length ? `it can hand over ${offered.join(', ')}` : 'it can hand over none'}); "phyllome host check" says why`,
  );
}
