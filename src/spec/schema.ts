import { randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { NIC_MODELS } from './nics.js';
import { NETWORK_NAME_RE, NETWORK_NAME_RULE, VM_NAME_RE, vmNameProblem } from './names.js';
import { SizeError, formatSize, parseSize } from './size.js';

export const SCHEMA_VERSION = 1;

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** An absolute, normalised path without control characters (they would corrupt argv, logs and JSON lines). */
export const absPath = z
  .string()
  .min(1)
  .refine((p) => !CONTROL_CHARS.test(p), 'must not contain control characters (newline, tab, NUL)')
  .refine((p) => path.isAbsolute(p), 'must be an absolute path, like /var/lib/images/disk.qcow2')
  .transform((p) => path.normalize(p).replace(/(.)\/+$/, '$1'));

const size = (what: string, min: number) =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    try {
      const bytes = parseSize(v);
      if (bytes < min) {
        ctx.addIssue({ code: 'custom', message: `${what} must be at least ${formatSize(min)}` });
        return z.NEVER;
      }
      return formatSize(bytes);
    } catch (e) {
      if (!(e instanceof SizeError)) throw e;
      ctx.addIssue({ code: 'custom', message: e.message });
      return z.NEVER;
    }
  });

export const vmName = z.string().superRefine((n, ctx) => {
  const problem = vmNameProblem(n);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** virtio-blk needs a driver in the guest (Linux has one; Windows gets it from virtio-win); SATA (AHCI on q35) and IDE (on pc) work everywhere. */
export const diskBus = z.enum(['virtio', 'sata', 'ide']);

export const diskFields = z.strictObject({
  /** The disk's QEMU node name: stable across removals, so live operations find it. */
  id: z
    .string()
    .regex(/^disk[0-9]{1,3}$/, 'must be disk0, disk1, …')
    .optional(),
  path: absPath,
  format: z.enum(['raw', 'qcow2']),
  readOnly: z.boolean().default(false),
  bus: diskBus.default('virtio'),
  /** qcow2 with LUKS: its key is the VM's, kept wrapped in the host keystore. */
  encrypted: z.boolean().default(false),
});

export const diskSpec = diskFields.refine((d) => !d.encrypted || d.format === 'qcow2', {
  message: 'only qcow2 disks can be encrypted',
  path: ['encrypted'],
});

/** A CD-ROM drive; without a path its tray is empty (media can be inserted while running). */
export const cdromSpec = z.strictObject({
  path: absPath.optional(),
  /** Why it is there: an OS installer, the virtio-win drivers, a cloud-init seed. */
  role: z.enum(['install', 'drivers', 'cloud-init', 'media']).default('media'),
});

/**
 * UEFI firmware as picked from QEMU's firmware descriptors (docs/interop/firmware.json). The per-VM copy
 * of the variable store is `nvram.qcow2` in the VM's folder: qcow2, so it can be snapshotted with the disks.
 */
export const firmwareSpec = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('bios') }),
  z.strictObject({
    type: z.literal('uefi'),
    code: absPath,
    varsTemplate: absPath,
    secureBoot: z.boolean(),
    enrolledKeys: z.boolean(),
    /** Secure Boot firmware keeps its variables safe from the OS only with SMM. */
    smm: z.boolean(),
    /** The variable store is LUKS-encrypted with the VM's key (VMs created with encrypted disks). */
    nvramEncrypted: z.boolean().default(false),
  }),
]);

const MAC_RE = /^52:54:00(:[0-9a-f]{2}){3}$/;

/** A locally administered MAC in QEMU's 52:54:00 range. */
export const randomMac = (): string =>
  ['52', '54', '00', ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');

/** A host network interface (Linux allows 15 bytes); the set excludes `,` `/` and spaces. */
const ifName = z
  .string()
  .regex(
    /^[A-Za-z0-9_.-]{1,15}$/,
    'must be a network interface name like br0 (up to 15 letters, digits, "-", "_", ".")',
  );

const port = z.number().int().min(1).max(65535);

/** A host port that reaches a guest port; the host side binds loopback unless `public`. */
export const forwardSpec = z.strictObject({
  proto: z.enum(['tcp', 'udp']).default('tcp'),
  hostPort: port,
  guestPort: port,
  public: z.boolean().default(false),
});

/**
 * Where a NIC plugs in. `user`: user-mode networking (passt, else QEMU's own), no root needed.
 * `bridge`: a tap on an existing host bridge. `network`: a Phyllome private network. `macvtap`: the
 * LAN of a host NIC, through a macvtap device on it (no bridge needed). The last three need root.
 */
export const netSpec = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('user'),
    forwards: z.array(forwardSpec).max(32).default([]),
    /** Opt-in: the guest may reach services listening on the host's loopback (off: safer). */
    hostLoopback: z.boolean().default(false),
    /** Forces a backend; by default passt when installed, else QEMU's built-in (slirp). */
    backend: z.enum(['passt', 'slirp']).optional(),
  }),
  z.strictObject({ type: z.literal('bridge'), bridge: ifName }),
  z.strictObject({
    type: z.literal('network'),
    network: z.string().regex(NETWORK_NAME_RE, NETWORK_NAME_RULE),
  }),
  z.strictObject({ type: z.literal('macvtap'), device: ifName }),
]);

export const nicSpec = z
  .strictObject({
    model: z.enum(NIC_MODELS),
    mac: z
      .string()
      .regex(MAC_RE, 'must be a locally administered MAC like 52:54:00:12:34:56')
      .default(randomMac),
    net: netSpec.prefault({ type: 'user' }),
  })
  .superRefine((nic, ctx) => {
    if (nic.net.type !== 'user') return;
    const seen = new Set<string>();
    nic.net.forwards.forEach((f, i) => {
      const key = `${f.proto}/${f.hostPort}`;
      if (seen.has(key)) {
        ctx.addIssue({
          code: 'custom',
          path: ['net', 'forwards', i],
          message: `host port ${f.hostPort}/${f.proto} is forwarded twice`,
        });
      }
      seen.add(key);
    });
  });

export const bootSpec = z.strictObject({
  kernel: absPath,
  initrd: absPath.optional(),
  append: z
    .string()
    .max(4096)
    .refine((s) => !CONTROL_CHARS.test(s), 'must be one line without control characters')
    .optional(),
});

/** A PCI address as sysfs and lspci -D write it; its characters need no escaping in QEMU options. */
export const pciAddress = z
  .string()
  .regex(
    /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/,
    'must be a PCI address like 0000:03:00.0 (lspci -D)',
  );

/**
 * Host GPU hardware handed to the guest, one entry per graphics-plan strategy kind: `vfio` a whole card
 * with its other functions (audio, USB), `vf` an SR-IOV virtual function, `mdev` a mediated slice of
 * the card at `address` (Intel GVT-g, NVIDIA vGPU), made from `mdevType` under `uuid` at start.
 */
export const hostDeviceSpec = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('vfio'),
    address: pciAddress,
    companions: z.array(pciAddress).max(7).default([]),
  }),
  z.strictObject({ kind: z.literal('vf'), address: pciAddress }),
  z.strictObject({
    kind: z.literal('mdev'),
    address: pciAddress,
    mdevType: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be a type from mdev_supported_types, like i915-GVTg_V5_4'),
    uuid: z.uuid().default(() => randomUUID()),
    /** The slice's own screen is the VM's console (GVT-g; QEMU needs a GL display for it). */
    display: z.boolean().default(false),
  }),
]);

/** The host PCI addresses a host device entry names: a card's functions, a VF, or an mdev's parent. */
export const hostDeviceAddresses = (d: { kind: string; address: string; companions?: string[] }): string[] =>
  d.kind === 'vfio' ? [d.address, ...(d.companions ?? [])] : [d.address];

/**
 * The guest's display device. `virtio-vga-gl` is virgl 3D: QEMU renders the guest's OpenGL on a host
 * render node (`/dev/null` makes Mesa fall back to its llvmpipe software renderer: no GPU needed).
 */
export const graphicsSpec = z
  .strictObject({
    /** `vga` is QEMU's standard VGA: every OS drives it, with no 3D. */
    device: z.enum(['none', 'vga', 'virtio-vga', 'virtio-vga-gl', 'virtio-gpu-gl-pci']),
    renderNode: absPath.optional(),
    /**
     * virtio-gpu-gl-pci contexts beyond OpenGL (QEMU 9.2+): blob resources, venus (Vulkan), DRM native
     * context. Each needs guest RAM shared with the host renderer (a memfd backend).
     */
    features: z.array(z.enum(['blob', 'venus', 'drm_native_context'])).optional(),
    /** GPU hardware of the host, beside the display device (which stays the VM's console). */
    hostDevices: z.array(hostDeviceSpec).min(1).max(4).optional(),
    /**
     * Also show the screen in a window on the host's own display (QEMU's gtk UI, GL on the display's
     * GPU for GL devices); the web console keeps working beside it.
     */
    window: z.boolean().optional(),
  })
  .refine((g) => !g.features?.length || g.device === 'virtio-gpu-gl-pci', {
    message: 'features need device virtio-gpu-gl-pci',
    path: ['features'],
  })
  .refine((g) => !g.window || g.device !== 'none', {
    message: 'a window needs a display device (graphics device none has no screen)',
    path: ['window'],
  })
  .refine((g) => !g.window || !g.renderNode, {
    message: "a window renders on its screen's GPU: drop renderNode (it picks the off-screen renderer's GPU)",
    path: ['window'],
  });

/** What a user chooses; the daemon adds identity (uuid, createdAt) to make a VmSpec. */
export const vmSpecInputFields = z.strictObject({
  name: vmName,
  memory: size('memory', 16 * 2 ** 20).default('512M'),
  cpus: z.number().int().min(1).max(256).default(1),
  boot: bootSpec.optional(),
  disks: z.array(diskSpec).max(16).default([]),
  graphics: graphicsSpec.default({ device: 'none' }),
  /** q35 (PCIe, AHCI) for every OS that knows it; pc (i440fx, IDE) for older ones. */
  machine: z.enum(['q35', 'pc']).default('q35'),
  firmware: firmwareSpec.default({ type: 'bios' }),
  /** A TPM 2.0 emulated by swtpm, its state in the VM's folder. */
  tpm: z.boolean().default(false),
  /** swtpm encrypts that state with the VM's TPM key (VMs created with encrypted disks). */
  tpmEncrypted: z.boolean().default(false),
  /** Hyper-V enlightenments: Windows runs faster and keeps time better with them. */
  hyperv: z.boolean().default(false),
  /** Windows keeps the hardware clock in local time, everything else in UTC. */
  clock: z.enum(['utc', 'localtime']).default('utc'),
  cdroms: z.array(cdromSpec).max(4).default([]),
  nics: z.array(nicSpec).max(8, 'a VM has at most 8 NICs').default([]),
  input: z.enum(['ps2', 'usb-tablet', 'virtio-tablet']).default('ps2'),
  sound: z.enum(['none', 'ich9-intel-hda', 'ac97']).default('none'),
  rng: z.boolean().default(false),
  balloon: z.boolean().default(false),
  /** The osinfo-db short id the VM was planned for, when known. */
  os: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/)
    .optional(),
});

/** AHCI on q35 has 6 ports; pc's IDE has 4 units (2 buses). */
const ATA_PORTS = { q35: 6, pc: 4 } as const;

/** Cross-field rules a single field's schema cannot see. */
const machineRules = (spec: z.output<typeof vmSpecInputFields>, ctx: z.RefinementCtx): void => {
  const ids = spec.disks.map(diskId);
  ids.forEach((id, i) => {
    if (ids.indexOf(id) !== i) {
      ctx.addIssue({ code: 'custom', path: ['disks', i, 'id'], message: `${id} names two disks` });
    }
  });
  const want = spec.machine === 'q35' ? 'sata' : 'ide';
  spec.disks.forEach((d, i) => {
    if (d.bus !== 'virtio' && d.bus !== want) {
      ctx.addIssue({
        code: 'custom',
        path: ['disks', i, 'bus'],
        message: `machine ${spec.machine} has no ${d.bus.toUpperCase()} controller: use bus ${want} or virtio`,
      });
    }
  });
  const ata = spec.disks.filter((d) => d.bus !== 'virtio').length + spec.cdroms.length;
  if (ata > ATA_PORTS[spec.machine]) {
    ctx.addIssue({
      code: 'custom',
      path: ['cdroms'],
      message: `machine ${spec.machine} has ${ATA_PORTS[spec.machine]} ${want.toUpperCase()} ports, and ${ata} disks and CD-ROMs need one each: move disks to virtio`,
    });
  }
  if (spec.firmware.type === 'uefi' && spec.firmware.smm && spec.machine !== 'q35') {
    ctx.addIssue({
      code: 'custom',
      path: ['firmware'],
      message: 'Secure Boot firmware needs SMM, which Phyllome sets up on machine q35 only',
    });
  }
  // Functions taken whole; slices of one parent are separate instances.
  const taken = (spec.graphics.hostDevices ?? [])
    .filter((d) => d.kind !== 'mdev')
    .flatMap(hostDeviceAddresses);
  taken.forEach((a, i) => {
    if (taken.indexOf(a) !== i) {
      ctx.addIssue({
        code: 'custom',
        path: ['graphics', 'hostDevices'],
        message: `${a} is handed to the guest twice`,
      });
    }
  });
  if (spec.graphics.hostDevices && spec.machine !== 'q35') {
    ctx.addIssue({
      code: 'custom',
      path: ['graphics', 'hostDevices'],
      message: 'host devices need machine q35 (each goes behind its own PCIe root port)',
    });
  }
  if (spec.input === 'usb-tablet' && spec.machine !== 'q35') {
    ctx.addIssue({
      code: 'custom',
      path: ['input'],
      message: 'usb-tablet needs machine q35 (its USB 3 controller)',
    });
  }
};

export const vmSpecInput = vmSpecInputFields.superRefine(machineRules);

export const vmSpec = vmSpecInputFields
  .extend({
    schemaVersion: z.literal(SCHEMA_VERSION),
    uuid: z.uuid(),
    createdAt: z.iso.datetime(),
  })
  .superRefine(machineRules);

export type VmSpecInput = z.input<typeof vmSpecInput>;
export type VmSpec = z.output<typeof vmSpec>;
export type DiskSpec = z.output<typeof diskSpec>;
export type GraphicsSpec = z.output<typeof graphicsSpec>;
export type HostDeviceSpec = z.output<typeof hostDeviceSpec>;
/** Graphics as a planner proposes them: defaults (an mdev's uuid) are filled in when the spec is made. */
export type GraphicsChoice = z.input<typeof graphicsSpec>;
export type CdromSpec = z.output<typeof cdromSpec>;
export type FirmwareSpec = z.output<typeof firmwareSpec>;
export type FirmwareChoice = z.input<typeof firmwareSpec>;
export type NicSpec = z.output<typeof nicSpec>;
export type NetSpec = z.output<typeof netSpec>;
export type ForwardSpec = z.output<typeof forwardSpec>;

export { VM_NAME_RE };

/** A copy of a VM makes its own mediated devices: the original may hold its instances. */
export const renewMdevs = (g: GraphicsSpec): GraphicsSpec =>
  g.hostDevices
    ? { ...g, hostDevices: g.hostDevices.map((d) => (d.kind === 'mdev' ? { ...d, uuid: randomUUID() } : d)) }
    : g;

export class SpecError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
  }
}

/** `disks[0].path: must be an absolute path` — each problem names where it is. */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const where = issue.path.reduce<string>(
      (acc, key) =>
        typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key),
      '',
    );
    const message =
      issue.code === 'unrecognized_keys'
        ? `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`
        : issue.message;
    return where ? `${where}: ${message}` : message;
  });
}

function parseWith<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const result = schema.safeParse(input);
  if (!result.success) throw new SpecError(describeIssues(result.error));
  return result.data;
}

export const parseSpecInput = (input: unknown): z.output<typeof vmSpecInput> => parseWith(vmSpecInput, input);
export const parseSpec = (input: unknown): VmSpec => parseWith(vmSpec, input);

/** A disk's node name: its id, or its place for specs written before ids. */
export const diskId = (d: { id?: string | undefined }, index = 0): string => d.id ?? `disk${index}`;

export const memoryBytes = (spec: Pick<VmSpec, 'memory'>): number => parseSize(spec.memory);
