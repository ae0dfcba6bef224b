import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { hostDeviceAddresses, type HostDeviceSpec } from '../spec/schema.js';
import { HostFs } from './sysfs.js';

/** A PCI device as the launch check needs it: its driver and its IOMMU group's members with theirs. */
export interface PciState {
  present: boolean;
  driver?: string;
  group?: number;
  /** The group's other members. */
  peers: { address: string; driver?: string }[];
}

export interface MdevState {
  /** The instance already exists (sys/bus/mdev/devices/UUID), of this type. */
  existing?: { type?: string };
  /** The types the parent offers, with their free instances. */
  offered: { id: string; available: number }[];
}

export interface HostDeviceState {
  pci: Record<string, PciState>;
  mdev: Record<string, MdevState>;
}

/**
 * Drivers that may hold a device in a passed-through GPU's IOMMU group: vfio-pci's own, pci-stub, and
 * the port driver of bridges (both let the kernel give the group's DMA to a VM).
 */
const GROUP_SAFE_DRIVERS = new Set(['vfio-pci', 'pci-stub', 'pcieport']);

const PCI = 'sys/bus/pci/devices';
const MDEV = 'sys/bus/mdev/devices';

async function readPci(fs: HostFs, address: string): Promise<PciState> {
  const dev = `${PCI}/${address}`;
  if (!(await fs.exists(dev))) return { present: false, peers: [] };
  const [driver, group] = await Promise.all([
    fs.linkName(`${dev}/driver`),
    fs.linkName(`${dev}/iommu_group`),
  ]);
  const members = group === undefined ? [] : await fs.list(`sys/kernel/iommu_groups/${group}/devices`);
  const peers = await Promise.all(
    members
      .filter((m) => m !== address)
      .map(async (m) => {
        const d = await fs.linkName(`${PCI}/${m}/driver`);
        return { address: m, ...(d ? { driver: d } : {}) };
      }),
  );
  return {
    present: true,
    ...(driver ? { driver } : {}),
    ...(group !== undefined ? { group: Number(group) } : {}),
    peers,
  };
}

async function readMdev(fs: HostFs, d: Extract<HostDeviceSpec, { kind: 'mdev' }>): Promise<MdevState> {
  const types = `${PCI}/${d.address}/mdev_supported_types`;
  const offered = await Promise.all(
    (await fs.list(types)).map(async (id) => ({
      id,
      available: Number((await fs.read(`${types}/${id}/available_instances`)) ?? 0),
    })),
  );
  if (!(await fs.exists(`${MDEV}/${d.uuid}`))) return { offered };
  const type = await fs.linkName(`${MDEV}/${d.uuid}/mdev_type`);
  return { existing: type ? { type } : {}, offered };
}

/** Reads what the launch check needs about the VM's host devices under a root (`/` for this host). */
export async function readHostDevices(root: string, devices: HostDeviceSpec[]): Promise<HostDeviceState> {
  const fs = new HostFs(root);
  const addresses = [...new Set(devices.flatMap(hostDeviceAddresses))];
  const pci = await Promise.all(addresses.map((a) => readPci(fs, a)));
  const mdevs = devices.filter((d) => d.kind === 'mdev');
  const mdev = await Promise.all(mdevs.map((d) => readMdev(fs, d)));
  return {
    pci: Object.fromEntries(addresses.map((a, i) => [a, pci[i]!])),
    mdev: Object.fromEntries(mdevs.map((d, i) => [d.uuid, mdev[i]!])),
  };
}

/** How to give a device to vfio-pci: for good with driverctl, or until the next boot by hand. */
const bindCommands = (address: string, driver: string | undefined): string =>
  `driverctl set-override ${address} vfio-pci (kept across reboots), or until the next boot: modprobe vfio-pci; echo vfio-pci > /sys/bus/pci/devices/${address}/driver_override; ${driver ? `echo ${address} > /sys/bus/pci/devices/${address}/driver/unbind; ` : ''}echo ${address} > /sys/bus/pci/drivers_probe`;

export interface HostDeviceCheck {
  /** Each says what is wrong and what to do; the VM must not start while there are any. */
  problems: string[];
  /** Mediated devices to make before QEMU starts: write `uuid` to `file` (relative to the root). */
  create: { file: string; uuid: string }[];
}

/**
 * Pure: whether the VM's host devices can be handed to QEMU as they are. Every function taken must be
 * bound to vfio-pci, and every other member of its IOMMU group bound to vfio-pci or a bridge's driver
 * or to none (the kernel gives a VM whole groups only). A mediated device must exist, or its type must
 * have a free instance for the daemon to make.
 */
export function checkHostDevices(devices: HostDeviceSpec[], state: HostDeviceState): HostDeviceCheck {
  const problems: string[] = [];
  const create: HostDeviceCheck['create'] = [];
  const taken = new Set(devices.flatMap(hostDeviceAddresses));
  const groups = new Set<number>();
  const absent = (a: string) =>
    `${a} is not on this host (no /sys/bus/pci/devices/${a}): check the address with "phyllome host check" or lspci -D, then edit the VM`;
  for (const d of devices) {
    if (d.kind === 'mdev') {
      const m = state.mdev[d.uuid]!;
      if (!state.pci[d.address]?.present) problems.push(absent(d.address));
      else if (m.existing) {
        if (m.existing.type && m.existing.type !== d.mdevType)
          problems.push(
            `mediated device ${d.uuid} exists as ${m.existing.type}, not ${d.mdevType}: remove it (echo 1 > /sys/bus/mdev/devices/${d.uuid}/remove) and start again`,
          );
      } else {
        const type = m.offered.find((t) => t.id === d.mdevType);
        if (!type)
          problems.push(
            `${d.address} offers no mediated type ${d.mdevType} (${m.offered.length ? `it offers ${m.offered.map((t) => t.id).join(', ')}` : 'it offers none: is its vGPU or GVT-g host driver loaded?'})`,
          );
        else if (type.available < 1)
          problems.push(
            `${d.address} has no free ${d.mdevType} instance: stop a VM that uses one, or remove an unused one (mdevctl list; echo 1 > /sys/bus/mdev/devices/UUID/remove)`,
          );
        else
          create.push({
            file: `${PCI}/${d.address}/mdev_supported_types/${d.mdevType}/create`,
            uuid: d.uuid,
          });
      }
      continue;
    }
    for (const a of hostDeviceAddresses(d)) {
      const p = state.pci[a]!;
      if (!p.present) {
        problems.push(absent(a));
        continue;
      }
      if (p.group === undefined) {
        problems.push(
          `${a} has no IOMMU group: turn the IOMMU on (intel_iommu=on or amd_iommu=on on the kernel command line, VT-d or AMD-Vi in the firmware) and reboot`,
        );
        continue;
      }
      if (p.driver !== 'vfio-pci')
        problems.push(
          `${a} is bound to ${p.driver ?? 'no driver'}, not vfio-pci: ${bindCommands(a, p.driver)}`,
        );
      // Functions of one card share a group: say it once.
      if (groups.has(p.group)) continue;
      groups.add(p.group);
      const blocking = p.peers.filter(
        (x) => !taken.has(x.address) && x.driver && !GROUP_SAFE_DRIVERS.has(x.driver),
      );
      if (blocking.length)
        problems.push(
          `IOMMU group ${p.group} of ${a} also holds ${blocking.map((x) => `${x.address} (${x.driver})`).join(', ')}: the kernel hands a VM whole groups, so each must be bound to vfio-pci or to no driver first (which takes it from the host), e.g. ${bindCommands(blocking[0]!.address, blocking[0]!.driver)}; or move the card to a slot with its own group`,
        );
    }
  }
  return { problems, create };
}

export class HostDeviceError extends Error {
  constructor(readonly problems: string[]) {
    super(`the VM's host devices are not ready:\n- ${problems.join('\n- ')}`);
  }
}

/**
 * The launch's adapter: checks the host devices under `root` and makes the missing mediated devices
 * (the kernel makes one when its uuid is written to the type's `create`). Throws HostDeviceError,
 * before anything is written, when any device is not ready.
 */
export async function prepareHostDevices(root: string, devices: HostDeviceSpec[]): Promise<void> {
  const { problems, create } = checkHostDevices(devices, await readHostDevices(root, devices));
  if (problems.length) throw new HostDeviceError(problems);
  for (const c of create) await writeFile(path.join(root, c.file), c.uuid);
}

/**
 * Removes the VM's mediated devices (the kernel frees an instance when `1` is written to its
 * `remove`), so a deleted VM holds no slice of the GPU; one already gone is fine.
 */
export async function releaseMdevs(root: string, devices: HostDeviceSpec[]): Promise<void> {
  for (const d of devices) {
    if (d.kind !== 'mdev') continue;
    const remove = path.join(root, MDEV, d.uuid, 'remove');
    await writeFile(remove, '1').catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }
}
