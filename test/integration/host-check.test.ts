import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { cli, createGuest, json, ok, stopDaemon, useHome, type Vm } from './helpers.js';

const home = useHome();

interface Check {
  report: { kvm: { device: boolean } };
  findings: { id: string; level: string; title: string; fix?: string }[];
  plans: Record<string, { kind: string; graphics?: { device: string; renderNode?: string } }[]>;
}

describe('phyllome host check', () => {
  it('checks this machine with live probes, and exits 3 when something fails', async () => {
    const r = await cli(home(), ['host', 'check', '--json']);
    const check = JSON.parse(r.stdout) as Check;
    const kvm = check.findings.find((f) => f.id === 'kvm-usable')!;
    expect(['ok', 'fail']).toContain(kvm.level);
    expect(r.code).toBe(check.findings.some((f) => f.level === 'fail') ? 3 : 0);
    // Debian's QEMU with qemu-system-gui (installed by scripts/install-deps.sh) does virgl.
    expect(check.findings.find((f) => f.id === 'qemu-virgl')).toMatchObject({ level: 'ok' });
    expect(check.plans.linux![0]).toMatchObject({
      kind: 'virtio-virgl',
      graphics: { device: 'virtio-vga-gl' },
    });
    expect(check.plans.windows![0]!.kind).not.toBe('virtio-virgl');
  });

  it('reads a missing --root as an empty host, runs no live probe and does not hang', async () => {
    const started = Date.now();
    const r = await cli(home(), ['host', 'check', '--json', '--root', '/nonexistent/recorded-host']);
    const check = JSON.parse(r.stdout) as Check;
    expect(check.report.kvm.device).toBe(false);
    expect(check.findings.find((f) => f.id === 'kvm-usable')).toBeUndefined();
    expect(r.code).toBe(3);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('prints findings with their fixes for people', async () => {
    const r = await cli(home(), ['host', 'check', '--root', '/nonexistent/recorded-host']);
    expect(r.stdout).toMatch(
      /^FAIL {2}\/dev\/kvm is missing\n {6}→ Load the KVM module: modprobe kvm_intel$/m,
    );
    expect(r.stdout).toMatch(/Best graphics for each guest \(desktop\):\n {2}linux {4}virtio-virgl/);
  });

  it('replays a recorded host: passthrough for Windows, a seat, no live probes', async () => {
    const h = home();
    const root = path.join(import.meta.dirname, '../fixtures/real-hosts/desktop-amd-dgpu-isolated');
    const r = await cli(h, ['host', 'check', '--root', root]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ok {4}IOMMU on \(dmar0, dmar1\), 11 groups$/m);
    expect(r.stdout).toMatch(/^ {2}windows {2}vfio-passthrough \(0000:03:00\.0, 0000:03:00\.1\)/m);
    expect(r.stdout).toMatch(
      /^Seat 1: screen on 0000:03:00\.0 \+ 0000:03:00\.1, keyboard and mouse on USB controller 0000:00:14\.0$/m,
    );
    expect(r.stdout).not.toMatch(/KVM runs guest code|KVM is not usable/);
  });

  it('prints the caveats of single-GPU passthrough when the boot GPU is offered', async () => {
    const root = path.join(import.meta.dirname, '../fixtures/real-hosts/amd-apu-only');
    const plain = await cli(home(), ['host', 'check', '--root', root]);
    expect(plain.stdout).toMatch(/^ {2}windows {2}virtio-2d: /m);
    expect(plain.stdout).not.toMatch(/loses its console/);
    const r = await cli(home(), ['host', 'check', '--root', root, '--allow-boot-gpu']);
    expect(r.stdout).toMatch(/^ {2}windows {2}vfio-passthrough \(0000:07:00\.0, 0000:07:00\.1, /m);
    expect(r.stdout).toMatch(
      /^ {11}! The host loses its console: 0000:07:00\.0 drives the host's screen, and the VM takes it while it runs$/m,
    );
    expect(r.stdout).toMatch(
      /^ {11}! Recovery is over SSH: stop the VM, then give 0000:07:00\.0 back to amdgpu/m,
    );
  });

  it('a VM whose host GPU is not on this host does not start, and says what to do', async () => {
    const h = home();
    await createGuest(h, 'gpu');
    await stopDaemon(h);
    const file = path.join(h.home, 'vms', 'gpu', 'vm.json');
    const spec = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    spec.graphics = {
      device: 'none',
      hostDevices: [
        { kind: 'vf', address: '0000:7f:00.1' },
        { kind: 'mdev', address: '0000:7e:00.0', mdevType: 'nvidia-231', uuid: spec.uuid },
      ],
    };
    await writeFile(file, JSON.stringify(spec));
    const r = await cli(h, ['start', 'gpu']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      '0000:7f:00.1 is not on this host (no /sys/bus/pci/devices/0000:7f:00.1): check the address with "phyllome host check" or lspci -D, then edit the VM',
    );
    expect((await json<Vm>(h, ['status', 'gpu'])).state).toBe('stopped');
    expect(await ok(h, ['status', 'gpu'])).toMatch(/^Host GPU +0000:7f:00\.1 \(SR-IOV VF\)$/m);
    // Deleting it removes its mediated device, here one that was never made.
    await ok(h, ['delete', 'gpu']);
    expect(await json<unknown[]>(h, ['list', '--json'])).toEqual([]);
  });

  it('create --gpu names a GPU this host cannot hand over: refused with why, nothing created', async () => {
    const h = home();
    const r = await cli(h, ['create', 'g', '--os', 'fedora40', '--gpu', '0000:7f:00.0', '--dry-run']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      '--gpu 0000:7f:00.0: this host offers no way to hand that GPU to this guest (it can hand over none); "phyllome host check" says why',
    );
    const bad = await cli(h, ['create', 'g', '--os', 'fedora40', '--gpu', '7f:00.0,x=1', '--dry-run']);
    expect(bad.stderr).toMatch(/overrides.gpu: must be a PCI address like 0000:03:00.0/);
    expect((await cli(h, ['create', 'g', '--gpu', '0000:7f:00.0'])).stderr).toContain(
      '--intent and --gpu need --os or --iso to plan for',
    );
    expect(await json<unknown[]>(h, ['list', '--json'])).toEqual([]);
  });
});
