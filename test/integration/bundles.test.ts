import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import tar from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/bundle/manifest.js';
import { Keystore } from '../../src/storage/keystore.js';
import {
  bootArgs,
  cli,
  createGuest,
  destroyHome,
  json,
  makeHome,
  markerOnDisk,
  ok,
  root,
  waitForReady,
  writeMarker,
  type TestHome,
  type Vm,
} from './helpers.js';

/** Two hosts: the exporting home and the importing one, each with its own daemon and keystore. */
let a: TestHome;
let b: TestHome;
beforeEach(async () => {
  [a, b] = await Promise.all([makeHome(), makeHome()]);
});
afterEach(() => Promise.all([destroyHome(a), destroyHome(b)]));

const sha256 = async (file: string) =>
  createHash('sha256')
    .update(await readFile(file))
    .digest('hex');

/** The members of a bundle with their data, read with an independent tar reader. */
async function members(file: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const extract = tar.extract();
  const reading = (async () => {
    for await (const e of extract) {
      const chunks: Buffer[] = [];
      for await (const c of e as AsyncIterable<Buffer>) chunks.push(c);
      out.set(e.header.name, Buffer.concat(chunks));
    }
  })();
  // The zstd program: a bundle is a series of frames, which Node's decompressor stops after the first of.
  extract.end(execFileSync('zstd', ['-q', '-d', '-c', file], { maxBuffer: 1 << 30 }));
  await reading;
  return out;
}

/** Nothing registered and nothing left half-made in the importing home. */
async function nothingImported(h: TestHome): Promise<void> {
  expect(await json<Vm[]>(h, ['list'])).toEqual([]);
  expect(await readdir(path.join(h.home, 'vms'))).toEqual([]);
}

describe('export and import', () => {
  it('moves an encrypted UEFI VM with a TPM to a second host: the data, checksums and passphrase hold', async () => {
    await ok(a, [
      'create',
      'mover',
      '--os',
      'fedora37',
      '--tpm',
      '--disk',
      '64M',
      '-m',
      '384M',
      ...bootArgs('efi'),
    ]);
    await ok(a, ['start', 'mover']);
    await waitForReady(a, 'mover', 150_000);
    await writeMarker(a, 'mover', 'MARKER-MOVED');
    await ok(a, ['stop', 'mover', '--force']);

    const pass = path.join(a.dir, 'bundle-pass');
    await writeFile(pass, 'bundle passphrase\n');
    const noPass = await cli(a, ['export', 'mover', '-o', path.join(a.dir, 'x.phyllome')]);
    expect(noPass.code).toBe(1);
    expect(noPass.stderr).toMatch(/give a bundle passphrase with --passphrase-file/);
    const file = path.join(a.dir, 'mover.phyllome');
    const exported = await json<{ bytes: number }>(a, [
      'export',
      'mover',
      '-o',
      file,
      '--passphrase-file',
      pass,
    ]);
    expect(exported.bytes).toBeGreaterThan(0);
    expect((await readdir(a.dir)).filter((f) => f.includes('.part-'))).toEqual([]);

    // Encrypted stays encrypted: the marker is not in the bundle's disk; the manifest vouches for each member.
    const m = await members(file);
    const manifest = JSON.parse(m.get('manifest.json')!.toString()) as Manifest;
    expect([...m.keys()][0]).toBe('vm.json');
    expect([...m.keys()].at(-1)).toBe('manifest.json');
    expect(m.get('disk0.qcow2')!.includes('MARKER-MOVED')).toBe(false);
    // The key travels wrapped: its plain text is nowhere in the bundle.
    const keystore = new Keystore(path.join(a.home, 'keystore.json'));
    await keystore.unlock((await readFile(a.env.PHYLLOME_PASSPHRASE_FILE!, 'utf8')).trim());
    const key = await keystore.keyFor((await json<Vm>(a, ['status', 'mover'])).uuid);
    expect([...m.values()].some((data) => data.includes(key))).toBe(false);
    expect(manifest.members.map((x) => x.path).sort()).toEqual(
      [...m.keys()].filter((k) => k !== 'manifest.json').sort(),
    );
    expect(manifest.members.map((x) => x.path)).toEqual(
      expect.arrayContaining(['nvram.qcow2', 'kernel', 'initrd']),
    );
    expect(manifest.members.some((x) => x.path.startsWith('tpm/'))).toBe(true);

    const badPass = path.join(b.dir, 'wrong');
    await writeFile(badPass, 'not the passphrase\n');
    const wrong = await cli(b, ['import', file, '--passphrase-file', badPass]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/wrong passphrase, or the bundle was altered.*nothing was imported/);
    await nothingImported(b);

    const imported = await json<{ vm: Vm; changes: { what: string }[] }>(b, [
      'import',
      file,
      '--passphrase-file',
      pass,
    ]);
    const src = await json<Vm>(a, ['status', 'mover']);
    expect(imported.vm.name).toBe('mover');
    expect(imported.vm.uuid).not.toBe(src.uuid);
    expect(imported.vm.nics[0]!.mac).not.toBe(src.nics[0]!.mac);
    expect(imported.changes.map((c) => c.what)).toContain('new MAC addresses');
    // Byte for byte what the manifest says (and the source had): the disk and the variables.
    const dir = path.join(b.home, 'vms', 'mover');
    for (const f of ['disk0.qcow2', 'nvram.qcow2']) {
      expect(await sha256(path.join(dir, f))).toBe(manifest.members.find((x) => x.path === f)!.sha256);
      expect(await sha256(path.join(dir, f))).toBe(await sha256(path.join(a.home, 'vms', 'mover', f)));
    }

    await ok(b, ['start', 'mover']);
    await waitForReady(b, 'mover', 150_000);
    expect(await markerOnDisk(b, 'mover')).toBe('MARKER-MOVED');
    expect(await readFile(path.join(dir, 'serial.log'), 'utf8')).toContain('tpm: tpm0 version 2');
    await ok(b, ['stop', 'mover', '--force']);

    // The name is taken now: refused unless --name.
    const again = await cli(b, ['import', file, '--passphrase-file', pass]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(
      /a VM named "mover" already exists: import under another name with --name NEW/,
    );
    expect(
      (await json<{ vm: Vm }>(b, ['import', file, '--passphrase-file', pass, '--name', 'mover2'])).vm.name,
    ).toBe('mover2');
  }, 360_000);

  it('exports a running VM as of one instant while it runs on; refuses a bundle with a flipped byte, a truncated one and one with an extra member', async () => {
    await createGuest(a, 'small', ['--disk', '16M', '--no-encrypt']);
    await ok(a, ['start', 'small']);
    await waitForReady(a, 'small');
    await writeMarker(a, 'small', 'MARKER-LIVE');
    // -o - streams to standard output.
    const file = path.join(a.dir, 'small.phyllome');
    await new Promise<void>((resolve, reject) =>
      execFile(
        'sh',
        ['-c', `"${process.execPath}" "${root}/dist/phyllome.mjs" export small -o - > "${file}"`],
        { env: a.env, timeout: 90_000 },
        (err) => (err ? reject(err) : resolve()),
      ),
    );
    // The guest ran on through the export; what it writes now is not in the bundle.
    expect((await json<Vm>(a, ['status', 'small'])).state).toBe('running');
    await writeMarker(a, 'small', 'MARKER-AFTER');
    await ok(a, ['stop', 'small', '--force']);
    const good = await readFile(file);
    const m = await members(file);
    expect(m.has('manifest.json')).toBe(true);

    const variants: [string, Buffer, RegExp][] = [];
    const flipped = Buffer.from(good);
    flipped.writeUInt8(flipped.readUInt8(flipped.length >> 1) ^ 0x10, flipped.length >> 1);
    variants.push(['flipped', flipped, /refused: .*(damaged|checksum)/]);
    variants.push(['truncated', good.subarray(0, good.length - 100), /refused: .*truncated/]);
    // An extra member slipped in before the manifest, in a bundle otherwise whole.
    const pack = tar.pack();
    for (const [name, data] of m) {
      if (name === 'manifest.json') pack.entry({ name: 'disk7.qcow2' }, Buffer.from('extra'));
      pack.entry({ name }, data);
    }
    pack.finalize();
    const chunks: Buffer[] = [];
    for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
    const { zstdCompressSync } = await import('node:zlib');
    variants.push([
      'extra',
      zstdCompressSync(Buffer.concat(chunks)),
      /refused: member "disk7.qcow2" is not in the manifest/,
    ]);

    for (const [name, data, message] of variants) {
      const f = path.join(b.dir, `${name}.phyllome`);
      await writeFile(f, data);
      const r = await cli(b, ['import', f]);
      expect(r.code, name).toBe(1);
      expect(r.stderr, name).toMatch(message);
      expect(r.stderr, name).toMatch(/nothing was imported/);
      await nothingImported(b);
    }
    // The untouched bundle imports and boots.
    await writeFile(path.join(b.dir, 'good.phyllome'), good);
    await ok(b, ['import', path.join(b.dir, 'good.phyllome')]);
    await ok(b, ['start', 'small']);
    await waitForReady(b, 'small');
    expect(await markerOnDisk(b, 'small')).toBe('MARKER-LIVE');
    await ok(b, ['stop', 'small', '--force']);
  }, 300_000);
});
