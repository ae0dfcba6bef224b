import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { Duplex, PassThrough, type Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { constants, createZstdCompress, createZstdDecompress } from 'node:zlib';
import tar from 'tar-stream';
import { findBinary } from '../qemu/process.js';
import {
  MANIFEST_MEMBER,
  KEYS_MEMBER,
  SPEC_MEMBER,
  manifestMac,
  memberProblem,
  type Manifest,
  type Member,
} from './manifest.js';

export class BundleError extends Error {}

/** A member to write: small JSON held in memory, or a file (made on demand, e.g. a converted disk). */
export type Source = { name: string; data: Buffer } | { name: string; file: () => Promise<string> };

export interface PackOptions {
  members: Source[];
  manifest: Omit<Manifest, 'members' | 'mac'>;
  /** From zstdCompressor(). */
  compressor: Duplex;
  macKey?: Buffer;
  /** Bytes of member data written so far, for progress. */
  onBytes?: (bytes: number) => void;
  /** Runs once the bundle is fully written or has failed (removes temporary files). */
  onDone?: (error?: Error) => void;
}

/**
 * zstd at its default level 3: disk images compress at about the speed they are read, encrypted ones
 * (incompressible) pass through. The zstd program when installed, on every core (`-T0`): heavy work in
 * a child, not in the daemon. Otherwise Node's own, on one core (its ZSTD_c_nbWorkers loses output
 * in streaming mode); 1 MiB chunks, as Node's default 16 KiB costs a third more time in callbacks.
 */
export async function zstdCompressor(envPath = process.env.PATH): Promise<Duplex> {
  const binary = await findBinary('zstd', undefined, envPath);
  if (!binary) {
    return createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: 3 }, chunkSize: 1 << 20 });
  }
  const child = spawn(binary, ['-q', '-3', '-T0', '-c'], { stdio: ['pipe', 'pipe', 'ignore'] });
  const zstd = Duplex.from({ writable: child.stdin, readable: child.stdout });
  child.once('exit', (code, signal) => {
    if (code !== 0) zstd.destroy(new Error(`zstd failed (${code ?? signal})`));
  });
  // A bundle given up midway takes its compressor with it.
  zstd.once('close', () => child.kill());
  return zstd;
}

const BLOCK = 512;

/**
 * Pure: a ustar header for a plain file (mode 0600, mtime 0, so a bundle's bytes depend only on its
 * content). Sizes of 8 GiB and more use GNU's base-256 field, which tar and tar-stream read; names
 * past 100 bytes go into the prefix field.
 */
export function tarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  const cut = Buffer.byteLength(name) > 100 ? name.lastIndexOf('/') : -1;
  const [prefix, base] = cut > 0 ? [name.slice(0, cut), name.slice(cut + 1)] : ['', name];
  if (Buffer.byteLength(base) > 100 || Buffer.byteLength(prefix) > 155) {
    throw new Error(`member name too long for tar: ${name}`);
  }
  const octal = (value: number, width: number, at: number) =>
    h.write(value.toString(8).padStart(width - 1, '0') + '\0', at, 'ascii');
  h.write(base, 0, 'utf8');
  octal(0o600, 8, 100);
  octal(0, 8, 108);
  octal(0, 8, 116);
  if (size < 8 ** 11) octal(size, 12, 124);
  else {
    h[124] = 0x80;
    h.writeBigUInt64BE(BigInt(size), 128);
  }
  octal(0, 12, 136);
  h.fill(' ', 148, 156);
  h.write('0', 156, 'ascii');
  h.write('ustar\u000000', 257, 'ascii');
  h.write(prefix, 345, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
  return h;
}

/**
 * One streamed bundle: the members in order, then the manifest of their hashes, compressed. The tar
 * is written here (headers, data, padding) rather than through a tar library: its per-chunk
 * machinery cost more than hashing the data.
 */
export function packBundle(o: PackOptions): Readable {
  const tarStream = new PassThrough({ highWaterMark: 4 << 20 });
  const out = new PassThrough();
  pipeline(tarStream, o.compressor, out).then(
    () => undefined,
    () => undefined,
  );
  const put = async (b: Buffer) => {
    if (!tarStream.write(b)) await once(tarStream, 'drain');
  };
  const entry = async (
    name: string,
    size: number,
    src: Iterable<Buffer> | AsyncIterable<Buffer>,
    onBytes?: (n: number) => void,
  ): Promise<Member> => {
    const hash = createHash('sha256');
    await put(tarHeader(name, size));
    let written = 0;
    for await (const chunk of src) {
      hash.update(chunk);
      written += chunk.length;
      onBytes?.(chunk.length);
      await put(chunk);
    }
    // The header promised `size` bytes: a file that changed meanwhile would corrupt the tar.
    if (written !== size) throw new Error(`${name} changed size while it was read`);
    if (size % BLOCK) await put(Buffer.alloc(BLOCK - (size % BLOCK)));
    return { path: name, size, sha256: hash.digest('hex') };
  };
  const fill = async () => {
    const members: Member[] = [];
    for (const m of o.members) {
      if ('data' in m) {
        members.push(await entry(m.name, m.data.length, [m.data]));
      } else {
        const file = await m.file();
        const { size } = await stat(file);
        members.push(
          await entry(m.name, size, createReadStream(file, { highWaterMark: 1 << 20 }), o.onBytes),
        );
      }
    }
    const manifest: Manifest = { ...o.manifest, members };
    if (o.macKey) manifest.mac = manifestMac(o.macKey, manifest);
    const text = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
    await entry(MANIFEST_MEMBER, text.length, [text]);
    tarStream.end(Buffer.alloc(2 * BLOCK));
  };
  fill().then(
    () => o.onDone?.(),
    (e: Error) => {
      o.onDone?.(e);
      // A failed export must not look complete: the reader sees an error, not a clean end.
      out.destroy(e);
      tarStream.destroy(e);
    },
  );
  return out;
}

/** Members read into memory rather than onto the disk; small by nature. */
const IN_MEMORY = new Set([SPEC_MEMBER, KEYS_MEMBER, MANIFEST_MEMBER]);
const MAX_IN_MEMORY = 1 << 20;
const MAX_MEMBERS = 4096;

export interface Unpacked {
  spec: unknown;
  keys?: unknown;
  manifest: Manifest;
  /** Every member but the manifest, as measured while reading. */
  seen: Member[];
}

const parseJson = (name: string, data: Buffer): unknown => {
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    throw new BundleError(`member "${name}" is not valid JSON: the bundle is damaged`);
  }
};

/**
 * Reads a bundle into `dir` (files) and memory (spec, keys, manifest), measuring every member. It
 * refuses what a bundle never holds (links, devices, paths out of `dir`, repeated names, anything
 * after the manifest); `onSpec` may refuse early (a name already taken) before the disks are read.
 * It does not judge the checksums: manifestProblems does, once everything is read.
 */
export async function unpackBundle(
  input: Readable,
  dir: string,
  onSpec: (spec: unknown) => void,
  onBytes?: (n: number) => void,
): Promise<Unpacked> {
  const extract = tar.extract();
  const zstd = createZstdDecompress({ chunkSize: 1 << 20 });
  // Not in the pipeline: a refused bundle's sender must still get an answer, so its stream is
  // drained rather than destroyed.
  input.pipe(zstd);
  input.once('error', (e) => zstd.destroy(e));
  const piping = pipeline(zstd, extract as unknown as NodeJS.WritableStream);
  // Awaited after the entries; it may fail while one is being read, so it is never left unhandled.
  piping.catch(() => undefined);
  // The decompressor may fail after the tar reader stopped (a cut at the very end): that error is
  // awaited below, never left unhandled.
  const inflated = finished(zstd);
  inflated.catch(() => undefined);
  const memory = new Map<string, unknown>();
  const seen: Member[] = [];
  const names = new Set<string>();
  let refusal: Error | undefined;
  try {
    for await (const entry of extract) {
      const name = entry.header.name;
      if (memory.has(MANIFEST_MEMBER)) throw new BundleError(`member "${name}" follows the manifest`);
      const problem = memberProblem(name);
      if (problem) throw new BundleError(problem);
      if (entry.header.type !== 'file') throw new BundleError(`member "${name}" is not a plain file`);
      if (names.has(name)) throw new BundleError(`member "${name}" appears twice`);
      if (names.size >= MAX_MEMBERS) throw new BundleError(`the bundle has more than ${MAX_MEMBERS} members`);
      names.add(name);
      const hash = createHash('sha256');
      let size = 0;
      if (IN_MEMORY.has(name)) {
        const chunks: Buffer[] = [];
        for await (const c of entry as AsyncIterable<Buffer>) {
          size += c.length;
          if (size > MAX_IN_MEMORY) throw new BundleError(`member "${name}" is too large`);
          hash.update(c);
          chunks.push(c);
        }
        memory.set(name, parseJson(name, Buffer.concat(chunks)));
        if (name === SPEC_MEMBER) {
          try {
            onSpec(memory.get(name));
          } catch (e) {
            refusal = e as Error;
            throw e;
          }
        }
      } else {
        const file = path.join(dir, name);
        await mkdir(path.dirname(file), { recursive: true, mode: 0o750 });
        const counted = async function* (src: AsyncIterable<unknown>) {
          for await (const x of src) {
            const c = x as Buffer;
            size += c.length;
            hash.update(c);
            onBytes?.(c.length);
            yield c;
          }
        };
        await pipeline(entry, counted, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
      }
      if (name !== MANIFEST_MEMBER) seen.push({ path: name, size, sha256: hash.digest('hex') });
    }
    await piping;
    await inflated;
  } catch (e) {
    input.unpipe(zstd);
    input.resume();
    if (e instanceof BundleError || e === refusal) throw e;
    throw new BundleError(`the bundle is truncated or damaged: ${(e as Error).message}`);
  }
  if (!memory.has(MANIFEST_MEMBER)) {
    throw new BundleError('the bundle has no manifest: it is truncated (an interrupted export?)');
  }
  if (!memory.has(SPEC_MEMBER)) throw new BundleError('the bundle holds no VM spec');
  return {
    spec: memory.get(SPEC_MEMBER),
    ...(memory.has(KEYS_MEMBER) ? { keys: memory.get(KEYS_MEMBER) } : {}),
    manifest: memory.get(MANIFEST_MEMBER) as Manifest,
    seen,
  };
}
