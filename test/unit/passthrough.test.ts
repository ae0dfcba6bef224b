import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkHostDevices,
  HostDeviceError,
  prepareHostDevices,
  readHostDevices,
  releaseMdevs,
} from '../../src/host/passthrough.js';
import type { HostDeviceSpec } from '../../src/spec/schema.js';

// The launch's checks of a VM's host devices, on the recorded hosts (test/fixtures/real-hosts).
const hosts = path.join(import.meta.dirname, '../fixtures/real-hosts');
const UUID = '4b20d080-1b54-4048-85b3-a6a62d165c01';
const check = async (host: string, devices: HostDeviceSpec[]) =>
  checkHostDevices(devices, await readHostDevices(path.join(hosts, host), devices));
const card: HostDeviceSpec = { kind: 'vfio', address: '0000:03:00.0', companions: ['0000:03:00.1'] };
const gvtg: HostDeviceSpec = {
  kind: 'mdev',
  address: '0000:00:02.0',
  mdevType: 'i915-GVTg_V5_4',
  uuid: UUID,
  display: true,
};

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'phyllome-passthrough-'));
});
afterAll(() => rm(scratch, { recursive: true, force: true }));

/** A writable copy of a recorded host, for checks that write sysfs. */
async function copyHost(name: string): Promise<string> {
  const root = path.join(scratch, `${name}-${Math.random().toString(36).slice(2)}`);
  await cp(path.join(hosts, name), root, { recursive: true, verbatimSymlinks: true });
  return root;
}

describe('host devices before QEMU starts', () => {
  it('SR-IOV VFs already on vfio-pci, each in its own group, are ready', async () => {
    expect(await check('intel-xe-sriov', [{ kind: 'vf', address: '0000:03:00.1' }])).toEqual({
      problems: [],
      create: [],
    });
  });

  it('a card still on its host drivers: the exact commands for each function; bridges may stay', async () => {
    const { problems } = await check('desktop-amd-dgpu-isolated', [card]);
    expect(problems).toEqual([
      '0000:03:00.0 is bound to amdgpu, not vfio-pci: driverctl set-override 0000:03:00.0 vfio-pci (kept across reboots), or until the next boot: modprobe vfio-pci; echo vfio-pci > /sys/bus/pci/devices/0000:03:00.0/driver_override; echo 0000:03:00.0 > /sys/bus/pci/devices/0000:03:00.0/driver/unbind; echo 0000:03:00.0 > /sys/bus/pci/drivers_probe',
      '0000:03:00.1 is bound to snd_hda_intel, not vfio-pci: driverctl set-override 0000:03:00.1 vfio-pci (kept across reboots), or until the next boot: modprobe vfio-pci; echo vfio-pci > /sys/bus/pci/devices/0000:03:00.1/driver_override; echo 0000:03:00.1 > /sys/bus/pci/devices/0000:03:00.1/driver/unbind; echo 0000:03:00.1 > /sys/bus/pci/drivers_probe',
    ]);
  });

  it('once bound, the card is ready (the group holds only its functions and pcieport bridges)', async () => {
    const root = await copyHost('desktop-amd-dgpu-isolated');
    for (const fn of ['0000:03:00.0', '0000:03:00.1']) {
      const link = path.join(root, 'sys/bus/pci/devices', fn, 'driver');
      await rm(link);
      await symlink('../../../../../bus/pci/drivers/vfio-pci', link);
    }
    expect(checkHostDevices([card], await readHostDevices(root, [card]))).toEqual({
      problems: [],
      create: [],
    });
  });

  it('a GPU that shares its group with chipset devices: names each, never the ACS override', async () => {
    const { problems } = await check('nvidia-shared-group', [
      { kind: 'vfio', address: '0000:01:00.0', companions: ['0000:01:00.1'] },
    ]);
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/^0000:01:00.0 is bound to nvidia, not vfio-pci: /);
    expect(problems[2]).toMatch(/^0000:01:00.1 is bound to snd_hda_intel, not vfio-pci: /);
    expect(problems[1]).toMatch(
      /^IOMMU group 2 of 0000:01:00.0 also holds 0000:02:00.0 \(xhci_hcd\), 0000:02:00.1 \(ahci\), 0000:05:00.0 \(r8169\): the kernel hands a VM whole groups, .* or move the card to a slot with its own group$/,
    );
    expect(problems.join('\n')).not.toMatch(/acs/i);
  });

  it('no IOMMU, or no such device: says what to do', async () => {
    expect(
      (await check('iommu-off', [{ kind: 'vfio', address: '0000:01:00.0', companions: [] }])).problems,
    ).toEqual([
      '0000:01:00.0 has no IOMMU group: turn the IOMMU on (intel_iommu=on or amd_iommu=on on the kernel command line, VT-d or AMD-Vi in the firmware) and reboot',
    ]);
    expect((await check('amd-apu-only', [{ kind: 'vf', address: '0000:0a:00.0' }])).problems).toEqual([
      '0000:0a:00.0 is not on this host (no /sys/bus/pci/devices/0000:0a:00.0): check the address with "phyllome host check" or lspci -D, then edit the VM',
    ]);
  });

  it("makes a missing mediated device by writing its uuid to the type's create file", async () => {
    expect(await check('intel-laptop-gvtg', [gvtg])).toEqual({
      problems: [],
      create: [
        { file: 'sys/bus/pci/devices/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_4/create', uuid: UUID },
      ],
    });
    const root = await copyHost('intel-laptop-gvtg');
    await prepareHostDevices(root, [gvtg]);
    expect(
      await readFile(
        path.join(root, 'sys/devices/pci0000:00/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_4/create'),
        'utf8',
      ),
    ).toBe(UUID);
  });

  it('an NVIDIA vGPU: its running instance is used as it is; a new one is made from the free profile', async () => {
    const vgpu = (uuid: string, mdevType = 'nvidia-231'): HostDeviceSpec => ({
      kind: 'mdev',
      address: '0000:18:00.0',
      mdevType,
      uuid,
      display: false,
    });
    expect(await check('nvidia-vgpu-server', [vgpu('c4f7a1d2-5b3e-4a8f-9e61-2d0b7c95f318')])).toEqual({
      problems: [],
      create: [],
    });
    expect(await check('nvidia-vgpu-server', [vgpu(UUID)])).toEqual({
      problems: [],
      create: [
        { file: 'sys/bus/pci/devices/0000:18:00.0/mdev_supported_types/nvidia-231/create', uuid: UUID },
      ],
    });
    // Time-sliced: while a T4-2Q runs, the T4 offers no other profile.
    expect((await check('nvidia-vgpu-server', [vgpu(UUID, 'nvidia-234')])).problems[0]).toMatch(
      /^0000:18:00.0 has no free nvidia-234 instance: /,
    );
  });

  it("a deleted VM's mediated device is removed; one already gone is fine", async () => {
    const root = await copyHost('nvidia-vgpu-server');
    const running = 'c4f7a1d2-5b3e-4a8f-9e61-2d0b7c95f318';
    const slice = (uuid: string): HostDeviceSpec => ({
      kind: 'mdev',
      address: '0000:18:00.0',
      mdevType: 'nvidia-231',
      uuid,
      display: false,
    });
    await releaseMdevs(root, [slice(running), slice(UUID), { kind: 'vf', address: '0000:18:00.4' }]);
    expect(
      await readFile(
        path.join(root, 'sys/devices/pci0000:17/0000:17:02.0/0000:18:00.0', running, 'remove'),
        'utf8',
      ),
    ).toBe('1');
  });

  it('uses an existing instance of the right type; refuses one of another type, a full type, an unknown type', async () => {
    const root = await copyHost('intel-laptop-gvtg');
    const instance = path.join(root, 'sys/bus/mdev/devices', UUID);
    await mkdir(instance, { recursive: true });
    await symlink(
      '../../../../devices/pci0000:00/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_4',
      path.join(instance, 'mdev_type'),
    );
    const at = async (d: HostDeviceSpec) => checkHostDevices([d], await readHostDevices(root, [d]));
    expect(await at(gvtg)).toEqual({ problems: [], create: [] });
    expect((await at({ ...gvtg, mdevType: 'i915-GVTg_V5_8' })).problems).toEqual([
      `mediated device ${UUID} exists as i915-GVTg_V5_4, not i915-GVTg_V5_8: remove it (echo 1 > /sys/bus/mdev/devices/${UUID}/remove) and start again`,
    ]);
    const other = { ...gvtg, uuid: 'a7f8a6b2-9d1e-4c4e-8f0a-1c2d3e4f5a6b' };
    await writeFile(
      path.join(
        root,
        'sys/devices/pci0000:00/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_4/available_instances',
      ),
      '0\n',
    );
    expect((await at(other)).problems[0]).toMatch(/^0000:00:02.0 has no free i915-GVTg_V5_4 instance: /);
    expect((await at({ ...other, mdevType: 'i915-GVTg_V5_1' })).problems).toEqual([
      '0000:00:02.0 offers no mediated type i915-GVTg_V5_1 (it offers i915-GVTg_V5_4, i915-GVTg_V5_8)',
    ]);
    // Nothing is written while any device is not ready.
    await expect(prepareHostDevices(root, [other])).rejects.toThrow(HostDeviceError);
  });
});
