import net from 'node:net';
import path from 'node:path';
import { NVRAM_NODE } from '../qemu/cmdline.js';
import { diskId, type VmSpec } from '../spec/schema.js';
import { parseFingerprint } from './tls.js';

/** A daemon's TCP API address. */
export interface Peer {
  host: string;
  port: number;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1)$/;

/** Loopback listeners serve plain HTTP; any other address is on a network, and serves HTTPS only. */
export const isLoopback = (host: string): boolean => LOOPBACK.test(host);

/**
 * `127.0.0.1:8470` or `[fd00::5]:8470` → host and port. Other hosts are IP addresses, not names: the
 * daemon checks Host against its own address, and "any address" (0.0.0.0, ::) names none.
 */
export function parseApiAddress(text: string, what: string): Peer {
  const at = text.lastIndexOf(':');
  const bracketed = /^\[(.*)\]$/.exec(text.slice(0, at));
  const host = bracketed ? bracketed[1]! : text.slice(0, at);
  const port = Number(text.slice(at + 1));
  const ip = net.isIP(host);
  const fits =
    (host === 'localhost' || (ip === 4 && !bracketed) || (ip === 6 && bracketed)) &&
    !/^(0\.0\.0\.0|::)$/.test(host);
  if (at < 0 || !fits || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(
      `${what} takes an IP address and port, like 127.0.0.1:8470, 192.168.1.20:8470 or [fd00::5]:8470 (got ${text})`,
    );
  }
  return { host, port };
}

/**
 * Where a migration goes, from the API call's `to` and `fingerprint`: a destination beyond loopback
 * is reached over HTTPS, and only with its certificate's fingerprint to pin (there is no CA to trust).
 */
export function migrationPeer(to: string, fingerprint: string | undefined): Peer & { fingerprint?: string } {
  const peer = parseApiAddress(to, 'to');
  if (isLoopback(peer.host)) {
    if (fingerprint) {
      throw new Error(
        `${to} is loopback, served over plain HTTP with no certificate: leave out the fingerprint`,
      );
    }
    return peer;
  }
  if (!fingerprint) {
    throw new Error(
      `a destination on another host (${to}) needs its certificate's fingerprint: run "phyllome host tls-fingerprint" there and pass it with --fingerprint`,
    );
  }
  return { ...peer, fingerprint: parseFingerprint(fingerprint) };
}

/**
 * What live migration cannot carry, each with what to do; empty when the VM can move. Writable
 * disks are mirrored; read-only media (CD-ROMs, read-only disks, the kernel) must be at the same
 * path on the destination, so none may live in the VM's own folder, which the source deletes.
 */
export function migrationProblems(spec: VmSpec, dir: string, snapshots: number): string[] {
  const problems: string[] = [];
  if (spec.graphics.device.endsWith('-gl')) {
    problems.push(
      `QEMU cannot migrate 3D (virgl) graphics: stop "${spec.name}" and move it with export and import instead`,
    );
  }
  if (spec.graphics.hostDevices) {
    // QEMU 7.2 blocks migrating VFIO devices (its VFIO migration is experimental and off by default).
    problems.push(
      `QEMU cannot migrate a VM holding host GPU hardware (${spec.graphics.hostDevices.map((d) => d.address).join(', ')}): stop "${spec.name}" and move it with export and import instead`,
    );
  }
  if (snapshots) {
    problems.push(
      `"${spec.name}" has ${snapshots} snapshot(s), which a migration would lose: delete them first (phyllome snapshot delete)`,
    );
  }
  const inside = (p: string) => !path.relative(dir, p).startsWith('..');
  spec.cdroms.forEach((c, i) => {
    if (c.path && inside(c.path)) {
      problems.push(
        `CD-ROM ${i} holds ${c.path}, which stays behind: eject it first (phyllome media eject ${spec.name} --drive ${i})`,
      );
    }
  });
  spec.disks.forEach((d, i) => {
    if (d.readOnly && inside(d.path)) {
      problems.push(`read-only disk ${diskId(d, i)} (${d.path}) stays behind: remove it first`);
    }
  });
  return problems;
}

export interface MirroredImage {
  /** QEMU's node name, also the NBD export's name. */
  node: string;
  path: string;
  format: 'raw' | 'qcow2';
  encrypted: boolean;
}

/**
 * The images a migration mirrors: the writable disks and the UEFI variable store (`nvram`: its path).
 * The TPM's state needs no mirror: QEMU carries it in the migration stream, from swtpm to swtpm.
 */
export const mirroredImages = (spec: VmSpec, nvram: string): MirroredImage[] => [
  ...spec.disks.flatMap((d, i) =>
    d.readOnly ? [] : [{ node: diskId(d, i), path: d.path, format: d.format, encrypted: d.encrypted }],
  ),
  ...(spec.firmware.type === 'uefi'
    ? [{ node: NVRAM_NODE, path: nvram, format: 'qcow2' as const, encrypted: spec.firmware.nvramEncrypted }]
    : []),
];

/**
 * The spec as the destination keeps it: each writable disk a new qcow2 in its own VM folder (its data
 * arrives by the mirror, encrypted there with the destination's key); all else unchanged, identity
 * included, since the guest sees its uuid and MACs.
 */
export function incomingSpec(spec: VmSpec, dir: string): VmSpec {
  return {
    ...spec,
    disks: spec.disks.map((d, i) =>
      d.readOnly ? d : { ...d, path: path.join(dir, `${diskId(d, i)}.qcow2`), format: 'qcow2' as const },
    ),
  };
}

/** In a VM's folder while its migration in is unfinished: a daemon that finds it at start removes the VM. */
export const INCOMING_MARKER = 'incoming-migration';

/** The user name both sides of a migration's TLS (PSK) name. */
export const PSK_USER = 'phyllome-migration';

/** GnuTLS's PSK file: `user:hexkey` per line. */
export const pskFile = (hexKey: string): string => `${PSK_USER}:${hexKey}\n`;

/** How far a migration is, 0–100: the disk mirrors are the first half, the RAM pass the second. */
export function migrationPercent(phase: 'disks' | 'ram', done: number, total: number): number {
  const part = total > 0 ? Math.min(done / total, 1) : 1;
  return Math.floor((phase === 'disks' ? 0 : 50) + part * 50);
}

/** A VM as the destination daemon reports it, or why it could not be asked. */
export type DestinationAnswer = { uuid: string; state: string } | 'absent' | 'unreachable';

/**
 * What a source daemon that outlived a crash mid-migration does with the VM left behind: `resume`
 * it here (the destination was never told to run it), treat it as `gone` (it runs there now), or
 * `hold` it paused because only the user can tell (the destination cannot be asked, or is starting it).
 */
export function outgoingRecovery(
  handingOver: boolean,
  uuid: string,
  there: DestinationAnswer,
): 'resume' | 'gone' | 'hold' {
  // Until the source asks, the destination keeps the VM paused, and drops it on its own after a while.
  if (!handingOver) return 'resume';
  if (there === 'unreachable') return 'hold';
  if (there === 'absent' || there.uuid !== uuid) return 'resume';
  // Still arriving there: it may yet run. Any other state: the VM lives there now.
  return there.state === 'starting' ? 'hold' : 'gone';
}
