import { open } from 'node:fs/promises';
import { closest, type OsDb, type OsEntry, type OsMedia } from './osinfo.js';

/** The identity fields of an ISO 9660 Primary Volume Descriptor, which osinfo-db matches media by. */
export interface IsoIdentity {
  volumeId: string;
  systemId: string;
  publisherId: string;
  applicationId: string;
}

export class IsoError extends Error {}

const SECTOR = 2048;
const FIRST = 16;
/** Descriptors after the primary one (boot record, Joliet, terminator) are few; this bounds the scan. */
const MAX_DESCRIPTORS = 32;

const field = (d: Buffer, from: number, to: number) => d.toString('latin1', from, to).replace(/[\s\0]+$/, '');

/** Pure: the Primary Volume Descriptor among the descriptors that start at sector 16. */
export function parseVolumeDescriptors(buf: Buffer, what = 'the file'): IsoIdentity {
  for (let i = 0; i < MAX_DESCRIPTORS; i++) {
    const d = buf.subarray((FIRST + i) * SECTOR, (FIRST + i + 1) * SECTOR);
    if (d.length < SECTOR || d.toString('latin1', 1, 6) !== 'CD001') break;
    if (d[0] === 1) {
      return {
        systemId: field(d, 8, 40),
        volumeId: field(d, 40, 72),
        publisherId: field(d, 318, 446),
        applicationId: field(d, 574, 702),
      };
    }
    if (d[0] === 255) break;
  }
  throw new IsoError(`${what} is not an ISO 9660 image (no CD001 volume descriptor)`);
}

/** Reads only the descriptor sectors, not the (gigabytes of) image. */
export async function readIsoIdentity(file: string): Promise<IsoIdentity> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch {
    throw new IsoError(`${file} does not exist or is not readable: check the path`);
  }
  try {
    const buf = Buffer.alloc((FIRST + MAX_DESCRIPTORS) * SECTOR);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return parseVolumeDescriptors(buf.subarray(0, bytesRead), file);
  } finally {
    await handle.close();
  }
}

export interface MediaMatch {
  entry: OsEntry;
  media: OsMedia;
  /** How many of the medium's identity fields were checked (more is a surer match). */
  score: number;
}

/** osinfo-db's patterns are GLib regexes; the few that JavaScript cannot compile never match. */
const compiled = new Map<string, RegExp | null>();
function regex(pattern: string): RegExp | null {
  if (!compiled.has(pattern)) {
    try {
      compiled.set(pattern, new RegExp(pattern));
    } catch {
      compiled.set(pattern, null);
    }
  }
  return compiled.get(pattern)!;
}

/** Pure: media whose every given pattern matches the ISO's fields, as libosinfo matches them. */
export function matchMedia(db: OsDb, iso: IsoIdentity): MediaMatch[] {
  const checks: [keyof OsMedia & keyof IsoIdentity][] = [
    ['volumeId'],
    ['systemId'],
    ['publisherId'],
    ['applicationId'],
  ];
  const out: MediaMatch[] = [];
  for (const entry of db.entries) {
    for (const media of entry.media) {
      // OsEntry.media holds only x86_64, i686 and "all" media already.
      if (!media.volumeId) continue;
      let score = 0;
      const all = checks.every(([k]) => {
        const pattern = media[k];
        if (pattern === undefined) return true;
        score++;
        return regex(pattern)?.test(iso[k]) ?? false;
      });
      if (all) out.push({ entry, media, score });
    }
  }
  const archRank = (m: OsMedia) => (m.arch === 'x86_64' ? 0 : 1);
  return out.sort(
    (a, b) =>
      b.score - a.score ||
      archRank(a.media) - archRank(b.media) ||
      (b.entry.releaseDate ?? '').localeCompare(a.entry.releaseDate ?? ''),
  );
}

/** A pattern's literal text, for "closest" suggestions: `^(J_)?CCSN?A_X64FREE?_` → `JCCSNAX64FREE` (separators dropped on both sides). */
const literal = (pattern: string) => pattern.replace(/\\.|[\^$()?*+.[\]{}|\s_-]/g, '');

/** The OS on an installer ISO, from its volume descriptor: never from the file name. */
export async function identifyIso(
  db: OsDb,
  file: string,
): Promise<{ identity: IsoIdentity; match: MediaMatch }> {
  const identity = await readIsoIdentity(file);
  const [match] = matchMedia(db, identity);
  if (match) return { identity, match };
  const byPattern = new Map<string, OsEntry>();
  for (const e of db.entries) {
    for (const m of e.media)
      if (m.volumeId && !byPattern.has(literal(m.volumeId))) byPattern.set(literal(m.volumeId), e);
  }
  const near = closest([...byPattern.keys()], identity.volumeId.replace(/[\s_-]/g, ''), 40)
    .map((p) => byPattern.get(p)!)
    .filter((e, i, all) => all.indexOf(e) === i)
    .slice(0, 5);
  throw new IsoError(
    `could not identify the OS on ${file} (volume id "${identity.volumeId}"): closest known media: ${near
      .map((e) => `${e.name} (${e.shortId})`)
      .join(', ')}; pass --os ID (see "phyllome os list")`,
  );
}
