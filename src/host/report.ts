import { HostFs } from './sysfs.js';

export type GpuVendor = 'intel' | 'amd' | 'nvidia' | 'other';

export interface PciPeer {
  bdf: string;
  class: string;
}

export interface Gpu {
  bdf: string;
  vendor: GpuVendor;
  vendorId: string;
  deviceId: string;
  class: string;
  driver?: string;
  bootVga: boolean;
  renderNode?: string;
  /** Empty when the device offers no reset the kernel can use. */
  resetMethods: string[];
  iommuGroup?: number;
  /** Other devices in its IOMMU group. */
  groupPeers: PciPeer[];
  /** Other functions of the same card (audio, USB, UCSI): they go along in a passthrough. */
  companions: string[];
  /** Only companions and bridges share its group; undefined when the IOMMU is off. */
  isolated?: boolean;
  sriov?: { totalVfs: number; numVfs: number; vfs: string[] };
  isVf: boolean;
  mdevTypes: { id: string; name: string; available: number; description: string }[];
  /** NVIDIA vGPU types this VF can become (Ampere and later, with NVIDIA's vGPU host driver). */
  vgpuTypes: { id: string; name: string }[];
}

/** A USB controller: handed to a VM, it brings the keyboard and mouse plugged into it (a seat). */
export interface UsbController {
  bdf: string;
  iommuGroup?: number;
  isolated?: boolean;
}

export interface HostReport {
  root: string;
  cpu: {
    vendor: 'intel' | 'amd' | 'other';
    model?: string;
    virtFlag?: 'vmx' | 'svm';
    hypervisor: boolean;
    cpus: number;
  };
  memoryBytes?: number;
  kvm: { device: boolean; module?: 'kvm_intel' | 'kvm_amd'; nested?: boolean };
  iommu: { enabled: boolean; units: string[]; groups: number };
  gpus: Gpu[];
  usbControllers: UsbController[];
  udmabuf: boolean;
  hugepages: { size: string; pages: number }[];
  /** Files that exist but could not be read: the report says so rather than guessing. */
  unreadable: string[];
}

const VENDORS: Record<string, GpuVendor> = { '0x8086': 'intel', '0x1002': 'amd', '0x10de': 'nvidia' };
const DISPLAY_CLASS = /^0x03(00|02|80)/;
const USB_CLASS = /^0x0c03/;
const BRIDGE_CLASS = /^0x0604/;

/** `0000:03:00.1` → `0000:03:00`: functions of one slot belong to one card. */
const slotOf = (bdf: string) => bdf.replace(/\.\d+$/, '');

/**
 * The members of a device's IOMMU group that keep it from being handed to a VM alone: anything but
 * bridges and other functions of its own slot (the kernel's VFIO viability rule).
 */
export function isolationBlockers(bdf: string, peers: PciPeer[]): PciPeer[] {
  return peers.filter((p) => !BRIDGE_CLASS.test(p.class) && slotOf(p.bdf) !== slotOf(bdf));
}

/** PCI devices, their classes and IOMMU groups: read once, shared by every device's reading. */
interface Topology {
  pci: string[];
  classOf: Map<string, string>;
  groupOf: Map<string, number>;
  groups: Map<number, string[]>;
}

/** The other members of the device's group, with their classes. */
const peersOf = (t: Topology, bdf: string, group: number | undefined): PciPeer[] =>
  group === undefined
    ? []
    : (t.groups.get(group) ?? [])
        .filter((p) => p !== bdf)
        .map((p) => ({ bdf: p, class: t.classOf.get(p) ?? '' }));

async function readCpu(fs: HostFs): Promise<HostReport['cpu']> {
  const cpuinfo = (await fs.read('proc/cpuinfo')) ?? '';
  const blocks = cpuinfo.split(/\n\s*\n/).filter((b) => /^processor\s*:/m.test(b));
  const field = (name: string) =>
    new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(blocks[0] ?? '')?.[1]?.trim();
  const flags = new Set((field('flags') ?? '').split(/\s+/));
  const vendorId = field('vendor_id');
  return {
    vendor: vendorId === 'GenuineIntel' ? 'intel' : vendorId === 'AuthenticAMD' ? 'amd' : 'other',
    ...(field('model name') ? { model: field('model name') } : {}),
    ...(flags.has('vmx')
      ? { virtFlag: 'vmx' as const }
      : flags.has('svm')
        ? { virtFlag: 'svm' as const }
        : {}),
    hypervisor: flags.has('hypervisor'),
    cpus: blocks.length,
  };
}

async function readGpu(fs: HostFs, t: Topology, bdf: string): Promise<Gpu> {
  const dev = `sys/bus/pci/devices/${bdf}`;
  const [vendorId = '', deviceId = '', bootVga, reset, driver, totalVfs, numVfs, physfn] = await Promise.all([
    fs.read(`${dev}/vendor`),
    fs.read(`${dev}/device`),
    fs.read(`${dev}/boot_vga`),
    fs.read(`${dev}/reset_method`),
    fs.linkName(`${dev}/driver`),
    fs.read(`${dev}/sriov_totalvfs`),
    fs.read(`${dev}/sriov_numvfs`),
    fs.exists(`${dev}/physfn`),
  ]);
  const group = t.groupOf.get(bdf);
  const groupPeers = peersOf(t, bdf, group);
  const vfs = (await fs.list(dev)).filter((e) => /^virtfn\d+$/.test(e));
  const vfBdfs = (await Promise.all(vfs.map((v) => fs.linkName(`${dev}/${v}`)))).filter(
    (v): v is string => !!v,
  );
  // Other functions of the same slot, less its own SR-IOV VFs (those are separate devices to hand out).
  const companions = physfn
    ? []
    : t.pci.filter((p) => p !== bdf && slotOf(p) === slotOf(bdf) && !vfBdfs.includes(p));
  const mdevTypes = await Promise.all(
    (await fs.list(`${dev}/mdev_supported_types`)).map(async (id) => {
      const base = `${dev}/mdev_supported_types/${id}`;
      return {
        id,
        name: (await fs.read(`${base}/name`)) ?? id,
        available: Number((await fs.read(`${base}/available_instances`)) ?? 0),
        description: (await fs.read(`${base}/description`)) ?? '',
      };
    }),
  );
  // `creatable_vgpu_types` is a table: a header line, then "ID : Name" rows.
  const vgpuTypes = ((await fs.read(`${dev}/nvidia/creatable_vgpu_types`)) ?? '')
    .split('\n')
    .map((l) => /^\s*(\d+)\s*:\s*(\S.*?)\s*$/.exec(l))
    .filter((m): m is RegExpExecArray => !!m)
    .map((m) => ({ id: m[1]!, name: m[2]! }));
  const gpu: Gpu = {
    bdf,
    vendor: VENDORS[vendorId] ?? 'other',
    vendorId,
    deviceId,
    class: t.classOf.get(bdf) ?? '',
    ...(driver ? { driver } : {}),
    bootVga: bootVga === '1',
    resetMethods: (reset ?? '').split(/\s+/).filter(Boolean),
    ...(group !== undefined ? { iommuGroup: group } : {}),
    groupPeers,
    companions,
    isVf: physfn,
    mdevTypes,
    vgpuTypes,
  };
  if (totalVfs !== undefined && Number(totalVfs) > 0) {
    gpu.sriov = {
      totalVfs: Number(totalVfs),
      numVfs: Number(numVfs ?? 0),
      vfs: vfBdfs,
    };
  }
  if (group !== undefined) gpu.isolated = isolationBlockers(bdf, groupPeers).length === 0;
  return gpu;
}

/** Reads everything the check and the planners need from a root folder (`/` for this host). */
export async function readHost(root: string): Promise<HostReport> {
  const fs = new HostFs(root);
  const groupOf = new Map<string, number>();
  const groups = new Map<number, string[]>();
  for (const g of await fs.list('sys/kernel/iommu_groups')) {
    const members = await fs.list(`sys/kernel/iommu_groups/${g}/devices`);
    groups.set(Number(g), members);
    for (const m of members) groupOf.set(m, Number(g));
  }
  const pci = await fs.list('sys/bus/pci/devices');
  const classes = await Promise.all(pci.map((bdf) => fs.read(`sys/bus/pci/devices/${bdf}/class`)));
  const t: Topology = {
    pci,
    classOf: new Map(pci.map((bdf, i) => [bdf, classes[i] ?? ''])),
    groupOf,
    groups,
  };
  const ofClass = (re: RegExp) => pci.filter((bdf) => re.test(t.classOf.get(bdf) ?? ''));
  const gpus = await Promise.all(ofClass(DISPLAY_CLASS).map((bdf) => readGpu(fs, t, bdf)));
  const usbControllers = ofClass(USB_CLASS).map((bdf) => {
    const group = groupOf.get(bdf);
    if (group === undefined) return { bdf };
    return { bdf, iommuGroup: group, isolated: isolationBlockers(bdf, peersOf(t, bdf, group)).length === 0 };
  });
  for (const node of (await fs.list('sys/class/drm')).filter((n) => /^renderD\d+$/.test(n))) {
    const bdf = await fs.linkName(`sys/class/drm/${node}/device`);
    const gpu = gpus.find((g) => g.bdf === bdf);
    if (gpu) gpu.renderNode = node;
  }
  const cpu = await readCpu(fs);
  const kvmModule = (await fs.exists('sys/module/kvm_intel'))
    ? 'kvm_intel'
    : (await fs.exists('sys/module/kvm_amd'))
      ? 'kvm_amd'
      : undefined;
  const nested = kvmModule ? await fs.read(`sys/module/${kvmModule}/parameters/nested`) : undefined;
  const memKb = /^MemTotal:\s+(\d+) kB/m.exec((await fs.read('proc/meminfo')) ?? '')?.[1];
  const hugepages = await Promise.all(
    (await fs.list('sys/kernel/mm/hugepages')).map(async (d) => ({
      size: d.replace(/^hugepages-/, ''),
      pages: Number((await fs.read(`sys/kernel/mm/hugepages/${d}/nr_hugepages`)) ?? 0),
    })),
  );
  const units = await fs.list('sys/class/iommu');
  return {
    root,
    cpu,
    ...(memKb ? { memoryBytes: Number(memKb) * 1024 } : {}),
    kvm: {
      device: await fs.exists('dev/kvm'),
      ...(kvmModule ? { module: kvmModule } : {}),
      ...(nested !== undefined ? { nested: nested === 'Y' || nested === '1' } : {}),
    },
    iommu: { enabled: units.length > 0 && groups.size > 0, units, groups: groups.size },
    gpus,
    usbControllers,
    udmabuf: await fs.exists('dev/udmabuf'),
    hugepages,
    unreadable: fs.unreadable,
  };
}
