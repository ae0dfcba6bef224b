import { chmod, copyFile, cp, link, mkdir, readdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { diskId, randomMac, renewMdevs, type VmSpec } from '../spec/schema.js';
import { backingChain } from '../storage/format.js';
import { copyImage, createOverlay } from '../storage/qemu-img.js';
import { UserError } from './errors.js';
import { unlessMissing } from './files.js';
import { readSnapshots } from './snapshots.js';

export interface CloneRequest {
  src: VmSpec;
  srcDir: string;
  name: string;
  dstDir: string;
  /** Where linked clones' shared, read-only bases live. */
  basesDir: string;
  linked: boolean;
  srcKey?: string;
  /**
   * A full clone of an encrypted VM gets its own key; a linked one the source's (its bases stay
   * encrypted under that key, so one secret opens base and overlay).
   */
  dstKey?: string;
  onProgress?: (pct: number) => void;
}

/** Files of the source VM's own folder move along; anything else (a shared ISO, a read-only image) is referenced. */
const own = (file: string, dir: string) => path.dirname(file) === dir;

/**
 * Pure: the clone's spec. A new identity (uuid, MACs, mediated devices), its own copies of what lives in the source's
 * folder; read-only disks and outside media are shared.
 */
export function cloneSpec(r: CloneRequest, uuid: string, createdAt: string): VmSpec {
  const moved = (file: string) => (own(file, r.srcDir) ? path.join(r.dstDir, path.basename(file)) : file);
  return {
    ...r.src,
    name: r.name,
    uuid,
    createdAt,
    disks: r.src.disks.map((d, i) =>
      d.readOnly
        ? d
        : {
            ...d,
            id: diskId(d, i),
            path: path.join(r.dstDir, `${diskId(d, i)}.qcow2`),
            format: 'qcow2' as const,
            encrypted: d.encrypted,
          },
    ),
    cdroms: r.src.cdroms.map((c) => (c.path ? { ...c, path: moved(c.path) } : c)),
    nics: r.src.nics.map((n) => ({ ...n, mac: randomMac() })),
    graphics: renewMdevs(r.src.graphics),
  };
}

/** Refusals that need no work: the reasons a clone cannot be made. */
export async function checkClone(r: CloneRequest): Promise<void> {
  if (!r.linked) return;
  if (r.src.disks.some((d) => !d.readOnly && d.format !== 'qcow2')) {
    throw new UserError('linked clones need qcow2 disks: convert the raw ones first, or make a full clone');
  }
  if ((await readSnapshots(r.srcDir)).snapshots.length) {
    throw new UserError(
      `"${r.src.name}" has snapshots, which a linked clone would freeze in its shared base: delete them, or make a full clone`,
    );
  }
}

/**
 * Fills the clone's staging folder. A full clone copies only allocated data (qemu-img convert); a
 * linked one turns each source disk into a read-only base shared by two overlays, the source's and
 * the clone's, so neither can change what the other reads.
 */
export async function makeClone(r: CloneRequest, spec: VmSpec, staging: string): Promise<void> {
  const writable = r.src.disks.map((d, i) => ({ d, i })).filter(({ d }) => !d.readOnly);
  let done = 0;
  for (const { d, i } of writable) {
    const target = path.join(staging, `${diskId(d, i)}.qcow2`);
    if (r.linked) {
      await mkdir(r.basesDir, { recursive: true, mode: 0o750 });
      const base = path.join(r.basesDir, `${r.src.uuid}-${diskId(d, i)}-${Date.now()}.qcow2`);
      // Crash-safe order: the base is a second name of the source image (no copy); the source's new
      // overlay replaces its image by rename. Until then the source is untouched.
      await link(d.path, base);
      const overlay = `${d.path}.overlay`;
      await createOverlay(base, overlay, d.encrypted ? r.srcKey : undefined);
      await rename(overlay, d.path);
      await chmod(base, 0o444);
      await createOverlay(base, target, d.encrypted ? r.dstKey : undefined);
    } else {
      await copyImage(
        { file: d.path, ...(d.encrypted && r.srcKey ? { key: r.srcKey } : {}), format: d.format },
        { file: target, ...(spec.disks[i]!.encrypted && r.dstKey ? { key: r.dstKey } : {}) },
        (pct) => r.onProgress?.((100 * done + pct) / writable.length),
      );
    }
    done++;
  }
  // The UEFI variables (re-encrypted with the clone's key when encrypted), the TPM state and the
  // cloud-init seed are the source's own files: copied.
  if (r.src.firmware.type === 'uefi' && r.src.firmware.nvramEncrypted) {
    await copyImage(
      { file: path.join(r.srcDir, 'nvram.qcow2'), key: r.srcKey! },
      { file: path.join(staging, 'nvram.qcow2'), key: r.dstKey! },
    );
  }
  const plainNvram = r.src.firmware.type === 'uefi' && !r.src.firmware.nvramEncrypted;
  for (const f of [...(plainNvram ? ['nvram.qcow2'] : []), 'cloud-init.iso']) {
    await copyFile(path.join(r.srcDir, f), path.join(staging, f)).catch(unlessMissing);
  }
  if (r.src.tpm) {
    await cp(path.join(r.srcDir, 'tpm'), path.join(staging, 'tpm'), { recursive: true }).catch(unlessMissing);
  }
  r.onProgress?.(100);
}

/**
 * The bases under each encrypted disk that is an overlay (an encrypted linked clone's), by disk id,
 * for the launch plan: QEMU needs each of them opened with the key.
 */
export async function encryptedBases(spec: VmSpec): Promise<Record<string, string[]>> {
  const chains = await Promise.all(
    spec.disks.map(async (d, i) => [diskId(d, i), d.encrypted ? await backingChain(d.path) : []] as const),
  );
  return Object.fromEntries(chains.filter(([, chain]) => chain.length));
}

/**
 * Linked-clone bases that no VM's disk reads from any more (its whole chain counted), to remove. A disk
 * whose chain cannot be read makes this throw: nothing is removed while a reference may be unseen.
 */
export async function unusedBases(basesDir: string, specs: VmSpec[]): Promise<string[]> {
  const names = (await readdir(basesDir).catch(unlessMissing)) ?? [];
  if (!names.length) return [];
  const qcow2 = specs.flatMap((s) => s.disks.filter((d) => d.format === 'qcow2'));
  const used = new Set((await Promise.all(qcow2.map((d) => backingChain(d.path)))).flat());
  return names.map((n) => path.resolve(basesDir, n)).filter((f) => !used.has(f));
}
