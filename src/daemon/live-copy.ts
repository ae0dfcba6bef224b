import { cp } from 'node:fs/promises';
import path from 'node:path';
import { KEY_SECRET } from '../qemu/cmdline.js';
import type { QmpClient } from '../qemu/qmp.js';
import { diskId, type VmSpec } from '../spec/schema.js';
import { createQcow2, imageInfo } from '../storage/qemu-img.js';
import { whilePaused } from './brief-pause.js';
import { unlessMissing } from './files.js';

interface Job {
  id: string;
  status: string;
  error?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A writable image of a running VM: its QEMU node and the bundle member its copy becomes. */
export interface LivePart {
  node: string;
  member: string;
  file: string;
  format: 'raw' | 'qcow2';
  /** The VM's key, for an encrypted image: the copy is encrypted with it too. */
  key?: string;
}

/** Pure: the images a live copy covers: every writable disk and the UEFI variable store. */
export function liveParts(spec: VmSpec, nvram: string, key: string | undefined): LivePart[] {
  const parts: LivePart[] = spec.disks.flatMap((d, i) =>
    d.readOnly
      ? []
      : [
          {
            node: diskId(d, i),
            member: `${diskId(d, i)}.qcow2`,
            file: d.path,
            format: d.format,
            ...(d.encrypted && key ? { key } : {}),
          },
        ],
  );
  if (spec.firmware.type === 'uefi') {
    const encrypted = spec.firmware.nvramEncrypted && key;
    parts.push({
      node: 'fw-vars',
      member: 'nvram.qcow2',
      file: nvram,
      format: 'qcow2',
      ...(encrypted ? { key } : {}),
    });
  }
  return parts;
}

/**
 * Point-in-time copies of a running VM's writable images and TPM state, made in `into`. The vCPUs
 * pause only while one QMP transaction starts a full backup job per image and the TPM state is
 * copied; QEMU then copies in the background (copy-before-write), so the images and the TPM agree
 * with each other as of that instant while the guest runs on. Returns member name → copy.
 * `heldMarker` is whilePaused's marker.
 */
export async function liveCopy(
  qmp: QmpClient,
  parts: LivePart[],
  tpmDir: string | undefined,
  into: string,
  heldMarker: string,
): Promise<Map<string, string>> {
  const copies = new Map<string, string>();
  const added: string[] = [];
  const jobs = parts.map((p) => `export-${p.node}`);
  let started = false;
  try {
    for (const p of parts) {
      const file = path.join(into, p.member);
      const key = p.key ? { key: p.key } : {};
      const { virtualSize } = await imageInfo({ file: p.file, format: p.format, ...key });
      await createQcow2({ file, ...key }, virtualSize);
      await qmp.execute('blockdev-add', {
        'node-name': `${p.node}-export`,
        driver: 'qcow2',
        file: { driver: 'file', filename: file },
        ...(p.key ? { encrypt: { format: 'luks', 'key-secret': KEY_SECRET } } : {}),
      });
      added.push(`${p.node}-export`);
      copies.set(p.member, file);
    }
    await whilePaused(qmp, heldMarker, async () => {
      // Jobs stay listed once concluded (auto-dismiss off), so their errors can be read.
      await qmp.execute('transaction', {
        actions: parts.map((p, i) => ({
          type: 'blockdev-backup',
          data: {
            'job-id': jobs[i],
            device: p.node,
            target: `${p.node}-export`,
            sync: 'full',
            'auto-dismiss': false,
          },
        })),
      });
      started = true;
      if (tpmDir) await cp(tpmDir, path.join(into, 'tpm'), { recursive: true }).catch(unlessMissing);
    });
    for (;;) {
      const listed = (await qmp.execute<Job[]>('query-jobs')).filter((j) => jobs.includes(j.id));
      const failed = listed.find((j) => j.error);
      if (failed) throw new Error(`copying ${failed.id.slice('export-'.length)} failed: ${failed.error}`);
      if (listed.every((j) => j.status === 'concluded')) break;
      await sleep(200);
    }
  } catch (e) {
    if (started) {
      for (const id of jobs) await qmp.execute('job-cancel', { id }).catch(() => undefined);
    }
    throw e;
  } finally {
    for (const id of started ? jobs : []) {
      // A cancelled job concludes a moment later; only then can it be dismissed and its target freed.
      for (let i = 0; i < 50; i++) {
        if (
          await qmp.execute('job-dismiss', { id }).then(
            () => true,
            () => false,
          )
        )
          break;
        await sleep(100);
      }
    }
    for (const node of added) await qmp.execute('blockdev-del', { 'node-name': node }).catch(() => undefined);
  }
  return copies;
}
