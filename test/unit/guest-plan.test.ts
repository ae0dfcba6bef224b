import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { pickFirmware, readFirmwareDescriptors, type FirmwareDescriptor } from '../../src/host/firmware.js';
import { loadOsDb, resolveOs, type OsDb } from '../../src/guest/osinfo.js';
import { planGuest, type HostOffer, type PlanRequest } from '../../src/guest/plan.js';
import { planGraphics } from '../../src/guest/graphics-plan.js';
import { readHost } from '../../src/host/report.js';
import { QEMU_72 } from '../fixtures/qemu.js';
import { parseSize } from '../../src/spec/size.js';
import { parseSpecInput } from '../../src/spec/schema.js';
import { MS_SECURE_BOOT } from '../fixtures/firmware-choice.js';

// Debian's ovmf descriptors, recorded: the planner must pick from what QEMU's descriptors say.
const FIRMWARE = path.join(import.meta.dirname, '../fixtures/firmware');
const GiB = 2 ** 30;

let db: OsDb;
let firmware: FirmwareDescriptor[];
beforeAll(async () => {
  [db, firmware] = await Promise.all([loadOsDb(), readFirmwareDescriptors([FIRMWARE])]);
});

const virgl = {
  kind: 'virtio-virgl' as const,
  graphics: { device: 'virtio-vga-gl' as const, renderNode: '/dev/dri/renderD128' },
  why: 'OpenGL in the guest through virgl',
  tradeoff: 'OpenGL only',
};
const twoD = {
  kind: 'virtio-2d' as const,
  graphics: { device: 'virtio-vga' as const },
  why: 'Windows has no released virtio-gpu 3D driver; virtio-win drives the 2D display',
  tradeoff: 'No 3D acceleration',
};

/** A small, old host: no KVM, 2 GiB of RAM, one CPU. Windows 11 must still get what it requires. */
const smallHost = (over: Partial<HostOffer> = {}): HostOffer => ({
  accel: 'tcg',
  graphics: [twoD],
  firmware,
  memoryBytes: 2 * GiB,
  cpus: 1,
  ...over,
});

const plan = (os: string, host: HostOffer, over: Partial<PlanRequest> = {}) =>
  planGuest(
    { name: 'vm', os: resolveOs(db, os).entry, intent: 'desktop', mac: '52:54:00:00:00:01', ...over },
    host,
  );

/** A plan's spec as the daemon would store it: the new disk gets a path. */
const asSpec = (spec: Record<string, unknown>) =>
  parseSpecInput({
    ...spec,
    disks: (spec.disks as Record<string, unknown>[]).map(({ size: _size, ...d }, i) => ({
      ...d,
      path: `/vms/vm/disk${i}.qcow2`,
      format: 'qcow2',
    })),
  });

describe('firmware from QEMU descriptors', () => {
  it('reads them in QEMU order and picks Secure Boot with Microsoft keys, or plain UEFI', () => {
    expect(firmware.map((d) => path.basename(d.file))).toEqual([
      '40-edk2-x86_64-secure-enrolled.json',
      '50-edk2-x86_64-secure.json',
      '60-edk2-x86_64.json',
    ]);
    expect(pickFirmware(firmware, { machine: 'q35', secureBoot: true })).toEqual(MS_SECURE_BOOT);
    // Plain UEFI is the firmware without Secure Boot, so unsigned kernels boot.
    expect(pickFirmware(firmware, { machine: 'q35', secureBoot: false })).toMatchObject({
      code: '/usr/share/OVMF/OVMF_CODE_4M.fd',
      secureBoot: false,
      smm: false,
    });
    expect(pickFirmware(firmware, { machine: 'pc', secureBoot: false })).toMatchObject({ secureBoot: false });
    expect(() => pickFirmware(firmware, { machine: 'pc', secureBoot: true })).toThrow(/for machine pc/);
    expect(() => pickFirmware([], { machine: 'q35', secureBoot: false })).toThrow(
      /no QEMU firmware descriptors found.*apt-get install ovmf \(Debian\) or dnf install edk2-ovmf \(Fedora\)/,
    );
  });
});

describe('guest planner', () => {
  it('gives Windows 11 UEFI Secure Boot with Microsoft keys, TPM 2.0 and its minimums on a host that has none of it', async () => {
    const p = plan('win11', smallHost());
    const spec = asSpec(p.spec);
    expect(spec.firmware).toMatchObject({ type: 'uefi', secureBoot: true, enrolledKeys: true, smm: true });
    expect(spec.tpm).toBe(true);
    expect(parseSize(spec.memory)).toBeGreaterThanOrEqual(4 * GiB);
    expect(spec.cpus).toBeGreaterThanOrEqual(2);
    expect(parseSize((p.spec.disks as { size: string }[])[0]!.size)).toBeGreaterThanOrEqual(64 * GiB);
    expect(spec.machine).toBe('q35');
    expect(spec.hyperv).toBe(true);
    expect(spec.clock).toBe('localtime');
    // No virtio-win ISO on this host: Windows setup sees the disk and network without extra drivers.
    expect(spec.disks[0]!.bus).toBe('sata');
    expect(spec.nics[0]!.model).toBe('e1000e');
    expect(p.notes.join('\n')).toMatch(/no virtio-win ISO/);
    // Every decision carries a reason.
    for (const c of p.choices) expect(c.reason.length).toBeGreaterThan(5);
    await expect(JSON.stringify(p, null, 2) + '\n').toMatchFileSnapshot('../golden/plan-win11.json');
  });

  it('uses virtio for Windows when the virtio-win ISO is there, and attaches it', () => {
    const spec = asSpec(
      plan('win11', smallHost({ virtioWin: '/usr/share/virtio-win/virtio-win.iso' }), {
        iso: '/srv/Win11.iso',
      }).spec,
    );
    expect(spec.disks[0]!.bus).toBe('virtio');
    expect(spec.nics[0]!.model).toBe('virtio-net-pci');
    expect(spec.cdroms).toEqual([
      { path: '/srv/Win11.iso', role: 'install' },
      { path: '/usr/share/virtio-win/virtio-win.iso', role: 'drivers' },
    ]);
  });

  it('plans Windows 7, Windows 11 and Fedora differently where they must', () => {
    const host = smallHost({ accel: 'kvm', graphics: [virgl, twoD], memoryBytes: 32 * GiB, cpus: 16 });
    const win7 = asSpec(plan('win7', host).spec);
    const win11 = asSpec(plan('win11', host).spec);
    const fedora = asSpec(plan('fedora37', host).spec);
    // Firmware: Windows 7 predates UEFI Secure Boot; Fedora gets UEFI without it.
    expect(win7.firmware.type).toBe('bios');
    expect(win11.firmware).toMatchObject({ type: 'uefi', secureBoot: true });
    expect(fedora.firmware).toMatchObject({ type: 'uefi', secureBoot: false });
    // Disk bus: Linux drives virtio-blk; Windows without virtio-win gets SATA.
    expect(fedora.disks[0]!.bus).toBe('virtio');
    expect(win7.disks[0]!.bus).toBe('sata');
    // Hyper-V and the clock: Windows only.
    expect([win7.hyperv, win11.hyperv, fedora.hyperv]).toEqual([true, true, false]);
    expect([win7.clock, win11.clock, fedora.clock]).toEqual(['localtime', 'localtime', 'utc']);
    expect([win7.tpm, win11.tpm, fedora.tpm]).toEqual([false, true, false]);
    // 3D: virgl for Linux, which has the driver; Windows keeps the 2D device.
    expect(fedora.graphics.device).toBe('virtio-vga-gl');
    expect(fedora.rng).toBe(true);
    expect(fedora.nics[0]!.model).toBe('virtio-net-pci');
  });

  it('gives an OS older than AHCI the i440fx machine with IDE, VGA and BIOS', () => {
    const xp = asSpec(plan('winxp', smallHost()).spec);
    expect(xp.machine).toBe('pc');
    expect(xp.disks[0]!.bus).toBe('ide');
    expect(xp.graphics.device).toBe('vga');
    expect(xp.firmware.type).toBe('bios');
    expect(xp.input).toBe('ps2');
  });

  it('lets an expert override any choice, and says where that goes below the OS minimum', () => {
    const p = plan('win11', smallHost(), {
      overrides: { memory: '2G', tpm: false, diskBus: 'virtio', nic: 'none', sound: 'none', cpus: 1 },
    });
    const spec = asSpec(p.spec);
    expect(spec.memory).toBe('2G');
    expect(spec.tpm).toBe(false);
    expect(spec.disks[0]!.bus).toBe('virtio');
    expect(spec.nics).toEqual([]);
    expect(p.notes.join('\n')).toMatch(/below Microsoft Windows 11's minimum of 4G/);
    expect(p.choices.find((c) => c.item === 'tpm')!.reason).toBe('chosen by you');
  });

  it('notes an OS newer than the database, planned from its closest entry', () => {
    const resolved = resolveOs(db, 'fedora43');
    expect(resolved.note).toMatch(/newer than this osinfo-db/);
    const p = planGuest(
      { name: 'f', os: resolved.entry, intent: 'server', mac: '52:54:00:00:00:02' },
      smallHost({ graphics: [twoD] }),
    );
    expect(asSpec(p.spec).sound).toBe('none');
  });
});

describe('a host GPU named by the user (create --gpu)', () => {
  const realHost = (name: string) => readHost(path.join(import.meta.dirname, '../fixtures/real-hosts', name));
  const offer = async (name: string, os: 'windows' | 'linux', allowBootGpu = false): Promise<HostOffer> =>
    smallHost({ graphics: planGraphics(await realHost(name), QEMU_72, os, 'desktop', { allowBootGpu }) });

  it('by default keeps the host its hardware and says how to hand it over', async () => {
    const p = plan('win11', await offer('desktop-amd-dgpu-isolated', 'windows'));
    expect(p.spec.graphics).toEqual({ device: 'virtio-vga' });
    expect(p.notes).toContain(
      'vfio-passthrough (0000:03:00.0, 0000:03:00.1) would be better on this host: create with --gpu 0000:03:00.0 to hand it over',
    );
  });

  it('puts the strategy that takes it into the spec, by any of its addresses', async () => {
    const p = plan('win11', await offer('desktop-amd-dgpu-isolated', 'windows'), {
      overrides: { gpu: '0000:03:00.1' },
    });
    expect(p.spec.graphics).toEqual({
      device: 'virtio-vga',
      hostDevices: [{ kind: 'vfio', address: '0000:03:00.0', companions: ['0000:03:00.1'] }],
    });
    expect(p.choices.find((c) => c.item === 'graphics')).toMatchObject({
      value: 'vfio-passthrough: 0000:03:00.0, 0000:03:00.1',
      reason: expect.stringMatching(/^chosen by you: AMD 0x73bf at 0000:03:00.0 is alone in IOMMU group 8/),
    });
    expect(asSpec(p.spec).graphics.hostDevices).toHaveLength(1);
    const vf = plan('fedora40', await offer('intel-xe-sriov', 'linux'), {
      overrides: { gpu: '0000:03:00.1' },
    });
    expect(vf.spec.graphics).toEqual({
      device: 'virtio-vga',
      hostDevices: [{ kind: 'vf', address: '0000:03:00.1' }],
    });
  });

  it('prefers a slice to taking the host display, and tells why it cannot hand over a GPU', async () => {
    const gvtg = plan('fedora40', await offer('intel-laptop-gvtg', 'linux', true), {
      overrides: { gpu: '0000:00:02.0' },
    });
    expect(gvtg.spec.graphics).toEqual({
      device: 'none',
      hostDevices: [{ kind: 'mdev', address: '0000:00:02.0', mdevType: 'i915-GVTg_V5_4', display: true }],
    });
    expect(gvtg.notes.join('\n')).not.toMatch(/loses its console/);
    expect(() =>
      plan('fedora40', smallHost(), { overrides: { gpu: '0000:00:02.0', graphics: 'virtio-vga' } }),
    ).toThrow('--gpu chooses the graphics itself: leave out --graphics');
    expect(() =>
      plan('win11', smallHost({ graphics: [twoD] }), { overrides: { gpu: '0000:01:00.0' } }),
    ).toThrow(
      '--gpu 0000:01:00.0: this host offers no way to hand that GPU to this guest (it can hand over none); "phyllome host check" says why',
    );
  });

  it("takes a graphics device chosen by the user as the planner's strategy for it, with what it needs here", () => {
    const host = smallHost({ graphics: [virgl, twoD] });
    const gl = plan('fedora40', host, { overrides: { graphics: 'virtio-vga-gl' } });
    expect(gl.spec.graphics).toEqual(virgl.graphics);
    const windowed = { ...virgl, graphics: { device: 'virtio-vga-gl' as const, window: true } };
    expect(
      plan('fedora40', smallHost({ graphics: [windowed, twoD] }), {
        overrides: { graphics: 'virtio-vga-gl' },
      }).spec.graphics,
    ).toEqual({ device: 'virtio-vga-gl', window: true });
    // One the planner does not offer here is taken as it is.
    expect(plan('fedora40', host, { overrides: { graphics: 'vga' } }).spec.graphics).toEqual({
      device: 'vga',
    });
  });
});
