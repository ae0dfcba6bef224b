import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { planGraphics, planSeats, type GuestFamily, type Strategy } from '../../src/guest/graphics-plan.js';
import { hostDeviceArgs } from '../../src/qemu/cmdline.js';
import { parseSpec } from '../../src/spec/schema.js';
import { hostFindings, type Finding } from '../../src/host/findings.js';
import { readHost, type HostReport } from '../../src/host/report.js';
import { QEMU_72, QEMU_NEW } from '../fixtures/qemu.js';

const identity = {
  schemaVersion: 1,
  uuid: '4b20d080-1b54-4048-85b3-a6a62d165c01',
  createdAt: '2026-11-22T10:00:00.000Z',
};

// Trees built to the detail of real machines (bridges, connectors, by-path links, real IDs), with the
// facts a reader must derive written down beside them, independently of src/host.
const root = path.join(import.meta.dirname, '../fixtures/real-hosts');
let expected: Record<string, unknown>;
const reports = new Map<string, HostReport>();

beforeAll(async () => {
  expected = JSON.parse(await readFile(path.join(root, 'expected.json'), 'utf8')) as Record<string, unknown>;
  for (const name of Object.keys(expected)) reports.set(name, await readHost(path.join(root, name)));
});

const report = (name: string) => reports.get(name)!;
const finding = (name: string, id: string): Finding | undefined =>
  hostFindings(report(name)).find((f) => f.id === id);
/** A plan in short: kind, then the host devices it hands over, or else its display device. */
const brief = (plan: Strategy[]) =>
  plan.map((s) =>
    [s.kind, ...(s.devices ?? [s.graphics.device, s.graphics.renderNode ?? ''])].filter(Boolean).join(' '),
  );
const windows11 = (name: string) => brief(planGraphics(report(name), QEMU_72, 'windows', 'desktop'));
const fedora = (name: string) => brief(planGraphics(report(name), QEMU_72, 'linux', 'desktop'));

describe('hosts recorded in full detail', () => {
  it('every folder has its expected facts', async () => {
    const folders = (await readdir(root, { withFileTypes: true }))
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
    expect(folders.sort()).toEqual(Object.keys(expected).sort());
  });

  it('readHost derives exactly the recorded facts, reading everything', () => {
    for (const [name, r] of reports) {
      expect(r.unreadable, name).toEqual([]);
      const got = {
        cpuVendor: r.cpu.vendor,
        virtFlag: r.cpu.virtFlag ?? null,
        cpus: r.cpu.cpus,
        kvmDevice: r.kvm.device,
        nested: r.kvm.nested ?? null,
        iommu: r.iommu.enabled,
        gpus: r.gpus.map((g) => ({
          bdf: g.bdf,
          vendor: g.vendor,
          driver: g.driver ?? null,
          bootVga: g.bootVga,
          renderNode: g.renderNode ?? null,
          iommuGroup: g.iommuGroup ?? null,
          isolated: g.isolated ?? null,
          sriovTotalVfs: g.sriov?.totalVfs ?? null,
          isVf: g.isVf,
          mdevTypes: g.mdevTypes.map((t) => t.id),
        })),
      };
      expect(got, name).toEqual(expected[name]);
    }
  });

  it('plans keep the rules an expert applies, on every host and guest', () => {
    for (const [name, r] of reports) {
      expect(() => hostFindings(r), name).not.toThrow();
      for (const qemu of [QEMU_72, QEMU_NEW]) {
        for (const guest of ['linux', 'windows', 'macos', 'bsd'] as const) {
          const plan = planGraphics(r, qemu, guest, 'desktop');
          expect(plan.at(-1)?.kind, `${name}/${guest}`).toBe('virtio-2d');
          if (guest !== 'linux')
            expect(plan.some((s) => s.kind.startsWith('virtio-') && s.kind !== 'virtio-2d')).toBe(false);
          for (const s of plan.filter((x) => x.kind === 'vfio-passthrough')) {
            const gpu = r.gpus.find((g) => g.bdf === s.devices![0])!;
            expect(gpu.isolated && !gpu.bootVga, `${name}: ${gpu.bdf}`).toBe(true);
          }
        }
      }
      for (const seat of planSeats(r, { allowBootGpu: true })) {
        expect(r.gpus.find((g) => g.bdf === seat.gpu[0])?.isolated, name).toBe(true);
      }
    }
  });

  it('the shared NVIDIA group and the two-seat workstation read as a person would expect', () => {
    const shared = reports.get('nvidia-shared-group')!;
    expect(hostFindings(shared).find((f) => f.id === 'gpu-0000:01:00.0')?.level).toBe('warn');
    expect(planGraphics(shared, QEMU_72, 'windows', 'gaming').map((s) => s.kind)).toEqual(['virtio-2d']);
    expect(planSeats(reports.get('two-dgpus-two-seats')!, { allowBootGpu: true })).toHaveLength(2);
  });
});

describe('findings and ranked plans of each recorded host', () => {
  it('intel-laptop-gvtg: GVT-g slices for both guests; the only GPU stays with the host', () => {
    const r = report('intel-laptop-gvtg');
    expect(r.gpus[0]).toMatchObject({
      vendor: 'intel',
      bootVga: true,
      isolated: true,
      renderNode: 'renderD128',
    });
    expect(r.gpus[0]!.mdevTypes.map((t) => t.id)).toEqual(['i915-GVTg_V5_4', 'i915-GVTg_V5_8']);
    expect(r.kvm).toEqual({ device: true, module: 'kvm_intel', nested: true });
    expect(windows11('intel-laptop-gvtg')).toEqual([
      'mdev 0000:00:02.0/i915-GVTg_V5_4',
      'virtio-2d virtio-vga',
    ]);
    expect(fedora('intel-laptop-gvtg')).toEqual([
      'mdev 0000:00:02.0/i915-GVTg_V5_4',
      'virtio-virgl virtio-vga-gl /dev/dri/renderD128',
      'virtio-2d virtio-vga',
    ]);
  });

  it('desktop-amd-dgpu-isolated: the AMD card goes whole to the guest with its audio; virgl uses the iGPU', () => {
    const gpu = report('desktop-amd-dgpu-isolated').gpus.find((g) => g.vendor === 'amd')!;
    expect(gpu).toMatchObject({
      isolated: true,
      iommuGroup: 8,
      companions: ['0000:03:00.1'],
      resetMethods: ['bus'],
    });
    expect(finding('desktop-amd-dgpu-isolated', 'gpu-0000:03:00.0')).toMatchObject({ level: 'ok' });
    expect(windows11('desktop-amd-dgpu-isolated')).toEqual([
      'vfio-passthrough 0000:03:00.0 0000:03:00.1',
      'virtio-2d virtio-vga',
    ]);
    expect(fedora('desktop-amd-dgpu-isolated')).toEqual([
      'vfio-passthrough 0000:03:00.0 0000:03:00.1',
      'virtio-virgl virtio-vga-gl /dev/dri/renderD128',
      'virtio-2d virtio-vga',
    ]);
  });

  it('nvidia-shared-group: not isolated (chipset USB and SATA share its group), so never passed through', () => {
    expect(report('nvidia-shared-group').gpus[0]).toMatchObject({ isolated: false, iommuGroup: 2 });
    const f = finding('nvidia-shared-group', 'gpu-0000:01:00.0')!;
    expect(f.level).toBe('warn');
    expect(f.title).toMatch(/shares IOMMU group 2 with 0000:02:00.0, 0000:02:00.1, 0000:05:00.0,/);
    expect(f.fix).not.toMatch(/acs/i);
    expect(windows11('nvidia-shared-group')).toEqual(['virtio-2d virtio-vga']);
    expect(fedora('nvidia-shared-group')).toEqual([
      'virtio-virgl virtio-vga-gl /dev/dri/renderD128',
      'virtio-2d virtio-vga',
    ]);
  });

  it('iommu-off: says which kernel argument and firmware switch turn it on', () => {
    expect(report('iommu-off').iommu).toEqual({ enabled: false, units: [], groups: 0 });
    expect(finding('iommu-off', 'iommu')).toMatchObject({
      level: 'warn',
      fix: 'Add "intel_iommu=on iommu=pt" to the kernel command line and turn on VT-d in the firmware setup',
    });
    expect(finding('iommu-off', 'kvm-nested')).toMatchObject({ title: 'Nested virtualization off' });
    expect(windows11('iommu-off')).toEqual(['virtio-2d virtio-vga']);
    expect(fedora('iommu-off')[0]).toBe('virtio-virgl virtio-vga-gl /dev/dri/renderD128');
  });

  it('no-virt-flags: tells to turn on VT-x in the firmware and that /dev/kvm is missing', () => {
    expect(finding('no-virt-flags', 'cpu-virtualization')).toMatchObject({
      level: 'fail',
      fix: 'Turn on VT-x (Intel Virtualization Technology) in the firmware (BIOS/UEFI) setup',
    });
    expect(finding('no-virt-flags', 'kvm-device')).toMatchObject({
      level: 'fail',
      fix: 'Load the KVM module: modprobe kvm_intel',
    });
  });

  it('intel-xe-sriov: a VF for each guest; the PF, whose VFs others use, is not handed out whole', () => {
    const pf = report('intel-xe-sriov').gpus.find((g) => g.bdf === '0000:03:00.0')!;
    expect(pf.sriov).toEqual({ totalVfs: 12, numVfs: 2, vfs: ['0000:03:00.1', '0000:03:00.2'] });
    expect(pf.companions).toEqual([]);
    expect(
      report('intel-xe-sriov')
        .gpus.filter((g) => g.isVf)
        .map((g) => g.bdf),
    ).toEqual(['0000:03:00.1', '0000:03:00.2']);
    expect(windows11('intel-xe-sriov')).toEqual(['sriov-vf 0000:03:00.1', 'virtio-2d virtio-vga']);
    expect(fedora('intel-xe-sriov')).toEqual([
      'sriov-vf 0000:03:00.1',
      'virtio-virgl virtio-vga-gl /dev/dri/renderD128',
      'virtio-2d virtio-vga',
    ]);
  });

  it('two-dgpus-two-seats: the non-boot card goes to the guest, the boot card stays with the host', () => {
    const gpus = report('two-dgpus-two-seats').gpus;
    expect(gpus.map((g) => [g.bdf, g.isolated, g.bootVga])).toEqual([
      ['0000:21:00.0', true, true],
      ['0000:4b:00.0', true, false],
    ]);
    expect(windows11('two-dgpus-two-seats')[0]).toBe('vfio-passthrough 0000:4b:00.0 0000:4b:00.1');
    // One seat by default; two when the host gives up its own display, as an appliance host can.
    expect(planSeats(report('two-dgpus-two-seats'))).toEqual([
      { gpu: ['0000:4b:00.0', '0000:4b:00.1'], usb: '0000:22:00.3' },
    ]);
    expect(planSeats(report('two-dgpus-two-seats'), { allowBootGpu: true })).toEqual([
      { gpu: ['0000:21:00.0', '0000:21:00.1'], usb: '0000:22:00.3' },
      { gpu: ['0000:4b:00.0', '0000:4b:00.1'], usb: '0000:4c:00.3' },
    ]);
    expect(planSeats(report('nvidia-shared-group'), { allowBootGpu: true })).toEqual([]);
    expect(planSeats(report('iommu-off'))).toEqual([]);
    expect(fedora('two-dgpus-two-seats')[0]).toBe('vfio-passthrough 0000:4b:00.0 0000:4b:00.1');
  });

  it('amd-apu-only: the only GPU, without a reset method, is flagged and kept by the host', () => {
    expect(finding('amd-apu-only', 'gpu-0000:07:00.0')).toMatchObject({
      level: 'warn',
      title: expect.stringMatching(/no reset method/),
    });
    expect(windows11('amd-apu-only')).toEqual(['virtio-2d virtio-vga']);
    expect(fedora('amd-apu-only')).toEqual([
      'virtio-virgl virtio-vga-gl /dev/dri/renderD128',
      'virtio-2d virtio-vga',
    ]);
  });

  it('kvm-unusable: a VM host without vmx; virgl falls back to llvmpipe', () => {
    expect(finding('kvm-unusable', 'cpu-virtualization')).toMatchObject({
      level: 'fail',
      fix: 'This host is itself a VM: enable nested virtualization on the machine that runs it',
    });
    expect(report('kvm-unusable').kvm.device).toBe(true);
    expect(fedora('kvm-unusable')).toEqual(['virtio-virgl virtio-vga-gl /dev/null', 'virtio-2d virtio-vga']);
    const live = hostFindings(report('kvm-unusable'), {
      accel: { accel: 'tcg', warning: 'KVM is not usable (the test vCPU did not run within 3000 ms)' },
    });
    expect(live.find((f) => f.id === 'kvm-usable')).toMatchObject({ level: 'fail' });
  });

  it('each strategy is one spec setting, and hardware ones become the exact QEMU devices', () => {
    for (const [name, r] of reports) {
      for (const guest of ['linux', 'windows'] as const) {
        for (const s of planGraphics(r, QEMU_NEW, guest, 'desktop', { allowBootGpu: true })) {
          expect(
            () => parseSpec({ ...identity, name: 'x', graphics: s.graphics }),
            `${name}: ${s.kind}`,
          ).not.toThrow();
        }
      }
    }
    const devices = (host: string, guest: GuestFamily = 'windows') => {
      const s = planGraphics(report(host), QEMU_72, guest, 'desktop')[0]!;
      const spec = parseSpec({ ...identity, name: 'x', graphics: s.graphics });
      return spec.graphics.hostDevices!.flatMap((d, i) =>
        hostDeviceArgs(d.kind === 'mdev' ? { ...d, uuid: identity.uuid } : d, i),
      );
    };
    expect(devices('desktop-amd-dgpu-isolated')).toEqual([
      '-device',
      'pcie-root-port,id=hostdev-port0,chassis=10',
      '-device',
      'vfio-pci,id=hostdev0.0,host=0000:03:00.0,bus=hostdev-port0,addr=00.0,multifunction=on',
      '-device',
      'vfio-pci,id=hostdev0.1,host=0000:03:00.1,bus=hostdev-port0,addr=00.1',
    ]);
    expect(devices('intel-xe-sriov')).toEqual([
      '-device',
      'pcie-root-port,id=hostdev-port0,chassis=10',
      '-device',
      'vfio-pci,id=hostdev0.0,host=0000:03:00.1,bus=hostdev-port0,addr=00.0',
    ]);
    expect(devices('intel-laptop-gvtg', 'linux')).toEqual([
      '-device',
      `vfio-pci-nohotplug,id=hostdev0,sysfsdev=/sys/bus/mdev/devices/${identity.uuid},display=on,ramfb=on`,
    ]);
    expect(
      planGraphics(report('amd-apu-only'), QEMU_72, 'windows', 'desktop')[0]!.graphics.hostDevices,
    ).toBeUndefined();
  });

  it('nvidia-vgpu-server: a vGPU slice for Windows and Linux guests, never the shared card whole', () => {
    const t4 = report('nvidia-vgpu-server').gpus.find((g) => g.vendor === 'nvidia')!;
    expect(t4).toMatchObject({ class: '0x030200', isolated: true, iommuGroup: 31, bootVga: false });
    expect(t4.mdevTypes.find((t) => t.id === 'nvidia-231')).toEqual({
      id: 'nvidia-231',
      name: 'GRID T4-2Q',
      available: 7,
      description: 'num_heads=4, frl_config=60, framebuffer=2048M, max_resolution=7680x4320, max_instance=8',
    });
    expect(finding('nvidia-vgpu-server', 'mdev-0000:18:00.0-nvidia-231')).toMatchObject({
      level: 'ok',
      title: '0000:18:00.0 mediated type GRID T4-2Q (nvidia-231): 7 available',
    });
    expect(windows11('nvidia-vgpu-server')).toEqual([
      'nvidia-vgpu 0000:18:00.0/nvidia-231',
      'virtio-2d virtio-vga',
    ]);
    expect(fedora('nvidia-vgpu-server')).toEqual([
      'nvidia-vgpu 0000:18:00.0/nvidia-231',
      'virtio-virgl virtio-vga-gl /dev/null',
      'virtio-2d virtio-vga',
    ]);
    const [vgpu] = planGraphics(report('nvidia-vgpu-server'), QEMU_72, 'windows', 'gaming');
    expect(vgpu!.graphics).toEqual({
      device: 'virtio-vga',
      hostDevices: [{ kind: 'mdev', address: '0000:18:00.0', mdevType: 'nvidia-231' }],
    });
    expect(vgpu!.why).toMatch(
      /GRID T4-2Q \(7 more instance\(s\) available; num_heads=4, .*\) .*NVIDIA's Windows driver$/,
    );
    expect(vgpu!.tradeoff).toMatch(/vGPU manager driver on the host .* licence server/);
    // NVIDIA's guest drivers exist for Windows and Linux only; the BMC's VGA is never handed out.
    expect(
      planGraphics(report('nvidia-vgpu-server'), QEMU_72, 'macos', 'desktop').map((s) => s.kind),
    ).toEqual(['virtio-2d']);
  });

  it('picks a workstation (Q) vGPU profile before business, streaming and compute ones', () => {
    const t4 = report('nvidia-vgpu-server').gpus.find((g) => g.vendor === 'nvidia')!;
    const fresh: HostReport = {
      ...report('nvidia-vgpu-server'),
      gpus: [{ ...t4, mdevTypes: t4.mdevTypes.map((t) => ({ ...t, available: 4 })) }],
    };
    expect(brief(planGraphics(fresh, QEMU_72, 'windows', 'desktop'))[0]).toBe(
      'nvidia-vgpu 0000:18:00.0/nvidia-230',
    );
  });

  it('single-GPU passthrough only when asked, and then with its caveats', () => {
    const apu = report('amd-apu-only');
    expect(planGraphics(apu, QEMU_72, 'windows', 'gaming').map((s) => s.kind)).toEqual(['virtio-2d']);
    const [only] = planGraphics(apu, QEMU_72, 'windows', 'gaming', { allowBootGpu: true });
    expect(only!.graphics.hostDevices).toEqual([
      {
        kind: 'vfio',
        address: '0000:07:00.0',
        companions: ['0000:07:00.1', '0000:07:00.2', '0000:07:00.3', '0000:07:00.4', '0000:07:00.6'],
      },
    ]);
    expect(only!.tradeoff).toMatch(/no reset method/);
    expect(only!.caveats).toEqual([
      "The host loses its console: 0000:07:00.0 drives the host's screen, and the VM takes it while it runs",
      "Before starting the VM, stop the host's display manager (systemctl stop display-manager) and unbind 0000:07:00.0 from amdgpu (the launch check prints the commands)",
      'While the VM runs the host has no graphics to fix problems with: keep SSH access to the host',
      'Recovery is over SSH: stop the VM, then give 0000:07:00.0 back to amdgpu (or reboot the host)',
    ]);
    // With two cards, the second needs no caveats; the boot card is offered after it, with them.
    const two = planGraphics(report('two-dgpus-two-seats'), QEMU_72, 'windows', 'desktop', {
      allowBootGpu: true,
    });
    expect(two.map((s) => [s.devices?.[0] ?? s.kind, !!s.caveats])).toEqual([
      ['0000:4b:00.0', false],
      ['0000:21:00.0', true],
      ['virtio-2d', false],
    ]);
    // Never a GPU that is not isolated, asked or not.
    expect(
      planGraphics(report('nvidia-shared-group'), QEMU_72, 'windows', 'desktop', { allowBootGpu: true }).map(
        (s) => s.kind,
      ),
    ).toEqual(['virtio-2d']);
  });

  it('with a newer QEMU: DRM native context, then venus, then virgl, only for Linux', () => {
    const plan = planGraphics(report('amd-apu-only'), QEMU_NEW, 'linux', 'desktop');
    expect(brief(plan)).toEqual([
      'virtio-native-context virtio-gpu-gl-pci /dev/dri/renderD128',
      'virtio-venus virtio-gpu-gl-pci /dev/dri/renderD128',
      'virtio-virgl virtio-vga-gl /dev/dri/renderD128',
      'virtio-2d virtio-vga',
    ]);
    expect(plan[0]!.graphics!.features).toEqual(['blob', 'drm_native_context']);
    // NVIDIA has no DRM native context; Windows has none of these drivers.
    expect(brief(planGraphics(report('nvidia-shared-group'), QEMU_NEW, 'linux', 'desktop'))[0]).toBe(
      'virtio-venus virtio-gpu-gl-pci /dev/dri/renderD128',
    );
    expect(brief(planGraphics(report('amd-apu-only'), QEMU_NEW, 'windows', 'desktop'))).toEqual([
      'virtio-2d virtio-vga',
    ]);
  });

  it('server intent puts plain 2D first; gaming keeps hardware first', () => {
    expect(brief(planGraphics(report('desktop-amd-dgpu-isolated'), QEMU_72, 'linux', 'server'))[0]).toBe(
      'virtio-2d virtio-vga',
    );
    expect(brief(planGraphics(report('desktop-amd-dgpu-isolated'), QEMU_72, 'linux', 'gaming'))[0]).toMatch(
      /^vfio-passthrough/,
    );
  });

  it('without virgl in QEMU, Linux gets 2D and is told why', () => {
    const plan = planGraphics(report('amd-apu-only'), { ...QEMU_72, virtioVgaGl: false }, 'linux', 'desktop');
    expect(brief(plan)).toEqual(['virtio-2d virtio-vga']);
  });
});
