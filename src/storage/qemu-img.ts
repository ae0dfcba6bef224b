import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { opts } from '../qemu/opts.js';
import { backingChain } from './format.js';

export class QemuImgError extends Error {}

/** qemu-img: PHYLLOME_QEMU_IMG, else the one on PATH. */
const binary = () => process.env.PHYLLOME_QEMU_IMG || 'qemu-img';

/** A qcow2 image, and the LUKS passphrase of its encrypted data when it has one. */
export interface Image {
  file: string;
  key?: string;
  /** qcow2 unless said. */
  format?: 'qcow2' | 'raw';
}

/**
 * Keys reach qemu-img (and fscrypt) as secret objects read from files in a private folder on tmpfs (/dev/shm),
 * removed as soon as it exits: never argv. (Node cannot hand a child a real pipe: its stdio pipes are
 * sockets, which `/dev/fd/N` cannot open.)
 */
export async function withKeyFiles<T>(
  keys: (string | Buffer)[],
  fn: (files: string[]) => Promise<T>,
): Promise<T> {
  if (!keys.length) return fn([]);
  const base = await stat('/dev/shm').then(
    () => '/dev/shm',
    () => os.tmpdir(),
  );
  const dir = await mkdtemp(path.join(base, 'phyllome-key-'));
  try {
    const files = await Promise.all(
      keys.map(async (k, i) => {
        const f = path.join(dir, String(i));
        await writeFile(f, k, { mode: 0o600 });
        return f;
      }),
    );
    return await fn(files);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * QEMU sizes a new LUKS header by timing PBKDF2 in thread CPU time, which a tick-accounted kernel
 * under load can read as zero ("Unable to get accurate CPU usage"): such an attempt wrote nothing
 * usable and is tried again, after a pause so a burst of load can pass.
 */
async function run(args: string[], onProgress?: (pct: number) => void): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await runOnce(args, onProgress);
    } catch (e) {
      if (attempt >= 6 || !(e as Error).message.includes('Unable to get accurate CPU usage')) throw e;
      await new Promise((r) => setTimeout(r, 50 * attempt));
    }
  }
}

function runOnce(args: string[], onProgress?: (pct: number) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const pct = /\((\d+(?:\.\d+)?)\/100%\)\s*$/.exec(d);
      if (pct && onProgress) onProgress(Number(pct[1]));
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30 * 60_000);
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        e.code === 'ENOENT'
          ? new QemuImgError(
              'qemu-img is not installed: apt-get install qemu-utils (Debian) or dnf install qemu-img (Fedora)',
            )
          : e,
      );
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new QemuImgError(`qemu-img ${args[0]} failed: ${err.trim() || `exit ${code}`}`));
    });
  });
}

const secret = (id: string, file: string) => ['--object', opts('secret', { id, file, format: 'raw' })];

/**
 * How qemu-img opens an image: `--image-opts` naming its key's secret when encrypted, for the image
 * and for each base under it (`backing.`, `backing.backing.`, …): an encrypted linked clone's bases
 * are encrypted with the same key. `snapshot` takes no `-f` (it probes), the other verbs do.
 */
async function open(img: Image, secretId: string, format = true): Promise<string[]> {
  if (!img.key) return [...(format ? ['-f', img.format ?? 'qcow2'] : []), img.file];
  const levels = (await backingChain(img.file)).length;
  const keys = Array.from({ length: levels + 1 }, (_, n) => [
    `${'backing.'.repeat(n)}encrypt.key-secret`,
    secretId,
  ]);
  return [
    '--image-opts',
    opts(undefined, { driver: 'qcow2', 'file.filename': img.file, ...Object.fromEntries(keys) }),
  ];
}

/** A verb on one image: `verb [secret] [before…] IMAGE [after…]`. */
const onImage = (verb: string, img: Image, before: string[] = [], after: string[] = []) =>
  withKeyFiles(img.key ? [img.key] : [], async ([keyFile]) =>
    run([
      verb,
      ...(keyFile ? secret('sec0', keyFile) : []),
      ...before,
      ...(await open(img, 'sec0', verb !== 'snapshot')),
      ...after,
    ]),
  );

/**
 * The LUKS key derivation runs at every open; the key is 256 random bits, so a slow PBKDF adds no
 * strength, only start-up time: 10 ms. SHA-512 (no CPU instructions for it) makes QEMU's first timing
 * round several scheduler ticks long, so that round is rarely read as zero CPU time (see run()).
 */
const luks = (secretId: string) => ({
  'encrypt.format': 'luks',
  'encrypt.key-secret': secretId,
  'encrypt.iter-time': 10,
  'encrypt.hash-alg': 'sha512',
});

/** `qemu-img create` of a qcow2 image, LUKS-encrypted when given a key; `rest` ends with the file. */
const create = (key: string | undefined, rest: string[]) =>
  withKeyFiles(key ? [key] : [], ([keyFile]) =>
    run([
      'create',
      '-q',
      ...(keyFile ? secret('sec0', keyFile) : []),
      '-f',
      'qcow2',
      ...(keyFile ? ['-o', opts(undefined, luks('sec0'))] : []),
      ...rest,
    ]),
  );

/** A sparse qcow2 image (only written clusters take space), LUKS-encrypted when given a key. */
export const createQcow2 = (img: Image, bytes: number): Promise<unknown> =>
  create(img.key, [img.file, String(bytes)]);

export const resizeImage = (img: Image, bytes: number): Promise<unknown> =>
  onImage('resize', img, ['-q'], [String(bytes)]);

export type SnapshotOp = '-c' | '-a' | '-d';

/** Internal qcow2 snapshots: create (-c), apply (-a), delete (-d). */
export const snapshotImage = (img: Image, op: SnapshotOp, name: string): Promise<unknown> =>
  onImage('snapshot', img, [op, name]);

export async function listSnapshots(img: Image): Promise<string[]> {
  const out = await onImage('snapshot', img, ['-l']);
  // "ID  TAG  VM SIZE  DATE  VM CLOCK  ICOUNT" rows after two header lines.
  return out
    .split('\n')
    .slice(2)
    .map((l) => l.trim().split(/\s+/)[1])
    .filter((t): t is string => !!t);
}

export interface ImageInfo {
  virtualSize: number;
  format: string;
  encrypted: boolean;
  backing?: string;
  /** Internal snapshot tags. */
  snapshots: string[];
}

/** Reads the header only, so it may share the image with a running QEMU (--force-share). */
export async function imageInfo(img: Image): Promise<ImageInfo> {
  const raw = JSON.parse(await onImage('info', img, ['--output=json', '--force-share'])) as {
    'virtual-size': number;
    format: string;
    encrypted?: boolean;
    'backing-filename'?: string;
    snapshots?: { name: string }[];
  };
  return {
    virtualSize: raw['virtual-size'],
    format: raw.format,
    encrypted: !!raw.encrypted,
    snapshots: (raw.snapshots ?? []).map((s) => s.name),
    ...(raw['backing-filename'] ? { backing: raw['backing-filename'] } : {}),
  };
}

/** `qemu-img check`: true when the image has no errors and no leaks. */
export async function checkImage(img: Image): Promise<boolean> {
  try {
    await onImage('check', img, ['-q']);
    return true;
  } catch (e) {
    if (e instanceof QemuImgError) return false;
    throw e;
  }
}

/** A full copy (only allocated data), encrypted with the destination's key when it has one. */
export const copyImage = (from: Image, to: Image, onProgress?: (pct: number) => void): Promise<unknown> =>
  withKeyFiles(
    [from.key, to.key].filter((k): k is string => !!k),
    async (files) => {
      const fromFile = from.key ? files[0] : undefined;
      const toFile = to.key ? files[from.key ? 1 : 0] : undefined;
      return run(
        [
          'convert',
          '-p',
          ...(fromFile ? secret('src', fromFile) : []),
          ...(toFile ? secret('dst', toFile) : []),
          ...(await open(from, 'src')),
          '-O',
          'qcow2',
          ...(toFile ? ['-o', opts(undefined, luks('dst'))] : []),
          to.file,
        ],
        onProgress,
      );
    },
  );

/**
 * A qcow2 overlay whose unwritten clusters read from `base` (a linked clone's disk); with a key, the
 * overlay is encrypted with it, and so must the base be (one secret opens both).
 */
export const createOverlay = (base: string, file: string, key?: string): Promise<unknown> =>
  create(key, ['-b', base, '-F', 'qcow2', file]);
