import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Keystore } from '../../src/storage/keystore.js';
import { imageInfo } from '../../src/storage/qemu-img.js';
import {
  createGuest,
  json,
  markerOnDisk,
  ok,
  stopDaemon,
  useHome,
  waitForReady,
  writeMarker,
  type Vm,
} from './helpers.js';

describe('linked clones of encrypted VMs', () => {
  const home = useHome();

  it('share an encrypted base: each sees the base, writes only its own overlay, and no marker is in the clear', async () => {
    const h = home();
    await createGuest(h, 'src', ['--disk', '64M']);
    await ok(h, ['start', 'src']);
    await waitForReady(h, 'src');
    await writeMarker(h, 'src', 'MARKER-SRC');
    await ok(h, ['stop', 'src', '--force']);

    const thin = await json<Vm>(h, ['clone', 'src', 'thin', '--linked']);
    const src = await json<Vm>(h, ['status', 'src']);
    expect(thin.spec.disks[0]).toMatchObject({
      encrypted: true,
      path: path.join(h.home, 'vms', 'thin', 'disk0.qcow2'),
    });
    // One key opens base and overlays: the clone holds a copy of the source's, under its own uuid.
    const keystore = new Keystore(path.join(h.home, 'keystore.json'));
    await keystore.unlock((await readFile(h.env.PHYLLOME_PASSPHRASE_FILE!, 'utf8')).trim());
    expect(await keystore.keyFor(thin.uuid)).toBe(await keystore.keyFor(src.uuid));
    const overlays = [src, thin].map((v) => v.spec.disks[0]!.path);
    const [srcInfo, thinInfo] = await Promise.all(overlays.map((file) => imageInfo({ file })));
    expect(thinInfo!.backing).toMatch(/\/bases\//);
    expect(srcInfo!.backing).toBe(thinInfo!.backing);
    const base = thinInfo!.backing!;
    for (const info of [srcInfo!, thinInfo!, await imageInfo({ file: base })])
      expect(info.encrypted).toBe(true);

    await ok(h, ['start', 'thin']);
    await waitForReady(h, 'thin');
    expect(await markerOnDisk(h, 'thin')).toBe('MARKER-SRC');
    await writeMarker(h, 'thin', 'MARKER-THIN');
    // A live snapshot names the overlay's node; the base nodes under it stay read-only.
    await ok(h, ['snapshot', 'create', 'thin', 'live']);
    await ok(h, ['stop', 'thin', '--force']);
    await ok(h, ['start', 'src']);
    await waitForReady(h, 'src');
    expect(await markerOnDisk(h, 'src')).toBe('MARKER-SRC');
    await ok(h, ['stop', 'src', '--force']);
    for (const file of [base, ...overlays]) {
      const bytes = await readFile(file);
      expect(bytes.includes('MARKER-SRC') || bytes.includes('MARKER-THIN'), file).toBe(false);
    }

    // Offline disk operations open the encrypted base with the same key.
    await ok(h, ['snapshot', 'create', 'thin', 'first']);
    expect((await imageInfo({ file: overlays[1]! })).snapshots).toEqual(['live', 'first']);
    await ok(h, ['disk', 'resize', 'thin', 'disk0', '128M']);
    expect((await imageInfo({ file: overlays[1]! })).virtualSize).toBe(128 * 2 ** 20);
    // An export flattens the overlay into a self-contained image, still encrypted; its import boots
    // with the clone's data.
    const pass = path.join(h.dir, 'bundle-pass');
    await writeFile(pass, 'bundle passphrase\n');
    const bundle = path.join(h.dir, 'thin.phyllome');
    await ok(h, ['export', 'thin', '-o', bundle, '--passphrase-file', pass]);
    await ok(h, ['import', bundle, '--passphrase-file', pass, '--name', 'moved']);
    const moved = await json<Vm>(h, ['status', 'moved']);
    const movedInfo = await imageInfo({ file: moved.spec.disks[0]!.path });
    expect(movedInfo).toMatchObject({ encrypted: true });
    expect(movedInfo.backing).toBeUndefined();
    await ok(h, ['start', 'moved']);
    await waitForReady(h, 'moved');
    expect(await markerOnDisk(h, 'moved')).toBe('MARKER-THIN');
    await ok(h, ['stop', 'moved', '--force']);
    // A revert applies the overlay's snapshot, opened through the encrypted base too.
    await ok(h, ['snapshot', 'revert', 'thin', 'live']);
    expect((await imageInfo({ file: overlays[1]! })).virtualSize).toBe(64 * 2 ** 20);
  });

  it('removes a shared base once no VM reads from it, at delete and at daemon start', async () => {
    const h = home();
    await createGuest(h, 'src', ['--disk', '64M']);
    await ok(h, ['clone', 'src', 'a', '--linked']);
    await ok(h, ['clone', 'a', 'b', '--linked']);
    const bases = path.join(h.home, 'bases');
    // b's chain: its overlay, a's old overlay (now the second base), then src's base.
    expect((await readdir(bases)).length).toBe(2);
    const first = path.basename(
      (await imageInfo({ file: path.join(h.home, 'vms', 'src', 'disk0.qcow2') })).backing!,
    );
    // A full clone of b reads through both encrypted bases (the key named once per level).
    const full = await json<Vm>(h, ['clone', 'b', 'full']);
    expect(await imageInfo({ file: full.spec.disks[0]!.path })).toMatchObject({ encrypted: true });
    expect((await imageInfo({ file: full.spec.disks[0]!.path })).backing).toBeUndefined();
    await ok(h, ['delete', 'a']);
    expect((await readdir(bases)).length).toBe(2);
    await ok(h, ['delete', 'b']);
    expect(await readdir(bases)).toEqual([first]);
    // A base a crash left behind (its clone never finished) goes at the next start.
    await writeFile(path.join(bases, 'stray.qcow2'), '');
    await stopDaemon(h);
    await ok(h, ['list']);
    expect(await readdir(bases)).toEqual([first]);
    await ok(h, ['delete', 'src']);
    expect(await readdir(bases)).toEqual([]);
  });
});
