import { beforeAll, describe, expect, it } from 'vitest';
import {
  buildOsDb,
  loadOsDb,
  OsInfoError,
  parseOsXml,
  resolveOs,
  searchOs,
  type OsDb,
} from '../../src/guest/osinfo.js';

// The real osinfo-db from Debian's package (scripts/install-deps.sh installs it).
let db: OsDb;
let loadMs = 0;
beforeAll(async () => {
  const t = performance.now();
  db = await loadOsDb();
  loadMs = performance.now() - t;
});

const GiB = 2 ** 30;
const VIRTIO_BLK = ['http://pcisig.com/pci/1af4/1001', 'http://pcisig.com/pci/1af4/1042'];

describe('osinfo-db', () => {
  it('loads every OS quickly, with its version', () => {
    expect(db.entries.length).toBeGreaterThan(500);
    expect(db.version).toMatch(/^\d{8}$/);
    expect(loadMs).toBeLessThan(3000);
  });

  it("knows Windows 11's requirements and inherits its devices from Windows 10's line", () => {
    const { entry, note } = resolveOs(db, 'win11');
    expect(note).toBeUndefined();
    expect(entry.firmware).toEqual({ efi: true, bios: false });
    expect(entry.minimum).toMatchObject({ cpus: 2, ramBytes: 4 * GiB, storageBytes: 64 * GiB });
    expect(entry.family).toBe('winnt');
    expect(entry.derivesFrom).toBe('http://microsoft.com/win/10');
    // Windows 11's own file lists no devices: they come from win8/win7 through the chain.
    expect(entry.devices).toContain('http://qemu.org/chipset/x86/q35');
    expect(entry.devices.some((d) => VIRTIO_BLK.includes(d))).toBe(false);
    expect(entry.media.some((m) => m.publisherId === 'MICROSOFT CORPORATION')).toBe(true);
  });

  it('does not make UEFI required for Windows 7, and knows Fedora drives virtio-blk', () => {
    expect(resolveOs(db, 'win7').entry.firmware.bios).not.toBe(false);
    const fedora = resolveOs(db, 'fedora37').entry;
    expect(fedora.devices.some((d) => VIRTIO_BLK.includes(d))).toBe(true);
    expect(fedora.firmware.efi).toBe(true);
  });

  it('falls back for an OS newer than the database, and says so', () => {
    const fedora = resolveOs(db, 'fedora43');
    expect(fedora.entry.shortId).toBe('fedora-unknown');
    expect(fedora.note).toBe(
      `fedora43 is newer than this osinfo-db (${db.version}): using ${fedora.entry.name} (fedora-unknown), the closest it knows`,
    );
    const ubuntu = resolveOs(db, 'ubuntu24.04');
    expect(ubuntu.entry.distro).toBe('ubuntu');
    expect(ubuntu.note).toMatch(/newer than this osinfo-db/);
    const server = resolveOs(db, 'win2k25');
    expect(server.entry.shortId).toBe('win2k22');
    expect(server.note).toMatch(/win2k25 is newer than this osinfo-db/);
  });

  it('refuses an unknown OS with the closest ids and where to look', () => {
    expect(() => resolveOs(db, 'nosuchos')).toThrow(OsInfoError);
    expect(() => resolveOs(db, 'nosuchos')).toThrow(
      /did you mean (\S+, ){4}\S+\? .*phyllome os list --search TEXT/,
    );
    expect(() => resolveOs(db, 'windoze11')).toThrow(/^unknown OS "windoze11": did you mean .*win11/);
  });

  it('searches by words in ids, names and vendors', () => {
    expect(searchOs(db, 'windows 11').map((e) => e.shortId)).toContain('win11');
    expect(searchOs(db, 'fedora 37').map((e) => e.shortId)).toContain('fedora37');
    expect(searchOs(db, 'zzzz-nothing')).toEqual([]);
    expect(searchOs(db).length).toBe(db.entries.length);
  });

  it('resolves inheritance: a device marked unsupported is removed, the nearest firmware and resources win', () => {
    const xml = (body: string) => `<?xml version="1.0"?><libosinfo version="0.0.1">${body}</libosinfo>`;
    const parent = parseOsXml(
      xml(`<os id="http://ex/a/1"><short-id>a1</short-id><name>A 1</name><name xml:lang="de">A eins</name>
        <family>linux</family>
        <devices><device id="http://pcisig.com/pci/1af4/1001"/><device id="http://pcisig.com/pci/1af4/1000"/></devices>
        <firmware arch="x86_64" type="efi"/>
        <resources arch="all"><minimum><n-cpus>1</n-cpus><ram>536870912</ram></minimum></resources></os>`),
    );
    const child = parseOsXml(
      xml(`<os id="http://ex/a/2"><short-id>a2</short-id><name>A 2</name><derives-from id="http://ex/a/1"/>
        <devices><device id="http://pcisig.com/pci/1af4/1000" supported="false"/></devices>
        <resources arch="x86_64"><minimum><ram>1073741824</ram></minimum></resources>
        <media arch="x86_64"><iso><volume-id>^A2_</volume-id><system-id>LINUX</system-id></iso></media>
        <media arch="aarch64"><iso><volume-id>^A2_ARM</volume-id></iso></media></os>`),
    );
    const built = buildOsDb([...parent, ...child], 'test');
    const a2 = built.byShortId.get('a2')!;
    expect(built.byShortId.get('a1')!.name).toBe('A 1');
    expect(a2.devices).toEqual(['http://pcisig.com/pci/1af4/1001']);
    expect(a2.firmware).toEqual({ efi: true });
    expect(a2.minimum).toEqual({ cpus: 1, ramBytes: 2 ** 30 });
    expect(a2.media).toEqual([{ arch: 'x86_64', live: false, volumeId: '^A2_', systemId: 'LINUX' }]);
  });
});
