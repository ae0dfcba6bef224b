import path from 'node:path';
import { diskId, type VmSpec } from '../spec/schema.js';
import { memberProblem } from './manifest.js';

/**
 * Inside a bundle the spec names carried files under this folder; an import maps it to the new VM's
 * folder. So a bundle never depends on where the exporting host kept its VMs.
 */
export const BUNDLE_DIR = '/phyllome-bundle';

/** A file that travels: its member name, where it is now, and whether it is a disk image. */
export interface Carried {
  member: string;
  source: string;
  /** Disks travel as qcow2 (raw ones are converted, so only allocated data travels). */
  disk?: { format: 'raw' | 'qcow2'; encrypted: boolean };
}

/**
 * Pure: what an export carries and the spec as the bundle holds it. Every disk (its own qcow2 as
 * `diskN.qcow2`), a direct-boot kernel and initrd, and media kept in the VM's folder (the cloud-init
 * seed) travel; media elsewhere (installer ISOs) stay behind and the importer re-finds or drops them.
 * The UEFI variables, TPM state and snapshot records are the folder's own files, listed by the caller.
 */
export function bundleLayout(spec: VmSpec, dir: string): { spec: VmSpec; carried: Carried[] } {
  const carried: Carried[] = [];
  const carry = (source: string, member: string, disk?: Carried['disk']): string => {
    carried.push({ member, source, ...(disk ? { disk } : {}) });
    return path.join(BUNDLE_DIR, member);
  };
  const out: VmSpec = {
    ...spec,
    disks: spec.disks.map((d, i) => ({
      ...d,
      id: diskId(d, i),
      format: 'qcow2' as const,
      path: carry(d.path, `${diskId(d, i)}.qcow2`, { format: d.format, encrypted: d.encrypted }),
    })),
    cdroms: spec.cdroms.map((c) =>
      c.path && path.dirname(c.path) === dir && !memberProblem(path.basename(c.path))
        ? { ...c, path: carry(c.path, path.basename(c.path)) }
        : c,
    ),
    ...(spec.boot
      ? {
          boot: {
            ...spec.boot,
            kernel: carry(spec.boot.kernel, 'kernel'),
            ...(spec.boot.initrd ? { initrd: carry(spec.boot.initrd, 'initrd') } : {}),
          },
        }
      : {}),
  };
  return { spec: out, carried };
}

/** Pure: the bundle's spec with its carried files at their places in the new VM's folder. */
export function unbundledPaths(spec: VmSpec, dir: string): VmSpec {
  const place = (p: string) => (path.dirname(p) === BUNDLE_DIR ? path.join(dir, path.basename(p)) : p);
  return {
    ...spec,
    disks: spec.disks.map((d) => ({ ...d, path: place(d.path) })),
    cdroms: spec.cdroms.map((c) => (c.path ? { ...c, path: place(c.path) } : c)),
    ...(spec.boot
      ? {
          boot: {
            ...spec.boot,
            kernel: place(spec.boot.kernel),
            ...(spec.boot.initrd ? { initrd: place(spec.boot.initrd) } : {}),
          },
        }
      : {}),
  };
}
