import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FirmwareChoice } from '../spec/schema.js';

/** One of QEMU's firmware descriptors (docs/interop/firmware.json), as far as Phyllome uses it. */
export interface FirmwareDescriptor {
  file: string;
  description: string;
  interfaceTypes: string[];
  device: string;
  executable?: { filename: string; format: string };
  nvramTemplate?: { filename: string; format: string };
  targets: { architecture: string; machines: string[] }[];
  features: string[];
}

export class FirmwareError extends Error {}

const INSTALL_HINT = 'apt-get install ovmf (Debian) or dnf install edk2-ovmf (Fedora)';

/** Where QEMU looks, lowest priority last; a file in /etc overrides one of the same name in /usr/share. */
export const FIRMWARE_DIRS = ['/etc/qemu/firmware', '/usr/share/qemu/firmware'];

interface RawDescriptor {
  description?: string;
  'interface-types'?: string[];
  mapping?: {
    device?: string;
    executable?: { filename?: string; format?: string };
    'nvram-template'?: { filename?: string; format?: string };
  };
  targets?: { architecture?: string; machines?: string[] }[];
  features?: string[];
}

const file = (f?: { filename?: string; format?: string }) =>
  f?.filename ? { filename: f.filename, format: f.format ?? 'raw' } : undefined;

/** Pure: one descriptor's JSON text. */
export function parseDescriptor(name: string, text: string): FirmwareDescriptor {
  const raw = JSON.parse(text) as RawDescriptor;
  const executable = file(raw.mapping?.executable);
  const nvramTemplate = file(raw.mapping?.['nvram-template']);
  return {
    file: name,
    description: raw.description ?? '',
    interfaceTypes: raw['interface-types'] ?? [],
    device: raw.mapping?.device ?? '',
    ...(executable ? { executable } : {}),
    ...(nvramTemplate ? { nvramTemplate } : {}),
    targets: (raw.targets ?? []).map((t) => ({
      architecture: t.architecture ?? '',
      machines: t.machines ?? [],
    })),
    features: raw.features ?? [],
  };
}

/**
 * Reads the descriptors in QEMU's order: by file name across the folders, /etc winning over /usr/share.
 * An unreadable or malformed descriptor is skipped, as QEMU's users (libvirt) do.
 */
export async function readFirmwareDescriptors(dirs: string[] = FIRMWARE_DIRS): Promise<FirmwareDescriptor[]> {
  const byName = new Map<string, string>();
  for (const dir of [...dirs].reverse()) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names) if (n.endsWith('.json')) byName.set(n, path.join(dir, n));
  }
  const out: FirmwareDescriptor[] = [];
  for (const name of [...byName.keys()].sort()) {
    try {
      out.push(parseDescriptor(byName.get(name)!, await readFile(byName.get(name)!, 'utf8')));
    } catch {
      /* skipped, as above */
    }
  }
  return out;
}

/** QEMU machine globs like `pc-q35-*` against our machine names. */
const machineGlob = { q35: 'pc-q35-', pc: 'pc-i440fx-' } as const;

export interface FirmwareNeeds {
  machine: 'q35' | 'pc';
  secureBoot: boolean;
}

/**
 * Pure: the first descriptor (in QEMU's order) for UEFI on x86_64 flash that fits the machine, with
 * Secure Boot and enrolled keys when asked and without Secure Boot otherwise, so a plain UEFI VM does
 * not get firmware that refuses unsigned kernels.
 */
export function pickFirmware(descriptors: FirmwareDescriptor[], needs: FirmwareNeeds): FirmwareChoice {
  const fits = (d: FirmwareDescriptor) =>
    d.interfaceTypes.includes('uefi') &&
    d.device === 'flash' &&
    d.executable &&
    d.nvramTemplate?.format === 'raw' &&
    d.targets.some(
      (t) => t.architecture === 'x86_64' && t.machines.some((m) => m.startsWith(machineGlob[needs.machine])),
    ) &&
    (needs.secureBoot
      ? d.features.includes('secure-boot') && d.features.includes('enrolled-keys')
      : !d.features.includes('secure-boot'));
  const d = descriptors.find(fits);
  if (!d) {
    const what = needs.secureBoot
      ? 'UEFI firmware with Secure Boot and Microsoft keys enrolled'
      : 'UEFI firmware';
    throw new FirmwareError(
      descriptors.length
        ? `no QEMU firmware descriptor offers ${what} for machine ${needs.machine}: ${INSTALL_HINT}`
        : `no QEMU firmware descriptors found in ${FIRMWARE_DIRS.join(' or ')}: ${INSTALL_HINT}`,
    );
  }
  return {
    type: 'uefi',
    code: d.executable!.filename,
    varsTemplate: d.nvramTemplate!.filename,
    secureBoot: d.features.includes('secure-boot'),
    enrolledKeys: d.features.includes('enrolled-keys'),
    smm: d.features.includes('requires-smm'),
  };
}
