import { memoryBytes, type DiskSpec, type VmSpec } from '../spec/schema.js';
import { escapeOptValue, opts } from './opts.js';

export type Accel = 'kvm' | 'tcg';

/** Where a running VM's runtime files live; see daemon/paths.ts. */
export interface RuntimeFiles {
  qmp: string;
  serial: string;
  pidfile: string;
  /** VNC on a Unix socket: the daemon bridges it to the browser (QEMU 7.2 serves WebSocket on TCP only). */
  vnc: string;
}

/** What the installed QEMU binary can do, from host probing. */
export interface QemuCaps {
  sandbox: boolean;
}

export interface LaunchPlan {
  spec: VmSpec;
  files: RuntimeFiles;
  accel: Accel;
  caps: QemuCaps;
}

/** Blob resources (and so venus and native contexts) map guest RAM into the host renderer. */
const sharedMemory = (spec: VmSpec): boolean => (spec.graphics.features?.length ?? 0) > 0;

/** Each group of arguments comes from one small function, like Incus' QEMU config templates. */
const base = ({ spec, accel }: LaunchPlan): string[] => {
  const memory = `${Math.floor(memoryBytes(spec) / 2 ** 20)}M`;
  return [
    '-name',
    opts(undefined, { guest: spec.name, 'debug-threads': true }),
    '-uuid',
    spec.uuid,
    '-nodefaults',
    '-no-user-config',
    '-machine',
    opts('q35', { accel, 'memory-backend': sharedMemory(spec) ? 'mem' : undefined }),
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
    accel === 'kvm' ? 'host' : 'max',
    '-m',
    memory,
    '-smp',
    String(spec.cpus),
    // Paused until the daemon has attached to QMP, so no event is missed.
    '-S',
  ];
};

/** GL devices need a GL-capable display: egl-headless renders off-screen (`-display none` refuses them). */
const graphics = ({ spec, files }: LaunchPlan): string[] => {
  const { device, renderNode, features = [] } = spec.graphics;
  if (device === 'none') return ['-display', 'none'];
  // The screen is served over VNC; with egl-headless it shows the GL-rendered frames.
  const vnc = ['-vnc', `unix:${escapeOptValue(files.vnc)}`];
  if (device === 'virtio-vga') return ['-device', opts(device, { id: 'gpu0' }), '-display', 'none', ...vnc];
  const flags = Object.fromEntries(features.map((f) => [f, true]));
  return [
    '-device',
    opts(device, { id: 'gpu0', ...flags, ...(features.length ? { hostmem: '4G' } : {}) }),
    '-display',
    opts('egl-headless', { rendernode: renderNode }),
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

// -kernel/-initrd/-append take their argument verbatim (not QemuOpts), so no escaping applies.
const boot = ({ spec }: LaunchPlan): string[] => {
  if (!spec.boot) return [];
  const args = ['-kernel', spec.boot.kernel];
  if (spec.boot.initrd) args.push('-initrd', spec.boot.initrd);
  if (spec.boot.append) args.push('-append', spec.boot.append);
  return args;
};

const disk = (d: DiskSpec, index: number): string[] => [
  '-blockdev',
  opts(undefined, {
    driver: 'file',
    filename: d.path,
    'node-name': `disk${index}-file`,
    'read-only': d.readOnly,
  }),
  '-blockdev',
  opts(undefined, {
    driver: d.format,
    file: `disk${index}-file`,
    'node-name': `disk${index}`,
    'read-only': d.readOnly,
  }),
  '-device',
  opts('virtio-blk-pci', { drive: `disk${index}`, id: `disk${index}-dev`, bootindex: index + 1 }),
];

const disks = ({ spec }: LaunchPlan): string[] => spec.disks.flatMap(disk);

/** The whole QEMU argument vector (without the binary) for a plan. Pure: golden-tested. */
export function buildQemuArgs(plan: LaunchPlan): string[] {
  return [base, graphics, sandbox, monitor, serial, boot, disks].flatMap((part) => part(plan));
}
