import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  identifyIso,
  IsoError,
  matchMedia,
  parseVolumeDescriptors,
  readIsoIdentity,
} from '../../src/guest/iso.js';
import { loadOsDb, type OsDb } from '../../src/guest/osinfo.js';
import { makeIso, type IsoIds } from '../fixtures/iso.js';

let db: OsDb;
let dir: string;

beforeAll(async () => {
  [db, dir] = await Promise.all([loadOsDb(), mkdtemp(path.join(os.tmpdir(), 'phyllome-iso-'))]);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const iso = (name: string, ids: IsoIds) => makeIso(dir, `${name}.iso`, ids);

describe('install media identification', () => {
  it('reads the primary volume descriptor (pure)', () => {
    const buf = Buffer.alloc(18 * 2048, 0x20);
    const pvd = 16 * 2048;
    buf[pvd] = 1;
    buf.write('CD001', pvd + 1, 'latin1');
    buf.write('LINUX', pvd + 8, 'latin1');
    buf.write('Fedora-S-dvd-x86_64-37', pvd + 40, 'latin1');
    buf.write('THE PUBLISHER', pvd + 318, 'latin1');
    buf[pvd + 2048] = 255;
    buf.write('CD001', pvd + 2049, 'latin1');
    expect(parseVolumeDescriptors(buf)).toEqual({
      systemId: 'LINUX',
      volumeId: 'Fedora-S-dvd-x86_64-37',
      publisherId: 'THE PUBLISHER',
      applicationId: '',
    });
    expect(() => parseVolumeDescriptors(Buffer.alloc(40_000))).toThrow(/not an ISO 9660 image/);
  });

  it('identifies Windows 11, Fedora 37 and Debian 11 installers by the ids osinfo-db lists', async () => {
    const win = await identifyIso(
      db,
      await iso('win', { volume: 'CCCOMA_X64FRE_EN-US_DV9', publisher: 'MICROSOFT CORPORATION' }),
    );
    expect(win.match.entry.shortId).toBe('win11');
    expect(win.identity.volumeId).toBe('CCCOMA_X64FRE_EN-US_DV9');
    const fedora = await identifyIso(db, await iso('fedora', { volume: 'Fedora-WS-Live-37-1-7' }));
    expect(fedora.match.entry.shortId).toBe('fedora37');
    const debian = await identifyIso(
      db,
      await iso('debian', { volume: 'Debian 11.5.0 amd64 n', system: 'LINUX' }),
    );
    expect(debian.match.entry.shortId).toBe('debian11');
  });

  it('does not go by the volume id alone where osinfo-db also names the publisher', () => {
    const matches = matchMedia(db, {
      volumeId: 'CCCOMA_X64FRE_EN-US_DV9',
      systemId: '',
      publisherId: 'SOMEONE ELSE',
      applicationId: '',
    });
    expect(matches.map((m) => m.entry.shortId)).not.toContain('win11');
  });

  it('refuses an unknown medium with the closest known ones, and a file that is no ISO', async () => {
    const unknown = await iso('unknown', { volume: 'XYZZY_NOT_AN_OS' });
    await expect(identifyIso(db, unknown)).rejects.toThrow(
      /could not identify the OS on .*unknown\.iso \(volume id "XYZZY_NOT_AN_OS"\): closest known media: .+ \(\w.*\); pass --os ID/,
    );
    const notIso = path.join(dir, 'plain.bin');
    await writeFile(notIso, Buffer.alloc(100_000));
    await expect(readIsoIdentity(notIso)).rejects.toThrow(IsoError);
    await expect(readIsoIdentity(path.join(dir, 'missing.iso'))).rejects.toThrow(
      /missing\.iso does not exist/,
    );
  });
});
