import { createHmac, timingSafeEqual } from 'node:crypto';
import type { KdfParams, Sealed } from '../storage/keystore.js';

/**
 * A `.phyllome` bundle is a zstd-compressed tar. Members keep their names in the VM's folder (disks
 * as `diskN.qcow2`), plus three that never land there: `vm.json` (the spec, first), `keys.json` (the
 * VM's keys wrapped with the bundle passphrase) and `manifest.json` (last: every other member's size
 * and SHA-256, so a reader knows the bundle is whole only at its end).
 */
export const SPEC_MEMBER = 'vm.json';
export const KEYS_MEMBER = 'keys.json';
export const MANIFEST_MEMBER = 'manifest.json';
export const BUNDLE_FORMAT = 'phyllome-bundle';

/** The media type of a bundle over HTTP, and the header that carries its passphrase on import. */
export const BUNDLE_TYPE = 'application/x-phyllome-bundle';
export const PASSPHRASE_HEADER = 'x-phyllome-passphrase';

export interface Member {
  path: string;
  size: number;
  sha256: string;
}

export interface Manifest {
  format: typeof BUNDLE_FORMAT;
  version: 1;
  vm: string;
  createdAt: string;
  /** Present when the bundle has a passphrase: it derives the key-wrapping key and the MAC key. */
  kdf?: KdfParams & { salt: string };
  members: Member[];
  /** HMAC-SHA-256 of the rest of the manifest: without the passphrase, checksums cannot be forged. */
  mac?: string;
}

/** The VM's keys as a bundle carries them: the disk key (disks, UEFI variables) and the TPM's. */
export interface BundleKeys {
  disk?: Sealed;
  tpm?: Sealed;
}

const SNAP = /^snapshots\/[A-Za-z0-9][A-Za-z0-9._-]{0,62}\/tpm\/[A-Za-z0-9._-]{1,64}$/;
const MEMBER_RULES = [
  /^disk[0-9]{1,3}\.qcow2$/,
  /^(nvram\.qcow2|cloud-init\.iso|snapshots\.json|kernel|initrd)$/,
  /^tpm\/[A-Za-z0-9._-]{1,64}$/,
  SNAP,
];

/** Pure: why a member name is not one a bundle may hold (a path that could escape, an unknown file). */
export function memberProblem(name: string): string | undefined {
  if ([SPEC_MEMBER, KEYS_MEMBER, MANIFEST_MEMBER].includes(name)) return undefined;
  if (name.split('/').some((part) => part === '..' || part === '.' || part === '')) {
    return `member "${name}" has a path that leaves the bundle`;
  }
  return MEMBER_RULES.some((r) => r.test(name)) ? undefined : `member "${name}" is not part of a VM`;
}

const macInput = (m: Manifest): string => JSON.stringify({ ...m, mac: undefined });

export const manifestMac = (macKey: Buffer, m: Manifest): string =>
  createHmac('sha256', macKey).update(macInput(m)).digest('hex');

/**
 * Pure: what is wrong with the bundle that was read, given its manifest and the members seen (with
 * their measured sizes and hashes). Every member must be listed once and match; none may be missing.
 */
export function manifestProblems(m: Manifest, seen: Member[], macKey?: Buffer): string[] {
  if (m.format !== BUNDLE_FORMAT || m.version !== 1) {
    return [`not a Phyllome bundle of a version this Phyllome reads (format ${String(m.format)})`];
  }
  const problems: string[] = [];
  if (macKey) {
    const want = Buffer.from(manifestMac(macKey, m), 'hex');
    const got = Buffer.from(m.mac ?? '', 'hex');
    if (got.length !== want.length || !timingSafeEqual(got, want)) {
      return ['the manifest does not match the passphrase: a wrong passphrase, or the bundle was altered'];
    }
  }
  const listed = new Map(m.members.map((x) => [x.path, x]));
  for (const s of seen) {
    const l = listed.get(s.path);
    if (!l) problems.push(`member "${s.path}" is not in the manifest`);
    else if (l.size !== s.size || l.sha256 !== s.sha256) {
      problems.push(`member "${s.path}" does not match its checksum: the bundle is damaged or altered`);
    }
  }
  const seenNames = new Set(seen.map((s) => s.path));
  for (const l of m.members) {
    if (!seenNames.has(l.path)) problems.push(`member "${l.path}" is missing: the bundle is incomplete`);
  }
  return problems;
}
