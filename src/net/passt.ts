import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { argvOf, findBinary, startSocketHelper } from '../qemu/process.js';
import type { ForwardSpec } from '../spec/schema.js';
import { PASST_HINT } from './wiring.js';

export class PasstError extends Error {}

export interface PasstOptions {
  socket: string;
  log: string;
  forwards: ForwardSpec[];
  hostLoopback: boolean;
  /** passt drops root to this user; the daemon's own, so it can bind in the daemon's private folder. */
  uid: number;
  gid: number;
}

/**
 * Pure: passt's arguments. `--one-off` makes it exit when QEMU disconnects, so it lives exactly as long
 * as its VM. `--no-map-gw` stops it from turning the gateway address into the host's loopback: without
 * it, the guest could reach every service listening on 127.0.0.1 (the Phyllome API among them).
 */
export function passtArgs(o: PasstOptions): string[] {
  return [
    '--foreground',
    '--quiet',
    '--one-off',
    '--runas',
    `${o.uid}:${o.gid}`,
    '--socket',
    o.socket,
    '--log-file',
    o.log,
    ...(o.hostLoopback ? [] : ['--no-map-gw']),
    ...o.forwards.flatMap((f) => [
      f.proto === 'tcp' ? '--tcp-ports' : '--udp-ports',
      `${f.public ? '' : '127.0.0.1/'}${f.hostPort}:${f.guestPort}`,
    ]),
  ];
}

/** The passt binary: PHYLLOME_PASST (`none` hides it), else the first `passt` on PATH. */
export async function findPasst(env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  if (env.PHYLLOME_PASST === 'none') return undefined;
  return findBinary('passt', env.PHYLLOME_PASST, env.PATH);
}

export const isPasstFor = async (pid: number, socket: string): Promise<boolean> =>
  (await argvOf(pid))?.includes(socket) ?? false;

const logTail = async (file: string) =>
  (await readFile(file, 'utf8').catch(() => ''))
    .split('\n')
    .filter((l) => l.trim() && !l.includes('syslog'))
    .slice(-3)
    .join(' / ');

/** Starts passt detached and waits, bounded, for its socket. */
export async function startPasst(
  binary: string | undefined,
  o: PasstOptions,
  timeoutMs = 5000,
): Promise<number> {
  if (!binary) throw new PasstError(`this VM's NIC asks for passt, which is not installed: ${PASST_HINT}`);
  await mkdir(path.dirname(o.socket), { recursive: true, mode: 0o750 });
  const { socket, log } = o;
  return startSocketHelper({
    name: 'passt',
    binary,
    args: passtArgs(o),
    log,
    socket,
    timeoutMs,
    logTail: () => logTail(log),
  }).catch((e: Error) => {
    throw new PasstError(e.message);
  });
}
