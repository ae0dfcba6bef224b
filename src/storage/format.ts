import { open } from 'node:fs/promises';
import path from 'node:path';

const QCOW2_MAGIC = Buffer.from('QFI\xfb', 'latin1');

/** qcow2 if the file starts with its magic, raw otherwise; undefined if it cannot be read. */
export async function detectFormat(file: string): Promise<'raw' | 'qcow2' | undefined> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    return bytesRead === 4 && head.equals(QCOW2_MAGIC) ? 'qcow2' : 'raw';
  } finally {
    await handle.close();
  }
}

/**
 * Fills in `format` for disks given without one, from the file's header. Files that cannot be read
 * are taken as raw: the file check then names them.
 */
export async function withDiskFormats(input: unknown): Promise<unknown> {
  if (typeof input !== 'object' || input === null || !('disks' in input) || !Array.isArray(input.disks)) {
    return input;
  }
  const disks = await Promise.all(
    input.disks.map(async (d: unknown) => {
      if (
        typeof d !== 'object' ||
        d === null ||
        'format' in d ||
        !('path' in d) ||
        typeof d.path !== 'string'
      ) {
        return d;
      }
      const format = await detectFormat(d.path);
      return { ...d, format: format ?? 'raw' };
    }),
  );
  return { ...input, disks };
}

/**
 * What an image holds as a guest sees it, from its header: a qcow2's virtual size and whether it is an
 * overlay on a backing file (header fields at bytes 8 and 24), or a raw file's length.
 */
export async function readImageFacts(
  file: string,
  format: 'raw' | 'qcow2',
): Promise<{ bytes: number; backed: boolean }> {
  const handle = await open(file, 'r');
  try {
    if (format === 'raw') return { bytes: (await handle.stat()).size, backed: false };
    const head = Buffer.alloc(32);
    const { bytesRead } = await handle.read(head, 0, 32, 0);
    if (bytesRead < 32 || !head.subarray(0, 4).equals(QCOW2_MAGIC))
      throw new Error(`${file} is not a qcow2 image`);
    return { bytes: Number(head.readBigUInt64BE(24)), backed: head.readBigUInt64BE(8) !== 0n };
  } finally {
    await handle.close();
  }
}

/**
 * The backing files under a qcow2 image, nearest first, from the headers (backing file name at the
 * offset and length in bytes 8 and 16), relative names resolved as QEMU does (from the image's
 * folder). A file that is not qcow2 ends the chain.
 */
export async function backingChain(file: string): Promise<string[]> {
  const chain: string[] = [];
  for (let current = file; chain.length < 16;) {
    const handle = await open(current, 'r');
    let next: string | undefined;
    try {
      const head = Buffer.alloc(20);
      const { bytesRead } = await handle.read(head, 0, 20, 0);
      if (bytesRead < 20 || !head.subarray(0, 4).equals(QCOW2_MAGIC)) return chain;
      const offset = Number(head.readBigUInt64BE(8));
      if (offset) {
        const name = Buffer.alloc(head.readUInt32BE(16));
        await handle.read(name, 0, name.length, offset);
        next = path.resolve(path.dirname(current), name.toString());
      }
    } finally {
      await handle.close();
    }
    if (!next) return chain;
    chain.push(next);
    current = next;
  }
  throw new Error(`${file}: its chain of backing files is longer than 16 (a loop?)`);
}
