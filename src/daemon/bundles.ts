import { renderNodes } from '../host/display.js';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BundleError, packBundle, unpackBundle, type Sink, type Source } from '../bundle/archive.js';
import { bundleLayout } from '../bundle/layout.js';
import {
  BUNDLE_FORMAT,
  KEYS_MEMBER,
  manifestProblems,
  memberProblem,
  SPEC_MEMBER,
  type BundleKeys,
  type Manifest,
} from '../bundle/manifest.js';
import { hostDevicePaths, type ImportHost } from '../bundle/replan.js';
import { readFirmwareDescriptors } from '../host/firmware.js';
import { parseSpec, SpecError, type VmSpec } from '../spec/schema.js';
import { deriveKey, KDF, open, seal, type Sealed } from '../storage/keystore.js';
import { copyImage, imageInfo } from '../storage/qemu-img.js';
import { isBridge } from '../net/ip.js';
import { UserError } from './errors.js';
import { exists, unlessMissing } from './files.js';

/** The VM's keys in plain text, as the keystore gives them. */
export interface VmKeys {
  disk?: string;
  tpm?: string;
}

const MIN_PASSPHRASE = 8;

/** One scrypt run gives both keys: the first half wraps the VM's keys, the second signs the manifest. */
async function bundleKeys(passphrase: string, kdf: Manifest['kdf'] & object) {
  const k = await deriveKey(
    passphrase,
    Buffer.from(kdf.salt, 'base64'),
    { N: kdf.N, r: kdf.r, p: kdf.p },
    64,
  );
  return { wrap: k.subarray(0, 32), mac: k.subarray(32) };
}

/** Regular files under a folder of the VM's (TPM state, snapshot copies), as bundle member names. */
async function filesUnder(dir: string, member: string): Promise<{ name: string; file: string }[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
    unlessMissing(e);
    return [];
  });
  const out: { name: string; file: string }[] = [];
  for (const e of entries) {
    const name = `${member}/${e.name}`;
    if (e.isDirectory()) out.push(...(await filesUnder(path.join(dir, e.name), name)));
    // swtpm's lock file is not state.
    else if (e.isFile() && e.name !== '.lock' && !memberProblem(name))
      out.push({ name, file: path.join(dir, e.name) });
  }
  return out;
}

export interface ExportRequest {
  spec: VmSpec;
  dir: string;
  keys: VmKeys;
  passphrase?: string;
  /** A running VM's point-in-time copies (liveCopy): member → file, the TPM state under `dir`/tpm. */
  live?: { files: Map<string, string>; dir: string };
  onProgress?: (pct: number) => void;
}

/** Writes the prepared bundle into a sink; `signal` stops it (the client went away). */
export type WriteBundle = (sink: Sink, signal?: AbortSignal) => Promise<void>;

/**
 * A VM as one bundle (a running one from its liveCopy). Encrypted images travel as they
 * are (still encrypted), their key wrapped with the bundle passphrase; raw disks and overlays become
 * self-contained qcow2 in a temporary folder first, so only allocated data travels and nothing
 * depends on this host's files.
 */
export async function exportBundle(r: ExportRequest): Promise<WriteBundle> {
  if ((r.keys.disk || r.keys.tpm) && !r.passphrase) {
    throw new UserError(
      `"${r.spec.name}" has encrypted disks or TPM state: give a bundle passphrase with --passphrase-file FILE; they stay encrypted in the bundle`,
    );
  }
  if (r.passphrase !== undefined && r.passphrase.length < MIN_PASSPHRASE) {
    throw new UserError(`the bundle passphrase must have at least ${MIN_PASSPHRASE} characters`);
  }
  const { spec, carried } = bundleLayout(r.spec, r.dir);
  const members: Source[] = [{ name: SPEC_MEMBER, data: Buffer.from(JSON.stringify(spec, null, 2) + '\n') }];
  const kdf = r.passphrase ? { ...KDF, salt: randomBytes(16).toString('base64') } : undefined;
  const keys = kdf && r.passphrase ? await bundleKeys(r.passphrase, kdf) : undefined;
  if (keys && (r.keys.disk || r.keys.tpm)) {
    const sealed: BundleKeys = {
      ...(r.keys.disk ? { disk: seal(keys.wrap, Buffer.from(r.keys.disk), 'disk') } : {}),
      ...(r.keys.tpm ? { tpm: seal(keys.wrap, Buffer.from(r.keys.tpm), 'tpm') } : {}),
    };
    members.push({ name: KEYS_MEMBER, data: Buffer.from(JSON.stringify(sealed)) });
  }
  let temp: string | undefined;
  let total = 0;
  for (const c of carried) {
    const copy = r.live?.files.get(c.member);
    if (copy) {
      total += (await stat(copy)).size;
      members.push({ name: c.member, file: async () => copy });
      continue;
    }
    const st = await stat(c.source).catch(() => {
      throw new UserError(`${c.source} is missing: "${r.spec.name}" cannot be exported without it`);
    });
    total += c.disk?.format === 'raw' ? st.blocks * 512 : st.size;
    const flatten =
      c.disk && (c.disk.format === 'raw' || (await imageInfo({ file: c.source, format: 'qcow2' })).backing);
    members.push({
      name: c.member,
      file: flatten
        ? async () => {
            temp ??= await mkdtemp(path.join(tmpdir(), 'phyllome-export-'));
            const file = path.join(temp, c.member);
            // An encrypted overlay stays encrypted, under the same key (its base's).
            const key = c.disk!.encrypted ? r.keys.disk : undefined;
            await copyImage({ file: c.source, format: c.disk!.format, key }, { file, key });
            return file;
          }
        : async () => c.source,
    });
  }
  const own = [
    ...(r.spec.firmware.type === 'uefi'
      ? [{ name: 'nvram.qcow2', file: r.live?.files.get('nvram.qcow2') ?? path.join(r.dir, 'nvram.qcow2') }]
      : []),
    ...(r.spec.tpm ? await filesUnder(path.join(r.live?.dir ?? r.dir, 'tpm'), 'tpm') : []),
    ...((await exists(path.join(r.dir, 'snapshots.json')))
      ? [{ name: 'snapshots.json', file: path.join(r.dir, 'snapshots.json') }]
      : []),
    ...(await filesUnder(path.join(r.dir, 'snapshots'), 'snapshots')),
  ];
  for (const o of own) {
    total += (await stat(o.file)).size;
    members.push({ name: o.name, file: async () => o.file });
  }
  let sent = 0;
  let shown = -1;
  return async (sink, signal) => {
    try {
      await packBundle(
        {
          members,
          manifest: {
            format: BUNDLE_FORMAT,
            version: 1,
            vm: r.spec.name,
            createdAt: new Date().toISOString(),
            ...(kdf ? { kdf } : {}),
          },
          ...(keys ? { macKey: keys.mac } : {}),
          onBytes: (n) => {
            sent += n;
            const pct = Math.min(99, Math.floor((100 * sent) / Math.max(total, 1)));
            if (pct > shown) r.onProgress?.((shown = pct));
          },
          ...(signal ? { signal } : {}),
        },
        sink,
      );
      r.onProgress?.(100);
    } catch (e) {
      throw e instanceof BundleError ? new UserError(e.message) : e;
    } finally {
      if (temp) await rm(temp, { recursive: true, force: true });
    }
  };
}

export interface ReadImport {
  /** The bundle's spec (carried files under BUNDLE_DIR), checked. */
  spec: VmSpec;
  keys: VmKeys;
}

/**
 * Reads a bundle into `dir` and judges it whole before anything is registered: every checksum,
 * the manifest's MAC and the keys' seals (both need the passphrase when the bundle has one).
 */
export async function readImport(
  body: Readable,
  dir: string,
  opts: { passphrase?: string; onSpec: (spec: VmSpec) => void; onBytes?: (n: number) => void },
): Promise<ReadImport> {
  const checked = (raw: unknown): VmSpec => {
    try {
      return parseSpec(raw);
    } catch (e) {
      if (e instanceof SpecError) throw new UserError(`the bundle's VM spec is not valid: ${e.message}`);
      throw e;
    }
  };
  let u;
  try {
    u = await unpackBundle(body, dir, (raw) => opts.onSpec(checked(raw)), opts.onBytes);
  } catch (e) {
    if (e instanceof BundleError) throw new UserError(`refused: ${e.message}; nothing was imported`);
    throw e;
  }
  const { manifest } = u;
  if (manifest.kdf && opts.passphrase === undefined) {
    throw new UserError('this bundle is protected by a passphrase: give it with --passphrase-file FILE');
  }
  const keys = manifest.kdf && opts.passphrase ? await bundleKeys(opts.passphrase, manifest.kdf) : undefined;
  const problems = manifestProblems(manifest, u.seen, keys?.mac);
  if (problems.length) throw new UserError(`refused: ${problems.join('; ')}; nothing was imported`);
  const sealed = (u.keys ?? {}) as BundleKeys;
  const unwrap = (s: Sealed | undefined, aad: string) => {
    if (!s || !keys) return undefined;
    try {
      return open(keys.wrap, s, aad).toString();
    } catch {
      throw new UserError('refused: the bundle keys do not open with this passphrase; nothing was imported');
    }
  };
  const disk = unwrap(sealed.disk, 'disk');
  const tpm = unwrap(sealed.tpm, 'tpm');
  return { spec: checked(u.spec), keys: { ...(disk ? { disk } : {}), ...(tpm ? { tpm } : {}) } };
}

const listDir = (dir: string) => readdir(dir).catch(() => [] as string[]);

/** What this host offers an imported VM (see replan). */
export async function importHost(
  spec: VmSpec,
  networks: string[],
  gl: () => Promise<boolean>,
  localDisplay: string | undefined,
): Promise<ImportHost> {
  const fw = spec.firmware;
  const outside = [
    ...(fw.type === 'uefi' ? [fw.code, fw.varsTemplate] : []),
    ...(spec.graphics.renderNode ? [spec.graphics.renderNode] : []),
    ...hostDevicePaths(spec.graphics),
    ...spec.cdroms.flatMap((c) => (c.path ? [c.path] : [])),
  ];
  const present = new Set<string>();
  for (const p of outside) if (await exists(p)) present.add(p);
  const links = await listDir('/sys/class/net');
  const bridges: string[] = [];
  for (const l of links) if (await isBridge(l)) bridges.push(l);
  return {
    firmware: fw.type === 'uefi' ? await readFirmwareDescriptors() : [],
    present,
    bridges,
    networks,
    links,
    renderNodes: await renderNodes(),
    gl: spec.graphics.device.includes('-gl') ? await gl() : true,
    localDisplay,
  };
}
