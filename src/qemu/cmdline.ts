import {
  diskId,
  hostDeviceAddresses,
  memoryBytes,
  type CdromSpec,
  type DiskSpec,
  type HostDeviceSpec,
  type VmSpec,
} from '../spec/schema.js';
import { slirpHostfwd, type NicWiring } from '../net/wiring.js';
import { escapeOptValue, opts } from './opts.js';
import { QGA_CHARDEV, QGA_PORT_NAME } from './qga.js';

export type Accel = 'kvm' | 'tcg';

/** Where a running VM's runtime files live; see daemon/paths.ts. */
export interface RuntimeFiles {
  qmp: string;
  serial: string;
  pidfile: string;
  /** VNC on a Unix socket: the daemon bridges it to the browser (QEMU 7.2 serves WebSocket on TCP only). */
  vnc: string;
  /** swtpm's control socket. */
  tpm: string;
  /** The VM's disk key (0600), present only while QEMU starts. */
  key: string;
  /** The guest agent's channel (virtio-serial), served by QEMU. */
  qga: string;
}

/** Per-VM state files QEMU opens, kept in the VM's folder. */
export interface StateFiles {
  /** The VM's own UEFI variable store (qcow2), copied from the firmware's template at create time. */
  nvram: string;
}

/** What the installed QEMU binary can do, from host probing. */
export interface QemuCaps {
  sandbox: boolean;
}

export interface LaunchPlan {
  spec: VmSpec;
  files: RuntimeFiles;
  state: StateFiles;
  accel: Accel;
  caps: QemuCaps;
  /** How each of spec.nics reaches its network (net/wiring.ts). */
  nets: NicWiring[];
  /** The guest's state arrives by live migration (migrate-incoming over QMP) instead of a boot. */
  incoming?: boolean;
  /**
   * The bases under encrypted disks that are overlays (an encrypted linked clone's), nearest first,
   * by disk id: QEMU opens a base on its own only without a key, so each gets a node with the key.
   */
  backings?: Record<string, string[]>;
}

/** Blob resources (and so venus and native contexts) map guest RAM into the host renderer. */
const sharedMemory = (spec: VmSpec): boolean => (spec.graphics.features?.length ?? 0) > 0;

/** The enlightenments libvirt and virt-manager give Windows guests. */
const HYPERV = {
  hv_relaxed: 'on',
  hv_vapic: 'on',
  hv_spinlocks: '0x1fff',
  hv_vpindex: 'on',
  hv_runtime: 'on',
  hv_synic: 'on',
  hv_stimer: 'on',
  hv_time: 'on',
  hv_frequencies: 'on',
  hv_reset: 'on',
};

/** Each group of arguments comes from one small function, like Incus' QEMU config templates. */
const base = ({ spec, accel }: LaunchPlan): string[] => {
  const memory = `${Math.floor(memoryBytes(spec) / 2 ** 20)}M`;
  const uefi = spec.firmware.type === 'uefi' ? spec.firmware : undefined;
  return [
    '-name',
    opts(undefined, { guest: spec.name, 'debug-threads': true }),
    '-uuid',
    spec.uuid,
    '-nodefaults',
    '-no-user-config',
    '-machine',
    opts(spec.machine, {
      accel,
      'memory-backend': sharedMemory(spec) ? 'mem' : undefined,
      smm: uefi?.smm ? 'on' : undefined,
      pflash0: uefi ? 'fw-code' : undefined,
      pflash1: uefi ? NVRAM_NODE : undefined,
    }),
    ...(sharedMemory(spec)
      ? [
          '-object',
          opts('memory-backend-memfd', {
            id: 'mem',
            size: memory,
            share: true,
          }),
        ]
      : []),
    '-cpu',
    // Hyper-V enlightenments are KVM's: TCG refuses some of them (VP_INDEX).
    opts(accel === 'kvm' ? 'host' : 'max', spec.hyperv && accel === 'kvm' ? HYPERV : {}),
    '-m',
    memory,
    // One socket: Windows client editions use at most two.
    '-smp',
    opts(String(spec.cpus), { sockets: 1, cores: spec.cpus, threads: 1 }),
    '-rtc',
    opts(undefined, { base: spec.clock, driftfix: spec.clock === 'localtime' ? 'slew' : undefined }),
    // Paused until the daemon has attached to QMP, so no event is missed.
    '-S',
  ];
};

/** `defer`: the daemon sets TLS and the address over QMP first, then starts listening (migrate-incoming). */
const incoming = ({ incoming }: LaunchPlan): string[] => (incoming ? ['-incoming', 'defer'] : []);

/** A mediated device that shows its own screen (GVT-g's dmabuf): the VM's console, drawn through GL. */
const mdevScreen = (spec: VmSpec): boolean =>
  !!spec.graphics.hostDevices?.some((d) => d.kind === 'mdev' && d.display);

/** Whether the VM has a screen for the VNC console. */
export const hasScreen = (spec: VmSpec): boolean => spec.graphics.device !== 'none' || mdevScreen(spec);

/**
 * GL devices need a GL-capable display: egl-headless renders off-screen (`-display none` refuses
 * them), a window renders on its screen's GPU. Closing the window must not end the VM
 * (window-close=off): the daemon owns its life.
 */
const display = (spec: VmSpec, gl: boolean): string[] => [
  '-display',
  spec.graphics.window
    ? opts('gtk', { gl: gl ? 'on' : 'off', 'window-close': 'off' })
    : gl
      ? opts('egl-headless', { rendernode: spec.graphics.renderNode })
      : 'none',
];

/**
 * QEMU's environment. A window's GTK would start the accessibility bus (at-spi) through D-Bus
 * autolaunch, a process the sandbox forbids (spawn=deny kills QEMU): the bridge stays off.
 */
export const qemuEnv = (spec: VmSpec, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv =>
  spec.graphics.window ? { ...env, NO_AT_BRIDGE: '1' } : env;

const graphics = ({ spec, files }: LaunchPlan): string[] => {
  const { device, features = [] } = spec.graphics;
  // The screen is served over VNC; with a GL display it shows the GL-rendered frames.
  const vnc = ['-vnc', `unix:${escapeOptValue(files.vnc)}`];
  if (device === 'none') return mdevScreen(spec) ? [...display(spec, true), ...vnc] : ['-display', 'none'];
  if (device === 'vga' || device === 'virtio-vga')
    return [
      '-device',
      opts(device === 'vga' ? 'VGA' : device, { id: 'gpu0' }),
      ...display(spec, false),
      ...vnc,
    ];
  const flags = Object.fromEntries(features.map((f) => [f, true]));
  return [
    '-device',
    opts(device, { id: 'gpu0', ...flags, ...(features.length ? { hostmem: '4G' } : {}) }),
    ...display(spec, true),
    ...vnc,
  ];
};

const sandbox = ({ caps }: LaunchPlan): string[] =>
  caps.sandbox
    ? [
        '-sandbox',
        opts('on', { obsolete: 'deny', elevateprivileges: 'deny', spawn: 'deny', resourcecontrol: 'deny' }),
      ]
    : [];

const monitor = ({ files }: LaunchPlan): string[] => [
  '-chardev',
  opts('socket', { id: 'qmp', path: files.qmp, server: true, wait: false }),
  '-mon',
  opts(undefined, { chardev: 'qmp', mode: 'control' }),
  '-pidfile',
  files.pidfile,
];

const serial = ({ files }: LaunchPlan): string[] => [
  '-chardev',
  // No QEMU logfile: QEMU drops output while no client is connected, so the daemon logs it instead.
  opts('socket', { id: 'serial0', path: files.serial, server: true, wait: false }),
  '-serial',
  'chardev:serial0',
];

/** A channel for the QEMU guest agent, as virt-manager adds: the guest's addresses come through it. */
const guestAgent = ({ files }: LaunchPlan): string[] => [
  '-device',
  opts('virtio-serial-pci', { id: 'vser0' }),
  '-chardev',
  opts('socket', { id: QGA_CHARDEV, path: files.qga, server: true, wait: false }),
  '-device',
  opts('virtserialport', { bus: 'vser0.0', chardev: QGA_CHARDEV, name: QGA_PORT_NAME }),
];

// -kernel/-initrd/-append take their argument verbatim (not QemuOpts), so no escaping applies.
const boot = ({ spec }: LaunchPlan): string[] => {
  if (!spec.boot) return [];
  const args = ['-kernel', spec.boot.kernel];
  if (spec.boot.initrd) args.push('-initrd', spec.boot.initrd);
  if (spec.boot.append) args.push('-append', spec.boot.append);
  return args;
};

/** A file node and a format node on top: QMP and snapshots address the format node by its name. */
const blockdev = (
  node: string,
  file: string,
  format: string,
  readOnly: boolean,
  extra: Record<string, string | number | boolean | undefined> = {},
): string[] => [
  '-blockdev',
  opts(undefined, { driver: 'file', filename: file, 'node-name': `${node}-file`, 'read-only': readOnly }),
  '-blockdev',
  opts(undefined, {
    driver: format,
    file: `${node}-file`,
    'node-name': node,
    'read-only': readOnly,
    ...extra,
  }),
];

/** The UEFI variable store's node name, as snapshots and migrations address it. */
export const NVRAM_NODE = 'fw-vars';

/** The VM's key, as QEMU knows it: a secret object its encrypted images name. */
export const KEY_SECRET = 'vmkey';
const luks = { 'encrypt.format': 'luks', 'encrypt.key-secret': KEY_SECRET };

/**
 * UEFI: the code is read-only, the variables are the VM's own qcow2 copy. Secure Boot firmware must be
 * writable only from SMM, or the guest OS could rewrite the key databases.
 */
const firmware = ({ spec, state }: LaunchPlan): string[] => {
  if (spec.firmware.type !== 'uefi') return [];
  return [
    ...blockdev('fw-code', spec.firmware.code, 'raw', true),
    ...blockdev(NVRAM_NODE, state.nvram, 'qcow2', false, spec.firmware.nvramEncrypted ? luks : {}),
    ...(spec.firmware.smm
      ? ['-global', opts(undefined, { driver: 'cfi.pflash01', property: 'secure', value: 'on' })]
      : []),
  ];
};

/** swtpm, started by the daemon before QEMU, listens on the control socket. */
const tpm = ({ spec, files }: LaunchPlan): string[] =>
  spec.tpm
    ? [
        '-chardev',
        opts('socket', { id: 'tpm-chr', path: files.tpm }),
        '-tpmdev',
        opts('emulator', { id: 'tpm0', chardev: 'tpm-chr' }),
        '-device',
        opts('tpm-crb', { tpmdev: 'tpm0', id: 'tpm-dev' }),
      ]
    : [];

/** ATA devices take the ports in order: q35's AHCI has ide.0-5 (one unit each), pc's IDE ide.0-1 with two units each. */
const ataPort = (machine: VmSpec['machine'], n: number) =>
  machine === 'q35' ? { bus: `ide.${n}` } : { bus: `ide.${Math.floor(n / 2)}`, unit: n % 2 };

/** CD-ROMs boot first (an installer), then disks in order. The drive's qdev id is what media change addresses. */
const cdrom = (spec: VmSpec, cd: CdromSpec, index: number): string[] => [
  ...(cd.path ? blockdev(`cd${index}`, cd.path, 'raw', true) : []),
  '-device',
  opts('ide-cd', {
    ...ataPort(spec.machine, spec.disks.filter((d) => d.bus !== 'virtio').length + index),
    id: `cd${index}`,
    drive: cd.path ? `cd${index}` : undefined,
    bootindex: index + 1,
  }),
];

/**
 * An encrypted overlay's bases, deepest first, each read-only with the VM's key (a linked clone shares
 * its source's key): `node-base1` is the overlay's backing, `node-base2` that one's, and so on.
 */
const bases = (node: string, chain: string[]): string[] =>
  chain
    .map((file, n) => {
      const below = n + 1 < chain.length ? { backing: `${node}-base${n + 2}` } : {};
      return blockdev(`${node}-base${n + 1}`, file, 'qcow2', true, { ...luks, ...below });
    })
    .reverse()
    .flat();

const disk = ({ spec, backings }: LaunchPlan, d: DiskSpec, index: number): string[] => {
  const bootindex = spec.cdroms.length + index + 1;
  const ata = spec.disks.slice(0, index).filter((x) => x.bus !== 'virtio').length;
  const node = diskId(d, index);
  const chain = d.encrypted ? (backings?.[node] ?? []) : [];
  return [
    ...bases(node, chain),
    ...blockdev(node, d.path, d.format, d.readOnly, {
      ...(d.encrypted ? luks : {}),
      ...(chain.length ? { backing: `${node}-base1` } : {}),
    }),
    '-device',
    d.bus === 'virtio'
      ? opts('virtio-blk-pci', { drive: node, id: `${node}-dev`, bootindex })
      : opts('ide-hd', { ...ataPort(spec.machine, ata), drive: node, id: `${node}-dev`, bootindex }),
  ];
};

/**
 * Host GPU hardware. A whole card goes behind its own PCIe root port as one multifunction device, as
 * on real hardware (drivers expect the audio function beside the GPU); so does a VF. A mediated device
 * is named by its sysfs folder, which the daemon makes before QEMU starts.
 */
export function hostDeviceArgs(d: HostDeviceSpec, index: number): string[] {
  if (d.kind === 'mdev') {
    return [
      '-device',
      opts('vfio-pci-nohotplug', {
        id: `hostdev${index}`,
        sysfsdev: `/sys/bus/mdev/devices/${d.uuid}`,
        // ramfb shows the firmware's and the boot loader's screen until the guest driver takes over.
        ...(d.display ? { display: true, ramfb: true } : {}),
      }),
    ];
  }
  const port = `hostdev-port${index}`;
  const functions = hostDeviceAddresses(d);
  return [
    '-device',
    opts('pcie-root-port', { id: port, chassis: 10 + index }),
    ...functions.flatMap((host, fn) => [
      '-device',
      opts('vfio-pci', {
        id: `hostdev${index}.${fn}`,
        host,
        bus: port,
        addr: `00.${fn}`,
        ...(functions.length > 1 && fn === 0 ? { multifunction: true } : {}),
      }),
    ]),
  ];
}

const hostDevices = ({ spec }: LaunchPlan): string[] =>
  (spec.graphics.hostDevices ?? []).flatMap((d, i) => hostDeviceArgs(d, i));

/** Whether the VM needs its key from the keystore to start. */
export const needsKey = (spec: VmSpec): boolean =>
  spec.disks.some((d) => d.encrypted) || (spec.firmware.type === 'uefi' && spec.firmware.nvramEncrypted);

/** Empty PCIe root ports on q35: devices on the root bus cannot be hot-plugged, these can. */
export const HOTPLUG_PORTS = 4;
export const hotplugPort = (n: number) => `hotplug${n}`;

const hotplug = ({ spec }: LaunchPlan): string[] =>
  spec.machine === 'q35'
    ? Array.from({ length: HOTPLUG_PORTS }, (_, n) => [
        '-device',
        opts('pcie-root-port', { id: hotplugPort(n), chassis: 20 + n, bus: 'pcie.0' }),
      ]).flat()
    : [];

/** QEMU reads the key file while it starts; the daemon removes it once QMP answers. */
const secrets = ({ spec, files }: LaunchPlan): string[] =>
  needsKey(spec) ? ['-object', opts('secret', { id: KEY_SECRET, file: files.key, format: 'raw' })] : [];

const storage = (plan: LaunchPlan): string[] => [
  ...plan.spec.cdroms.flatMap((cd, i) => cdrom(plan.spec, cd, i)),
  ...plan.spec.disks.flatMap((d, i) => disk(plan, d, i)),
];

/** The host side of a NIC: user-values (paths, interface names) go through opts(); hostfwd rules are ours. */
const netdev = (w: NicWiring, id: string): string => {
  switch (w.kind) {
    case 'slirp':
      return [opts('user', { id }), ...w.forwards.map((f) => `hostfwd=${slirpHostfwd(f)}`)].join(',');
    case 'passt':
      return opts('stream', { id, server: false, 'addr.type': 'unix', 'addr.path': w.socket });
    case 'tap':
      return opts('tap', { id, ifname: w.ifname, script: 'no', downscript: 'no' });
    case 'macvtap':
      return opts('tap', { id, fd: w.fd });
  }
};

const nics = ({ spec, nets }: LaunchPlan): string[] =>
  spec.nics.flatMap((nic, i) => [
    '-netdev',
    netdev(nets[i]!, `net${i}`),
    '-device',
    opts(nic.model, { netdev: `net${i}`, mac: nic.mac, id: `nic${i}` }),
  ]);

/** An absolute pointer (tablet) keeps the console's mouse in step with the guest's without grabbing it. */
const input = ({ spec }: LaunchPlan): string[] => {
  switch (spec.input) {
    case 'ps2':
      return [];
    case 'usb-tablet':
      return [
        '-device',
        opts('qemu-xhci', { id: 'usb' }),
        '-device',
        opts('usb-tablet', { bus: 'usb.0', id: 'tablet' }),
      ];
    case 'virtio-tablet':
      return ['-device', opts('virtio-tablet-pci', { id: 'tablet' })];
  }
};

/** The sound card the guest drives; the host side stays silent until a console carries audio. */
const sound = ({ spec }: LaunchPlan): string[] => {
  if (spec.sound === 'none') return [];
  const audiodev = ['-audiodev', opts('none', { id: 'audio0' })];
  return spec.sound === 'ac97'
    ? [...audiodev, '-device', opts('AC97', { audiodev: 'audio0', id: 'sound0' })]
    : [
        ...audiodev,
        '-device',
        opts('ich9-intel-hda', { id: 'sound0' }),
        '-device',
        opts('hda-duplex', { audiodev: 'audio0', bus: 'sound0.0' }),
      ];
};

const extras = ({ spec }: LaunchPlan): string[] => [
  ...(spec.rng
    ? [
        '-object',
        opts('rng-random', { id: 'rng0', filename: '/dev/urandom' }),
        '-device',
        opts('virtio-rng-pci', { rng: 'rng0', id: 'rng0-dev' }),
      ]
    : []),
  ...(spec.balloon ? ['-device', opts('virtio-balloon-pci', { id: 'balloon0' })] : []),
];

/** The whole QEMU argument vector (without the binary) for a plan. Pure: golden-tested. */
export function buildQemuArgs(plan: LaunchPlan): string[] {
  return [
    base,
    secrets,
    firmware,
    graphics,
    hostDevices,
    sandbox,
    monitor,
    serial,
    guestAgent,
    tpm,
    boot,
    storage,
    nics,
    input,
    sound,
    extras,
    hotplug,
    incoming,
  ].flatMap((part) => part(plan));
}
