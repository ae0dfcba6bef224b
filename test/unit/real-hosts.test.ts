import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { planGraphics, planSeats } from '../../src/guest/graphics-plan.js';
import { hostFindings } from '../../src/host/findings.js';
import { readHost, type HostReport } from '../../src/host/report.js';
import { QEMU_72, QEMU_NEW } from '../fixtures/qemu.js';

// Trees built to the detail of real machines (bridges, connectors, by-path links, real IDs), with the
// facts a reader must derive written down beside them, independently of src/host.
const root = path.join(import.meta.dirname, '../fixtures/real-hosts');
let expected: Record<string, unknown>;
const reports = new Map<string, HostReport>();

beforeAll(async () => {
  expected = JSON.parse(await readFile(path.join(root, 'expected.json'), 'utf8')) as Record<string, unknown>;
  for (const name of Object.keys(expected)) reports.set(name, await readHost(path.join(root, name)));
});

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
