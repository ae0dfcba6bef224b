import { cp, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { QmpClient } from '../qemu/qmp.js';
import { whilePaused } from './brief-pause.js';
import { NVRAM_NODE } from '../qemu/cmdline.js';
import { diskId, type VmSpec } from '../spec/schema.js';
import { imageInfo, snapshotImage, type Image } from '../storage/qemu-img.js';
import { UserError } from './errors.js';
import { unlessMissing, writeJsonAtomic } from './files.js';

/** One snapshot: every writable qcow2 disk, the UEFI variables and the TPM state, taken as one unit. */
export interface Snapshot {
  name: string;
  /** The snapshot that was current when this one was taken: the tree's edges. */
  parent?: string;
  createdAt: string;
  /** Taken while the VM ran (disks, variables and TPM as of one paused moment), or offline. */
  live: boolean;
  /** A journal: anything but "ready" is cleaned away after a crash, never listed. */
  state: 'creating' | 'ready' | 'deleting';
}

export interface SnapshotFile {
  current?: string;
  snapshots: Snapshot[];
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Pure: snapshot names become QEMU tags and folder names; refuse what could be misread as either. */
export function snapshotNameProblem(name: string): string | undefined {
  if (!NAME_RE.test(name) || name.includes('..')) {
    return `invalid snapshot name "${name}": use letters, digits, ".", "_" and "-" (no "/", "," or ".."), starting with a letter or digit, at most 63 characters`;
  }
  return undefined;
}

/** Pure: the snapshots as an indented tree, the current one marked. */
export function snapshotTree(file: SnapshotFile): string {
  const ready = file.snapshots.filter((s) => s.state === 'ready');
  if (!ready.length) return 'No snapshots.';
  const names = new Set(ready.map((s) => s.name));
  const lines: string[] = [];
  const walk = (parent: string | undefined, depth: number) => {
    for (const s of ready.filter(
      (x) => (x.parent && names.has(x.parent) ? x.parent : undefined) === parent,
    )) {
      lines.push(
        `${'  '.repeat(depth)}${s.name}${s.name === file.current ? ' (current)' : ''}  ${s.createdAt}${s.live ? '  live' : ''}`,
      );
      walk(s.name, depth + 1);
    }
  };
  walk(undefined, 0);
  return lines.join('\n');
}

export interface SnapshotTarget {
  spec: VmSpec;
  dir: string;
  nvram: string;
  tpmState: string;
  key?: string;
  /** Set while QEMU runs: snapshots then go through QMP (the images are open in QEMU). */
  qmp?: QmpClient;
  /** Where whilePaused marks the guest as paused by a snapshot. */
  heldMarker: string;
}

const file = (dir: string) => path.join(dir, 'snapshots.json');
const tpmCopy = (dir: string, name: string) => path.join(dir, 'snapshots', name, 'tpm');

export async function readSnapshots(dir: string): Promise<SnapshotFile> {
  try {
    return JSON.parse(await readFile(file(dir), 'utf8')) as SnapshotFile;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { snapshots: [] };
    throw e;
  }
}

const write = (dir: string, f: SnapshotFile) => writeJsonAtomic(file(dir), f);

/** The images a snapshot covers, with their QEMU node names; raw writable disks cannot be snapshotted. */
function images(t: SnapshotTarget): { node: string; image: Image }[] {
  const out: { node: string; image: Image }[] = [];
  t.spec.disks.forEach((d, i) => {
    if (d.readOnly) return;
    if (d.format !== 'qcow2') {
      throw new UserError(
        `${diskId(d, i)} is a raw image: snapshots need qcow2 (convert it: qemu-img convert -O qcow2 ${d.path} NEW.qcow2)`,
      );
    }
    out.push({
      node: diskId(d, i),
      image: { file: d.path, ...(d.encrypted && t.key ? { key: t.key } : {}) },
    });
  });
  if (t.spec.firmware.type === 'uefi') {
    const key = t.spec.firmware.nvramEncrypted && t.key ? { key: t.key } : {};
    out.push({ node: NVRAM_NODE, image: { file: t.nvram, ...key } });
  }
  return out;
}

/**
 * Takes a snapshot: offline with qemu-img; live with the vCPUs paused for a moment while each image
 * gets an internal snapshot over QMP, so the disks, variables and TPM agree. RAM is not saved: QEMU 7.2
 * cannot write it into an encrypted image (it asserts), it would sit there unencrypted otherwise, and
 * virgl cannot be saved at all. A revert boots from the snapshot's disks.
 */
export async function createSnapshot(t: SnapshotTarget, name: string): Promise<Snapshot> {
  const problem = snapshotNameProblem(name);
  if (problem) throw new UserError(problem);
  const f = await readSnapshots(t.dir);
  if (f.snapshots.some((s) => s.name === name)) {
    throw new UserError(`"${t.spec.name}" already has a snapshot named "${name}"`, 409, 'conflict');
  }
  const parts = images(t);
  const snap: Snapshot = {
    name,
    ...(f.current ? { parent: f.current } : {}),
    createdAt: new Date().toISOString(),
    live: !!t.qmp,
    state: 'creating',
  };
  await write(t.dir, { ...f, snapshots: [...f.snapshots, snap] });
  try {
    if (t.qmp) {
      const qmp = t.qmp;
      await whilePaused(qmp, t.heldMarker, async () => {
        await copyTpm(t, name);
        for (const p of parts) {
          await qmp.execute('blockdev-snapshot-internal-sync', { device: p.node, name });
        }
      });
    } else {
      await copyTpm(t, name);
      for (const p of parts) await snapshotImage(p.image, '-c', name);
    }
  } catch (e) {
    await cleanup(t, name).catch(() => undefined);
    throw e;
  }
  const ready: Snapshot = { ...snap, state: 'ready' };
  const after = await readSnapshots(t.dir);
  await write(t.dir, {
    current: name,
    snapshots: after.snapshots.map((s) => (s.name === name ? ready : s)),
  });
  return ready;
}

async function copyTpm(t: SnapshotTarget, name: string): Promise<void> {
  if (!t.spec.tpm) return;
  await rm(tpmCopy(t.dir, name), { recursive: true, force: true });
  // A TPM that never ran has no state yet: nothing to keep.
  await cp(t.tpmState, tpmCopy(t.dir, name), { recursive: true }).catch(unlessMissing);
}

/** Removes every trace of a snapshot (a half-made one included) and its journal entry. */
async function cleanup(t: SnapshotTarget, name: string): Promise<void> {
  for (const p of images(t)) {
    const info = await imageInfo(p.image);
    if (!info.snapshots.includes(name)) continue;
    if (t.qmp) await t.qmp.execute('blockdev-snapshot-delete-internal-sync', { device: p.node, name });
    else await snapshotImage(p.image, '-d', name);
  }
  await rm(path.join(t.dir, 'snapshots', name), { recursive: true, force: true });
  const f = await readSnapshots(t.dir);
  const gone = f.snapshots.find((s) => s.name === name);
  await write(t.dir, {
    ...(f.current && f.current !== name
      ? { current: f.current }
      : gone?.parent
        ? { current: gone.parent }
        : {}),
    // Children of a deleted snapshot hang from its parent.
    snapshots: f.snapshots
      .filter((s) => s.name !== name)
      .map((s) => {
        if (s.parent !== name) return s;
        const { parent: _parent, ...rest } = s;
        return gone?.parent ? { ...rest, parent: gone.parent } : rest;
      }),
  });
}

/** The snapshot list, after checking it has this (whole) snapshot. */
async function withSnapshot(t: SnapshotTarget, name: string): Promise<SnapshotFile> {
  const f = await readSnapshots(t.dir);
  if (!f.snapshots.some((s) => s.name === name && s.state === 'ready')) {
    throw new UserError(
      `"${t.spec.name}" has no snapshot "${name}": see "phyllome snapshot list ${t.spec.name}"`,
      404,
      'not-found',
    );
  }
  return f;
}

/** Deletes a snapshot (live through QMP when the VM runs). */
export async function deleteSnapshot(t: SnapshotTarget, name: string): Promise<void> {
  const f = await withSnapshot(t, name);
  await write(t.dir, {
    ...f,
    snapshots: f.snapshots.map((s) => (s.name === name ? { ...s, state: 'deleting' as const } : s)),
  });
  await cleanup(t, name);
}

/** Puts disks, UEFI variables and TPM state back as they were. The VM must be stopped. */
export async function revertSnapshot(t: SnapshotTarget, name: string): Promise<void> {
  const f = await withSnapshot(t, name);
  if (t.qmp)
    throw new UserError(
      `stop "${t.spec.name}" first: it reverts to "${name}" while stopped`,
      409,
      'conflict',
    );
  for (const p of images(t)) await snapshotImage(p.image, '-a', name);
  if (t.spec.tpm) {
    // Swapped in whole: a crash leaves the old state or the snapshot's, never a mix.
    const staged = `${t.tpmState}.reverting`;
    await rm(staged, { recursive: true, force: true });
    await cp(tpmCopy(t.dir, name), staged, { recursive: true }).catch(unlessMissing);
    await rm(t.tpmState, { recursive: true, force: true });
    await rename(staged, t.tpmState).catch(unlessMissing);
  }
  await write(t.dir, { ...f, current: name });
}

/** After a crash: snapshots caught half-made or half-deleted are removed, so none is listed half-done. */
export async function recoverSnapshots(t: SnapshotTarget): Promise<string[]> {
  const f = await readSnapshots(t.dir);
  const broken = f.snapshots.filter((s) => s.state !== 'ready').map((s) => s.name);
  for (const name of broken) await cleanup(t, name);
  return broken;
}
