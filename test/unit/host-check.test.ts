import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { planGraphics } from '../../src/guest/graphics-plan.js';
import { localDisplay } from '../../src/host/display.js';
import { hostFindings } from '../../src/host/findings.js';
import { readHost } from '../../src/host/report.js';
import { offScreen, withWindow } from '../../src/spec/window.js';
import { QEMU_72 } from '../fixtures/qemu.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'phyllome-host-'));
});
afterEach(() => rm(root, { recursive: true, force: true }));

const put = async (rel: string, text: string) => {
  await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
  await writeFile(path.join(root, rel), text + '\n');
};

describe('host check on partial and broken roots', () => {
  it('reports a missing root as a host with nothing, without failing', async () => {
    const started = Date.now();
    const report = await readHost(path.join(root, 'nonexistent'));
    expect(report).toMatchObject({
      cpu: { cpus: 0 },
      kvm: { device: false },
      iommu: { enabled: false },
      gpus: [],
    });
    const findings = hostFindings(report);
    expect(findings.find((f) => f.id === 'cpu-virtualization')).toMatchObject({ level: 'fail' });
    expect(findings.find((f) => f.id === 'kvm-device')).toMatchObject({
      level: 'fail',
      fix: expect.stringMatching(/modprobe/),
    });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('says what it could not read and goes on', async () => {
    await mkdir(path.join(root, 'proc/cpuinfo'), { recursive: true }); // a folder where a file should be
    await put('sys/bus/pci/devices/0000:00:02.0/class', '0x030000');
    await put('sys/bus/pci/devices/0000:00:02.0/vendor', 'garbage');
    const report = await readHost(root);
    expect(report.unreadable).toEqual(['proc/cpuinfo (EISDIR)']);
    expect(report.gpus).toHaveLength(1);
    expect(report.gpus[0]).toMatchObject({
      bdf: '0000:00:02.0',
      vendor: 'other',
      bootVga: false,
      resetMethods: [],
    });
    expect(hostFindings(report).find((f) => f.id === 'unreadable')).toMatchObject({ level: 'warn' });
  });

  it('judges isolation by the kernel rule: same-slot functions and bridges only', async () => {
    await put('proc/cpuinfo', 'processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu svm lm');
    await mkdir(path.join(root, 'sys/class/iommu/ivhd0'), { recursive: true });
    const device = async (bdf: string, cls: string, group: number) => {
      await put(`sys/bus/pci/devices/${bdf}/class`, cls);
      await put(`sys/bus/pci/devices/${bdf}/vendor`, '0x10de');
      await put(`sys/bus/pci/devices/${bdf}/device`, '0x2504');
      await mkdir(path.join(root, `sys/kernel/iommu_groups/${group}/devices`), { recursive: true });
      await symlink(
        `../../../../bus/pci/devices/${bdf}`,
        path.join(root, `sys/kernel/iommu_groups/${group}/devices/${bdf}`),
      );
    };
    await device('0000:01:00.0', '0x030000', 1);
    await device('0000:01:00.1', '0x040300', 1);
    await device('0000:00:01.0', '0x060400', 1);
    await device('0000:02:00.0', '0x030000', 2);
    await device('0000:03:00.0', '0x0c0330', 2);
    const report = await readHost(root);
    const [a, b] = report.gpus;
    expect(a).toMatchObject({
      bdf: '0000:01:00.0',
      iommuGroup: 1,
      isolated: true,
      companions: ['0000:01:00.1'],
    });
    expect(b).toMatchObject({ bdf: '0000:02:00.0', iommuGroup: 2, isolated: false });
    const findings = hostFindings(report);
    expect(findings.find((f) => f.id === 'gpu-0000:02:00.0')?.title).toMatch(
      /shares IOMMU group 2 with 0000:03:00.0/,
    );
    expect(JSON.stringify(findings)).not.toMatch(/acs/i);
    // Windows gets the isolated, non-boot GPU whole; the shared one is never offered.
    const plan = planGraphics(report, QEMU_72, 'windows', 'gaming');
    expect(plan[0]).toMatchObject({ kind: 'vfio-passthrough', devices: ['0000:01:00.0', '0000:01:00.1'] });
    expect(plan.some((s) => s.devices?.includes('0000:02:00.0'))).toBe(false);
    expect(plan.some((s) => s.kind === 'virtio-virgl')).toBe(false);
  });

  it('reads the NVIDIA vGPU types a VF can become', async () => {
    const vf = 'sys/bus/pci/devices/0000:41:00.4';
    await put(`${vf}/class`, '0x030200');
    await put(`${vf}/vendor`, '0x10de');
    await put(`${vf}/device`, '0x2236');
    await put(
      `${vf}/nvidia/creatable_vgpu_types`,
      'ID    : vGPU Name\n557   : NVIDIA A10-4Q\n558   : NVIDIA A10-6Q',
    );
    const report = await readHost(root);
    expect(report.gpus[0]!.vgpuTypes).toEqual([
      { id: '557', name: 'NVIDIA A10-4Q' },
      { id: '558', name: 'NVIDIA A10-6Q' },
    ]);
    expect(hostFindings(report).find((f) => f.id === 'vgpu-0000:41:00.4')?.title).toMatch(
      /NVIDIA A10-4Q, NVIDIA A10-6Q/,
    );
  });
});

describe("VM windows on the host's own screen", () => {
  it('names the screen from the environment, Wayland first', () => {
    expect(localDisplay({})).toBeUndefined();
    expect(localDisplay({ DISPLAY: ':0' })).toBe('X11 :0');
    expect(localDisplay({ DISPLAY: ':0', WAYLAND_DISPLAY: 'wayland-0' })).toBe('Wayland wayland-0');
  });

  it('plans virgl in a window where there is a screen and QEMU draws windows, off-screen otherwise', async () => {
    const report = await readHost(root);
    const virgl = (q: typeof QEMU_72, localDisplay?: string) =>
      planGraphics(report, q, 'linux', 'desktop', { localDisplay }).find((s) => s.kind === 'virtio-virgl')!;
    expect(virgl(QEMU_72).graphics).toEqual({ device: 'virtio-vga-gl', renderNode: '/dev/null' });
    const shown = virgl(QEMU_72, 'X11 :0');
    expect(shown.graphics).toEqual({ device: 'virtio-vga-gl', window: true });
    expect(shown.why).toMatch(/screen \(X11 :0\), in a window there and in the web console/);
    const noGtk = { ...QEMU_72, displays: QEMU_72.displays.filter((d) => d !== 'gtk') };
    expect(virgl(noGtk, 'X11 :0').graphics).toEqual({ device: 'virtio-vga-gl', renderNode: '/dev/null' });
    // Windows guests keep their honest 2D: a window does not give them 3D.
    expect(planGraphics(report, QEMU_72, 'windows', 'desktop', { localDisplay: 'X11 :0' })).toEqual(
      planGraphics(report, QEMU_72, 'windows', 'desktop'),
    );
  });

  it('says in the live check whether VMs can show in windows here', async () => {
    const report = await readHost(root);
    const finding = (localDisplay: string | false, qemu = QEMU_72) =>
      hostFindings(report, { qemu, localDisplay }).find((f) => f.id === 'local-display');
    expect(finding(false)).toMatchObject({ level: 'ok', title: expect.stringMatching(/web console/) });
    expect(finding('Wayland wayland-0')).toMatchObject({
      level: 'ok',
      title: expect.stringMatching(/windows on this host's screen \(Wayland wayland-0\)/),
    });
    expect(finding('X11 :1', { ...QEMU_72, displays: ['none', 'egl-headless'] })).toMatchObject({
      level: 'warn',
      fix: 'apt-get install qemu-system-gui',
    });
    expect(hostFindings(report).some((f) => f.id === 'local-display')).toBe(false);
  });

  it('turns a window on and off: the off-screen renderer gets a render node back', () => {
    const gl = { device: 'virtio-vga-gl' as const, renderNode: '/dev/dri/renderD128' };
    expect(withWindow(gl)).toEqual({ device: 'virtio-vga-gl', window: true });
    expect(offScreen(withWindow(gl), ['/dev/dri/renderD129'])).toEqual({
      device: 'virtio-vga-gl',
      renderNode: '/dev/dri/renderD129',
    });
    expect(offScreen(withWindow(gl), [])).toEqual({ device: 'virtio-vga-gl', renderNode: '/dev/null' });
    expect(offScreen({ device: 'vga', window: true }, [])).toEqual({ device: 'vga' });
  });
});
