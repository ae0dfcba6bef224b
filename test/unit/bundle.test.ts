import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import { constants, zstdCompressSync } from 'node:zlib';
import tar from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BundleError,
  fileSink,
  packBundle,
  streamSink,
  tarHeader,
  unpackBundle,
} from '../../src/bundle/archive.js';
import { BUNDLE_DIR, bundleLayout, unbundledPaths } from '../../src/bundle/layout.js';
import { manifestProblems, memberProblem, type Manifest } from '../../src/bundle/manifest.js';
import { hostDevicePaths, replan, type ImportHost } from '../../src/bundle/replan.js';
import { parseSpec, type VmSpec } from '../../src/spec/schema.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'bundle-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const head = {
  format: 'phyllome-bundle' as const,
  version: 1 as const,
  vm: 'a',
  createdAt: '2026-01-01T00:00:00Z',
};

/** A bundle written through a file sink (zstd writes into the file) or a stream sink (relayed). */
async function makeBundle(macKey?: Buffer, via: 'file' | 'stream' = 'file'): Promise<string> {
  const disk = path.join(dir, 'src.img');
  await writeFile(disk, Buffer.concat([Buffer.alloc(3 << 20, 1), Buffer.from('MARKER')]));
  const out = path.join(dir, `a-${via}.phyllome`);
  const options = {
    members: [
      { name: 'vm.json', data: Buffer.from('{"name":"a"}') },
      { name: 'disk0.qcow2', file: async () => disk },
      { name: 'tpm/tpm2-00.permall', data: Buffer.from('tpm') },
    ],
    manifest: head,
    ...(macKey ? { macKey } : {}),
  };
  if (via === 'file') {
    const f = await fileSink(out);
    await packBundle(options, f.sink);
    expect(await f.end()).toBe((await stat(out)).size);
  } else {
    const s = streamSink();
    await Promise.all([pipeline(s.stream, createWriteStream(out)), packBundle(options, s.sink).then(s.end)]);
  }
  return out;
}

async function unpack(file: string | Buffer, macKey?: Buffer) {
  const to = await mkdtemp(path.join(dir, 'out-'));
  const input = typeof file === 'string' ? createReadStream(file) : Readable.from([file]);
  const u = await unpackBundle(input, to, () => undefined);
  return { ...u, to, problems: manifestProblems(u.manifest, u.seen, macKey) };
}

/** Rewrites a bundle's tar (decompressed), e.g. to add a member, and compresses it again. */
async function retar(
  file: string,
  edit: (entries: { name: string; data: Buffer }[]) => void,
): Promise<Buffer> {
  const entries: { name: string; data: Buffer }[] = [];
  const extract = tar.extract();
  const reading = (async () => {
    for await (const e of extract) {
      const chunks: Buffer[] = [];
      for await (const c of e as AsyncIterable<Buffer>) chunks.push(c);
      entries.push({ name: e.header.name, data: Buffer.concat(chunks) });
    }
  })();
  // The zstd program: a bundle is a series of frames, which Node's decompressor stops after the first of.
  extract.end(execFileSync('zstd', ['-q', '-d', '-c', file], { maxBuffer: 1 << 30 }));
  await reading;
  edit(entries);
  const pack = tar.pack();
  for (const e of entries) pack.entry({ name: e.name, size: e.data.length }, e.data);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  return zstdCompressSync(Buffer.concat(chunks), { params: { [constants.ZSTD_c_compressionLevel]: 1 } });
}

describe('bundle archive', () => {
  it.each(['file', 'stream'] as const)(
    'round-trips members with their checksums through a %s sink; the manifest comes last',
    async (via) => {
      const file = await makeBundle(undefined, via);
      const u = await unpack(file);
      expect(u.problems).toEqual([]);
      expect(u.spec).toEqual({ name: 'a' });
      expect(u.manifest.members.map((m) => m.path)).toEqual([
        'vm.json',
        'disk0.qcow2',
        'tpm/tpm2-00.permall',
      ]);
      expect((await readFile(path.join(u.to, 'disk0.qcow2'))).subarray(-6).toString()).toBe('MARKER');
      expect(await readFile(path.join(u.to, 'tpm/tpm2-00.permall'), 'utf8')).toBe('tpm');
      // 3 MiB of one byte compresses to almost nothing.
      expect((await readFile(file)).length).toBeLessThan(4096);
      // Only the finished bundle is there: no part file left beside it.
      expect((await readdir(dir)).filter((n) => n.includes('.part-'))).toEqual([]);
    },
  );

  it('a file sink refuses an existing file, and an aborted pack leaves nothing', async () => {
    const first = await makeBundle();
    await expect(fileSink(first)).rejects.toThrow(/already exists/);
    const big = path.join(dir, 'big.img');
    await writeFile(big, Buffer.alloc(64 << 20, 7));
    const out = path.join(dir, 'aborted.phyllome');
    const f = await fileSink(out);
    const stop = new AbortController();
    const packing = packBundle(
      { members: [{ name: 'disk0.qcow2', file: async () => big }], manifest: head, signal: stop.signal },
      f.sink,
    );
    stop.abort();
    await expect(packing).rejects.toThrow();
    await f.fail();
    expect((await readdir(dir)).filter((n) => n.startsWith('aborted'))).toEqual([]);
  });

  it('finds a flipped byte in a member', async () => {
    const file = await makeBundle();
    const flipped = await retar(file, (es) => {
      const d = es.find((e) => e.name === 'disk0.qcow2')!.data;
      d.writeUInt8(d.readUInt8(d.length - 1) ^ 1, d.length - 1);
    });
    expect((await unpack(flipped)).problems).toEqual([
      'member "disk0.qcow2" does not match its checksum: the bundle is damaged or altered',
    ]);
  });

  it('refuses a truncated bundle', async () => {
    const file = await makeBundle();
    const data = await readFile(file);
    await expect(unpack(data.subarray(0, data.length - 40))).rejects.toThrow(BundleError);
    await expect(unpack(data.subarray(0, data.length - 40))).rejects.toThrow(/truncated/);
  });

  it('refuses a member that is not in the manifest, or after it, or outside the folder', async () => {
    const file = await makeBundle();
    const extra = await retar(file, (es) => es.splice(1, 0, { name: 'disk1.qcow2', data: Buffer.from('x') }));
    expect((await unpack(extra)).problems).toEqual(['member "disk1.qcow2" is not in the manifest']);
    const after = await retar(file, (es) => es.push({ name: 'kernel', data: Buffer.from('x') }));
    await expect(unpack(after)).rejects.toThrow('member "kernel" follows the manifest');
    const escape = await retar(file, (es) =>
      es.splice(1, 0, { name: 'tpm/../../etc/x', data: Buffer.from('x') }),
    );
    await expect(unpack(escape)).rejects.toThrow('leaves the bundle');
    const missing = await retar(file, (es) => es.splice(2, 1));
    expect((await unpack(missing)).problems).toEqual([
      'member "tpm/tpm2-00.permall" is missing: the bundle is incomplete',
    ]);
  });

  it('authenticates the manifest with the passphrase key', async () => {
    const key = Buffer.alloc(32, 9);
    const file = await makeBundle(key);
    expect((await unpack(file, key)).problems).toEqual([]);
    expect((await unpack(file, Buffer.alloc(32, 8))).problems[0]).toMatch(
      /wrong passphrase, or the bundle was altered/,
    );
    // Recomputed checksums do not help a forger: the MAC covers them.
    const forged = await retar(file, (es) => {
      const m = es.find((e) => e.name === 'manifest.json')!;
      const man = JSON.parse(m.data.toString()) as Manifest;
      man.members[0]!.size += 1;
      m.data = Buffer.from(JSON.stringify(man));
    });
    expect((await unpack(forged, key)).problems[0]).toMatch(/altered/);
  });

  it('writes sizes past 8 GiB in base-256 and long names into the prefix, as tar readers expect', async () => {
    const name = `snapshots/${'a'.repeat(63)}/tpm/${'b'.repeat(64)}`;
    const extract = tar.extract();
    extract.on('error', () => undefined);
    const header = new Promise<tar.Header>((resolve) =>
      extract.on('entry', (h, stream) => {
        resolve(h);
        stream.resume();
      }),
    );
    extract.write(tarHeader(name, 9 * 2 ** 30));
    expect(await header).toMatchObject({ name, size: 9 * 2 ** 30, type: 'file', mode: 0o600 });
  });

  it('names only what a VM folder holds', () => {
    expect(memberProblem('disk3.qcow2')).toBeUndefined();
    expect(memberProblem('snapshots/s1/tpm/tpm2-00.permall')).toBeUndefined();
    expect(memberProblem('/etc/passwd')).toMatch(/leaves the bundle/);
    expect(memberProblem('run.sh')).toMatch(/not part of a VM/);
    expect(memberProblem('snapshots/../tpm/x')).toMatch(/leaves the bundle/);
  });

  it('writes nothing into the target folder it was not asked to', async () => {
    const u = await unpack(await makeBundle());
    expect((await readdir(u.to)).sort()).toEqual(['disk0.qcow2', 'tpm']);
  });
});

const base = (over: Record<string, unknown> = {}): VmSpec =>
  parseSpec({
    schemaVersion: 1,
    uuid: '11111111-2222-4333-8444-555555555555',
    createdAt: '2026-01-01T00:00:00.000Z',
    name: 'src',
    disks: [
      { id: 'disk0', path: '/var/lib/phyllome/vms/src/disk0.qcow2', format: 'qcow2', encrypted: true },
      { id: 'disk1', path: '/srv/data.img', format: 'raw' },
    ],
    boot: { kernel: '/boot/vmlinuz', initrd: '/boot/initrd.img', append: 'console=ttyS0' },
    cdroms: [
      { path: '/var/lib/phyllome/vms/src/cloud-init.iso', role: 'cloud-init' },
      { path: '/isos/win.iso', role: 'install' },
    ],
    nics: [{ model: 'virtio-net-pci', mac: '52:54:00:00:00:01', net: { type: 'bridge', bridge: 'br0' } }],
    firmware: {
      type: 'uefi',
      code: '/usr/share/edk2/ovmf/OVMF_CODE.fd',
      varsTemplate: '/usr/share/edk2/ovmf/OVMF_VARS.fd',
      secureBoot: false,
      enrolledKeys: false,
      smm: false,
    },
    graphics: { device: 'virtio-vga-gl', renderNode: '/dev/dri/renderD129' },
    ...over,
  });

const host = (over: Partial<ImportHost> = {}): ImportHost => ({
  firmware: [
    {
      file: '60-ovmf.json',
      description: 'OVMF',
      interfaceTypes: ['uefi'],
      device: 'flash',
      executable: { filename: '/usr/share/OVMF/OVMF_CODE_4M.fd', format: 'raw' },
      nvramTemplate: { filename: '/usr/share/OVMF/OVMF_VARS_4M.fd', format: 'raw' },
      targets: [{ architecture: 'x86_64', machines: ['pc-q35-*'] }],
      features: [],
    },
  ],
  present: new Set(['/isos/win.iso']),
  bridges: [],
  networks: [],
  links: ['eth0'],
  renderNodes: ['/dev/dri/renderD128'],
  gl: true,
  ...over,
});

/** The new identity an import gives. */
const identity = (name: string) => ({
  name,
  uuid: '99999999-2222-4333-8444-555555555555',
  createdAt: '2026-02-02T00:00:00.000Z',
});

describe('bundle layout and replanning', () => {
  it('carries disks, the kernel and the folder media under the bundle folder, and puts them back', () => {
    const { spec, carried } = bundleLayout(base(), '/var/lib/phyllome/vms/src');
    expect(carried.map((c) => [c.member, c.source, c.disk?.format])).toEqual([
      ['disk0.qcow2', '/var/lib/phyllome/vms/src/disk0.qcow2', 'qcow2'],
      ['disk1.qcow2', '/srv/data.img', 'raw'],
      ['cloud-init.iso', '/var/lib/phyllome/vms/src/cloud-init.iso', undefined],
      ['kernel', '/boot/vmlinuz', undefined],
      ['initrd', '/boot/initrd.img', undefined],
    ]);
    expect(spec.disks.map((d) => [d.path, d.format])).toEqual([
      [`${BUNDLE_DIR}/disk0.qcow2`, 'qcow2'],
      [`${BUNDLE_DIR}/disk1.qcow2`, 'qcow2'],
    ]);
    expect(spec.cdroms[1]!.path).toBe('/isos/win.iso');
    const back = unbundledPaths(spec, '/home/x/vms/dst');
    expect(back.disks.map((d) => d.path)).toEqual([
      '/home/x/vms/dst/disk0.qcow2',
      '/home/x/vms/dst/disk1.qcow2',
    ]);
    expect(back.boot).toEqual({
      kernel: '/home/x/vms/dst/kernel',
      initrd: '/home/x/vms/dst/initrd',
      append: 'console=ttyS0',
    });
    expect(back.cdroms[0]!.path).toBe('/home/x/vms/dst/cloud-init.iso');
  });

  it('fits host parts to this host and says why; a new identity', () => {
    const { spec } = bundleLayout(base(), '/var/lib/phyllome/vms/src');
    const id = identity('moved');
    const r = replan(spec, host({ present: new Set() }), id);
    expect(r.spec.name).toBe('moved');
    expect(r.spec.uuid).toBe(id.uuid);
    expect(r.spec.firmware).toMatchObject({
      type: 'uefi',
      code: '/usr/share/OVMF/OVMF_CODE_4M.fd',
      nvramEncrypted: false,
    });
    expect(r.spec.graphics).toEqual({ device: 'virtio-vga-gl', renderNode: '/dev/dri/renderD128' });
    expect(r.spec.nics[0]!.net).toEqual({ type: 'user', forwards: [], hostLoopback: false });
    expect(r.spec.nics[0]!.mac).not.toBe('52:54:00:00:00:01');
    // The carried seed stays; the ISO absent here leaves an empty tray.
    expect(r.spec.cdroms).toEqual([
      { path: `${BUNDLE_DIR}/cloud-init.iso`, role: 'cloud-init' },
      { role: 'install' },
    ]);
    expect(r.changes.map((c) => c.what)).toEqual([
      'firmware: /usr/share/OVMF/OVMF_CODE_4M.fd',
      'graphics render node: /dev/dri/renderD128',
      'nic 0: user-mode networking',
      'cdrom 1: empty',
      'new MAC addresses',
    ]);
    expect(r.changes[2]!.why).toMatch(/bridge br0 does not exist here/);
  });

  it('falls back to 2D without the GL devices, and to software rendering without a GPU', () => {
    const { spec } = bundleLayout(base(), '/x');
    const id = identity('m');
    expect(replan(spec, host({ gl: false }), id).spec.graphics).toEqual({ device: 'virtio-vga' });
    const soft = replan(spec, host({ renderNodes: [] }), id);
    expect(soft.spec.graphics.renderNode).toBe('/dev/null');
    expect(soft.changes.find((c) => c.what.startsWith('graphics'))!.why).toMatch(/llvmpipe/);
  });

  it("keeps a VM's window where this host has a screen, else shows it in the web console only", () => {
    const { spec } = bundleLayout(base({ graphics: { device: 'virtio-vga-gl', window: true } }), '/x');
    const id = identity('m');
    const shown = replan(spec, host({ localDisplay: 'X11 :0' }), id);
    expect(shown.spec.graphics).toEqual({ device: 'virtio-vga-gl', window: true });
    expect(shown.changes.map((c) => c.what)).not.toContain('graphics: web console only, no window');
    const headless = replan(spec, host({ renderNodes: [] }), id);
    expect(headless.spec.graphics).toEqual({ device: 'virtio-vga-gl', renderNode: '/dev/null' });
    expect(headless.changes.find((c) => c.what === 'graphics: web console only, no window')!.why).toMatch(
      /no screen of its own .*WAYLAND_DISPLAY nor DISPLAY/,
    );
  });

  it('drops host GPU hardware absent here for a display every guest drives; keeps it on its own host', () => {
    const card = base({
      graphics: {
        device: 'virtio-vga',
        hostDevices: [{ kind: 'vfio', address: '0000:03:00.0', companions: ['0000:03:00.1'] }],
      },
    });
    const id = identity('m');
    const moved = replan(card, host(), id);
    expect(moved.spec.graphics).toEqual({ device: 'virtio-vga' });
    expect(moved.changes.find((c) => c.what.startsWith('graphics'))).toEqual({
      what: 'graphics: virtio-vga, without host GPU hardware',
      why: '0000:03:00.0, 0000:03:00.1 are not on this host; every guest drives virtio-vga. "phyllome host check" lists this host\'s GPUs; hand one over with create --gpu',
    });
    const gvtg = base({
      graphics: {
        device: 'none',
        hostDevices: [
          {
            kind: 'mdev',
            address: '0000:00:02.0',
            mdevType: 'i915-GVTg_V5_4',
            uuid: '4b20d080-1b54-4048-85b3-a6a62d165c01',
            display: true,
          },
        ],
      },
    });
    expect(replan(gvtg, host(), id).spec.graphics).toEqual({ device: 'virtio-vga' });
    expect(hostDevicePaths(card.graphics)).toEqual([
      '/sys/bus/pci/devices/0000:03:00.0',
      '/sys/bus/pci/devices/0000:03:00.1',
    ]);
    const home = replan(card, host({ present: new Set(hostDevicePaths(card.graphics)) }), id);
    expect(home.spec.graphics).toEqual(card.graphics);
    const slice = replan(gvtg, host({ present: new Set(hostDevicePaths(gvtg.graphics)) }), id).spec.graphics;
    expect(slice.hostDevices![0]).toMatchObject({ kind: 'mdev', mdevType: 'i915-GVTg_V5_4', display: true });
    // The original VM may hold its instance: the copy makes its own.
    expect(slice.hostDevices![0]).not.toMatchObject({ uuid: '4b20d080-1b54-4048-85b3-a6a62d165c01' });
  });

  it('keeps what this host has', () => {
    const spec = base({ firmware: { type: 'bios' }, nics: [], graphics: { device: 'none' }, cdroms: [] });
    const id = identity('m');
    expect(replan(spec, host(), id).changes).toEqual([]);
  });
});
