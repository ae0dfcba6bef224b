import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';

/** libosinfo's database of operating systems, as Debian and Fedora ship it (package osinfo-db). */
export const OSINFO_DIR = '/usr/share/osinfo';

export interface OsResources {
  cpus?: number;
  ramBytes?: number;
  storageBytes?: number;
}

/** An installer medium, identified by the regular expressions osinfo-db gives for its ISO 9660 fields. */
export interface OsMedia {
  arch: string;
  live: boolean;
  variant?: string;
  volumeId?: string;
  systemId?: string;
  publisherId?: string;
  applicationId?: string;
}

export interface OsEntry {
  id: string;
  shortId: string;
  shortIds: string[];
  name: string;
  vendor?: string;
  version?: string;
  family?: string;
  distro?: string;
  releaseDate?: string;
  eolDate?: string;
  /** The entry this one derives from (or clones); devices, firmware and resources are inherited. */
  derivesFrom?: string;
  /** Device ids the OS drives (`http://pcisig.com/pci/1af4/1042`), inherited ones included. */
  devices: string[];
  /** x86_64 firmware: true supported, false explicitly not, undefined not said. */
  firmware: { efi?: boolean; bios?: boolean };
  minimum: OsResources;
  recommended: OsResources;
  media: OsMedia[];
}

export interface OsDb {
  version: string;
  entries: OsEntry[];
  byShortId: Map<string, OsEntry>;
  byId: Map<string, OsEntry>;
}

export class OsInfoError extends Error {}

/** One `<os>` as written, before inheritance. */
export interface RawOs extends Omit<OsEntry, 'shortId' | 'derivesFrom' | 'devices'> {
  parent?: string;
  /** Device id → supported (a `supported="false"` entry removes an inherited one). */
  devices: Map<string, boolean>;
}

type Node = Record<string, unknown>;

const ARRAYS = new Set([
  'os',
  'short-id',
  'name',
  'vendor',
  'device',
  'firmware',
  'resources',
  'media',
  'derives-from',
  'clones',
  'variant',
]);

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  textNodeName: '#text',
  parseTagValue: false,
  parseAttributeValue: false,
  isArray: (name) => ARRAYS.has(name),
});

const list = (v: unknown): Node[] => (Array.isArray(v) ? (v as Node[]) : v === undefined ? [] : [v as Node]);

/** Text of an element that may carry attributes (then it is an object with `#text`). */
const text = (v: unknown): string | undefined => {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v.trim();
  if (typeof v === 'number') return String(v);
  const t = (v as Node)['#text'];
  return t === undefined ? undefined : String(t).trim();
};

/** The untranslated one of repeated elements like `<name>` (translations carry `xml:lang`). */
const plain = (v: unknown): string | undefined => {
  const all = Array.isArray(v) ? v : v === undefined ? [] : [v];
  const base = all.find((x) => typeof x !== 'object' || !(x as Node)['@xml:lang']);
  return text(base);
};

const num = (v: unknown): number | undefined => {
  const t = text(v);
  const n = t === undefined ? NaN : Number(t);
  return Number.isFinite(n) && n > 0 ? n : undefined;
};

/** The object without its undefined properties, so that optional fields are absent rather than undefined. */
const defined = <T extends object>(o: T): Partial<T> =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;

/** The arches a PC guest runs: media for others (aarch64, s390x…) are dropped. */
const PC_MEDIA = new Set(['x86_64', 'i686', 'all']);

function resources(nodes: Node[], kind: 'minimum' | 'recommended'): OsResources {
  // x86_64 wins over "all" when both are given.
  const rank = (r: Node) => (r['@arch'] === 'x86_64' ? 0 : 1);
  const sorted = nodes
    .filter((r) => ['x86_64', 'all'].includes(String(r['@arch'] ?? 'all')))
    .sort((a, b) => rank(a) - rank(b));
  const out: OsResources = {};
  for (const r of sorted) {
    const k = r[kind] as Node | undefined;
    if (!k) continue;
    out.cpus ??= num(k['n-cpus']);
    out.ramBytes ??= num(k['ram']);
    out.storageBytes ??= num(k['storage']);
  }
  return defined(out);
}

/** Translated names and vendors are over half of the text and never used: dropping them first halves parse time. */
const TRANSLATIONS = /<(name|vendor)\s+xml:lang="[^"]*">[^<]*<\/\1>/g;

/** Pure: the `<os>` entries of one osinfo-db XML document. */
export function parseOsXml(xml: string): RawOs[] {
  const doc = parser.parse(xml.replace(TRANSLATIONS, '')) as { libosinfo?: Node };
  return list(doc.libosinfo?.os).map((os) => {
    const devices = new Map<string, boolean>();
    for (const group of list(os.devices)) {
      for (const d of list(group.device)) devices.set(String(d['@id']), d['@supported'] !== 'false');
    }
    const firmware: RawOs['firmware'] = {};
    for (const f of list(os.firmware)) {
      if (f['@arch'] !== 'x86_64') continue;
      const type = f['@type'] === 'efi' ? 'efi' : f['@type'] === 'bios' ? 'bios' : undefined;
      if (type) firmware[type] = f['@supported'] !== 'false';
    }
    const media = list(os.media)
      .filter((m) => PC_MEDIA.has(String(m['@arch'] ?? 'all')))
      .map((m): OsMedia => {
        const iso = list(m.iso)[0] ?? {};
        const field = (k: string) => text(iso[k]) || undefined;
        const variant = list(m.variant)[0]?.['@id'];
        return {
          arch: String(m['@arch'] ?? 'all'),
          live: m['@live'] === 'true',
          ...defined({
            variant: variant === undefined ? undefined : String(variant),
            volumeId: field('volume-id'),
            systemId: field('system-id'),
            publisherId: field('publisher-id'),
            applicationId: field('application-id'),
          }),
        };
      });
    const parent = list(os['derives-from'])[0]?.['@id'] ?? list(os.clones)[0]?.['@id'];
    const shortIds = list(os['short-id'])
      .map(text)
      .filter((s): s is string => !!s);
    return {
      id: String(os['@id']),
      shortIds,
      name: plain(os.name) ?? shortIds[0] ?? String(os['@id']),
      ...defined({
        vendor: plain(os.vendor),
        version: text(os.version),
        family: text(os.family),
        distro: text(os.distro),
        releaseDate: text(os['release-date']),
        eolDate: text(os['eol-date']),
        parent: parent === undefined ? undefined : String(parent),
      }),
      devices,
      firmware,
      minimum: resources(list(os.resources), 'minimum'),
      recommended: resources(list(os.resources), 'recommended'),
      media,
    };
  });
}

/** Pure: resolves inheritance (derives-from, clones): the nearest entry that says something wins. */
export function buildOsDb(raws: RawOs[], version: string): OsDb {
  const rawById = new Map(raws.map((r) => [r.id, r]));
  /** The entry and its ancestors, nearest first; a cycle in the data stops the walk. */
  const chain = (r: RawOs): RawOs[] => {
    const out: RawOs[] = [];
    const seen = new Set<string>();
    for (
      let at: RawOs | undefined = r;
      at && !seen.has(at.id);
      at = at.parent ? rawById.get(at.parent) : undefined
    ) {
      seen.add(at.id);
      out.push(at);
    }
    return out;
  };
  const entries = raws
    .filter((r) => r.shortIds.length)
    .map((r): OsEntry => {
      const line = chain(r);
      const devices = new Map<string, boolean>();
      for (const at of [...line].reverse()) for (const [id, ok] of at.devices) devices.set(id, ok);
      /** Each field from the nearest entry in the line that gives it. */
      const nearest = <T extends object>(get: (at: RawOs) => T, keys: (keyof T)[]): Partial<T> =>
        defined(
          Object.fromEntries(
            keys.map((k) => [k, line.map((at) => get(at)[k]).find((v) => v !== undefined)]),
          ) as Partial<T>,
        );
      const resKeys: (keyof OsResources)[] = ['cpus', 'ramBytes', 'storageBytes'];
      return {
        id: r.id,
        shortId: r.shortIds[0]!,
        shortIds: r.shortIds,
        name: r.name,
        ...defined({
          vendor: r.vendor,
          version: r.version,
          family: r.family,
          distro: r.distro,
          releaseDate: r.releaseDate,
          eolDate: r.eolDate,
          derivesFrom: r.parent,
        }),
        devices: [...devices]
          .filter(([, ok]) => ok)
          .map(([id]) => id)
          .sort(),
        firmware: nearest((at) => at.firmware, ['efi', 'bios']),
        minimum: nearest((at) => at.minimum, resKeys),
        recommended: nearest((at) => at.recommended, resKeys),
        media: r.media,
      };
    });
  const byShortId = new Map<string, OsEntry>();
  for (const e of entries) for (const s of e.shortIds) if (!byShortId.has(s)) byShortId.set(s, e);
  return { version, entries, byShortId, byId: new Map(entries.map((e) => [e.id, e])) };
}

/** Reads `DIR/os/<vendor>/*.xml` (in parallel: about 800 files) and `DIR/VERSION`. */
export async function loadOsDb(dir: string = OSINFO_DIR): Promise<OsDb> {
  let vendors: string[];
  try {
    vendors = await readdir(path.join(dir, 'os'));
  } catch {
    throw new OsInfoError(
      'osinfo-db is not installed: apt-get install osinfo-db (Debian) or dnf install osinfo-db (Fedora)',
    );
  }
  const files = (
    await Promise.all(
      vendors.map(async (v) =>
        (await readdir(path.join(dir, 'os', v)).catch(() => [] as string[]))
          .filter((f) => f.endsWith('.xml'))
          .map((f) => path.join(dir, 'os', v, f)),
      ),
    )
  ).flat();
  const raws = (await Promise.all(files.map(async (f) => parseOsXml(await readFile(f, 'utf8'))))).flat();
  const version = (await readFile(path.join(dir, 'VERSION'), 'utf8').catch(() => 'unknown')).trim();
  return buildOsDb(raws, version);
}

const haystack = (e: OsEntry) =>
  [...e.shortIds, e.name, e.vendor ?? '', e.distro ?? ''].join(' ').toLowerCase();

/** Numeric-aware comparison of version strings: 10 after 9, 22.04 after 8.10. */
const byVersion = (a = '', b = '') => a.localeCompare(b, 'en', { numeric: true });

/** Entries matching every word of `text` (any order), by family and distro, newest first. */
export function searchOs(db: OsDb, search = ''): OsEntry[] {
  const words = search.toLowerCase().split(/\s+/).filter(Boolean);
  // "windows" is how people say it; osinfo-db's ids say "win".
  const matches = (e: OsEntry) =>
    words.every((w) => haystack(e).includes(w) || (w === 'windows' && e.distro === 'win'));
  return db.entries
    .filter(matches)
    .sort(
      (a, b) =>
        (a.family ?? '').localeCompare(b.family ?? '') ||
        (a.distro ?? '').localeCompare(b.distro ?? '') ||
        byVersion(b.version, a.version) ||
        a.shortId.localeCompare(b.shortId),
    );
}

/** Levenshtein distance, for suggestions. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** The `n` candidates nearest to `target`, nearest first. */
export function closest(candidates: string[], target: string, n: number): string[] {
  const t = target.toLowerCase();
  return [...new Set(candidates)]
    .map((c) => ({ c, d: distance(c.toLowerCase(), t) }))
    .sort((a, b) => a.d - b.d || a.c.localeCompare(b.c))
    .slice(0, n)
    .map((x) => x.c);
}

export interface ResolvedOs {
  entry: OsEntry;
  /** Set when the OS is not in the database and a relative of it stands in. */
  note?: string;
}

/**
 * An OS by short id (or full id). One newer than the database (`fedora43`, `ubuntu24.04`, `win2k25`)
 * falls back to its family's `-unknown` entry when there is one, else its closest older release.
 */
export function resolveOs(db: OsDb, query: string): ResolvedOs {
  const q = query.trim().toLowerCase();
  const exact = db.byShortId.get(q) ?? db.byId.get(query.trim());
  if (exact) return { entry: exact };
  // The version is the trailing number: win2k25 → win2k + 25, ubuntu24.04 → ubuntu + 24.04.
  const m = /^(.*[a-z-])(\d[\d.]*)$/.exec(q);
  if (m) {
    const [, prefix, version] = m as unknown as [string, string, string];
    const relatives = db.entries.flatMap((e) =>
      e.shortIds
        .filter((s) => s.startsWith(prefix) && /^\d[\d.]*$/.test(s.slice(prefix.length)))
        .map((s) => ({ e, v: s.slice(prefix.length) })),
    );
    if (relatives.length) {
      const older = relatives.filter((r) => byVersion(r.v, version) <= 0).sort((a, b) => byVersion(b.v, a.v));
      const newest = [...relatives].sort((a, b) => byVersion(b.v, a.v))[0]!;
      const unknown = db.byShortId.get(`${prefix}-unknown`);
      const beyond = byVersion(version, newest.v) > 0;
      const stand = beyond && unknown ? unknown : older[0]?.e;
      if (stand) {
        return {
          entry: stand,
          note: `${query} is ${beyond ? 'newer than' : 'not in'} this osinfo-db (${db.version}): using ${stand.name} (${stand.shortId}), the closest it knows`,
        };
      }
    }
  }
  const suggestions = closest(
    db.entries.flatMap((e) => e.shortIds),
    q,
    5,
  );
  throw new OsInfoError(
    `unknown OS "${query}": did you mean ${suggestions.join(', ')}? See "phyllome os list --search TEXT"`,
  );
}
