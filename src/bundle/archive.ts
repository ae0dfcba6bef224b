import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { zstdCompressSync } from 'node:zlib';
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

/**
 * Where a bundle's bytes go. `put` writes the daemon's own small frames; zstd writes its output
 * straight into `fd` when there is one (a file: no byte passes through the daemon), or else is
 * relayed through `put` (a stream to an HTTP client).
 */
export interface Sink {
  put(b: Buffer): Promise<void>;
  fd?: number;
}

export interface PackOptions {
  members: Source[];
  manifest: Omit<Manifest, 'members' | 'mac'>;
  macKey?: Buffer;
  /** Bytes of member data written so far, for progress. */
  onBytes?: (bytes: number) => void;
  /** Stops the packing (the client went away): it then fails. */
  signal?: AbortSignal;
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
 * SHA-256 and length of a file, read on its own (beside zstd, which reads it too) into one reused
 * buffer: a stream's fresh buffer per chunk costs about as much again in page faults.
 */
async function hashFile(
  file: string,
  onBytes?: (n: number) => void,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(4 << 20);
  const handle = await open(file, 'r');
  let size = 0;
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (!bytesRead) break;
      hash.update(buffer.subarray(0, bytesRead));
      size += bytesRead;
      onBytes?.(bytesRead);
    }
  } finally {
    await handle.close();
  }
  return { sha256: hash.digest('hex'), size };
}

const exited = (child: ChildProcess, what: string) =>
  new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${what} failed (${code ?? signal})`)),
    );
  });

async function zstdProgram(): Promise<string> {
  const binary = await findBinary('zstd');
  if (!binary) throw new BundleError('the zstd program is missing: apt-get install zstd');
  return binary;
}

/**
 * One bundle into `sink`: the members in order, then the manifest of their hashes, as a tar (written
 * here, ustar) compressed by zstd at a low level. A bundle is a series of zstd frames, which zstd
 * reads as one stream: each file is compressed by `zstd -T0` reading it directly, on every core (a
 * pipe in between costs most of the gain), and the daemon adds small frames of tar headers, padding
 * and JSON, and hashes the files on the side. File data never passes through the daemon uncompressed.
 */
export async function packBundle(o: PackOptions, sink: Sink): Promise<void> {
  const binary = await zstdProgram();
  let child: ChildProcess | undefined;
  const stop = () => child?.kill();
  o.signal?.addEventListener('abort', stop);
  const frame = (...parts: Buffer[]) => sink.put(zstdCompressSync(Buffer.concat(parts)));
  const padding = (size: number) => Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
  try {
    const members: Member[] = [];
    for (const m of o.members) {
      o.signal?.throwIfAborted();
      if ('data' in m) {
        await frame(tarHeader(m.name, m.data.length), m.data, padding(m.data.length));
        members.push({
          path: m.name,
          size: m.data.length,
          sha256: createHash('sha256').update(m.data).digest('hex'),
        });
        continue;
      }
      const file = await m.file();
      const { size } = await stat(file);
      await frame(tarHeader(m.name, size));
      const hashed = hashFile(file, o.onBytes);
      hashed.catch(() => undefined);
      child = spawn(binary, ['-q', '-3', '-T0', '-c', file], {
        stdio: ['ignore', sink.fd ?? 'pipe', 'ignore'],
      });
      const done = exited(child, `compressing ${m.name}`);
      done.catch(() => undefined);
      if (sink.fd === undefined)
        for await (const chunk of child.stdout! as AsyncIterable<Buffer>) await sink.put(chunk);
      await done;
      child = undefined;
      o.signal?.throwIfAborted();
      const h = await hashed;
      // The header promised `size` bytes: a file that changed meanwhile would corrupt the tar.
      if (h.size !== size) throw new Error(`${m.name} changed size while it was read`);
      if (size % BLOCK) await frame(padding(size));
      members.push({ path: m.name, size, sha256: h.sha256 });
    }
    const manifest: Manifest = { ...o.manifest, members };
    if (o.macKey) manifest.mac = manifestMac(o.macKey, manifest);
    const text = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
    await frame(tarHeader(MANIFEST_MEMBER, text.length), text, padding(text.length), Buffer.alloc(2 * BLOCK));
  } finally {
    stop();
    o.signal?.removeEventListener('abort', stop);
  }
}

/** A sink that is a stream (to an HTTP client); `fail` makes its reader see an error, not a clean end. */
export function streamSink(): { sink: Sink; stream: Readable; end: () => void; fail: (e: Error) => void } {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  return {
    sink: {
      put: async (b) => {
        if (!out.write(b)) await once(out, 'drain');
      },
    },
    stream: out,
    end: () => out.end(),
    fail: (e) => out.destroy(e),
  };
}

/**
 * A sink that is a new file, written as `FILE.part-RANDOM` and renamed by `end`, so an interrupted
 * export never leaves a file that looks complete; `fail` removes it. An existing FILE is refused.
 */
export async function fileSink(
  file: string,
): Promise<{ sink: Sink; end: () => Promise<number>; fail: () => Promise<void> }> {
  if (await stat(file).catch(() => undefined)) throw new BundleError(`${file} already exists`);
  const part = `${file}.part-${randomBytes(4).toString('hex')}`;
  const handle = await open(part, 'wx', 0o600);
  const close = () => handle.close().catch(() => undefined);
  return {
    // The fd's file offset is shared with the zstd children (they get it as stdout), so writes by
    // either land one after the other.
    sink: { put: async (b) => void (await handle.write(b)), fd: handle.fd },
    end: async () => {
      await handle.sync();
      const { size } = await handle.stat();
      await close();
      await rename(part, file);
      return size;
    },
    fail: async () => {
      await close();
      await rm(part, { force: true });
    },
  };
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
  // zstd itself: it reads a series of frames as one stream, which Node's decompressor does not.
  const zstd = spawn(await zstdProgram(), ['-q', '-d', '-c'], { stdio: ['pipe', 'pipe', 'ignore'] });
  const inflated = exited(zstd, 'zstd (the bundle is not valid zstd data)');
  inflated.catch(() => undefined);
  zstd.stdin.on('error', () => undefined);
  // Not in the pipeline: a refused bundle's sender must still get an answer, so its stream is
  // drained rather than destroyed.
  input.pipe(zstd.stdin);
  input.once('error', () => zstd.kill());
  const piping = pipeline(zstd.stdout, extract as unknown as NodeJS.WritableStream);
  // Awaited after the entries; it may fail while one is being read, so it is never left unhandled.
  piping.catch(() => undefined);
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
    input.unpipe(zstd.stdin);
    input.resume();
    zstd.kill();
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
