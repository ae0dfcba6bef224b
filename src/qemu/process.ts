import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { exists } from '../daemon/files.js';

/** Starts a VM process (QEMU, swtpm) in its own session (setsid) so it outlives the daemon; output goes to a log file. */
export function spawnDetached(
  binary: string,
  args: string[],
  logFile: string,
  /** Called if it exits while this daemon runs (its argv is no proof of life while it execs). */
  onExit?: () => void,
  /** Open files the process gets as fd 3, 4, … (macvtaps for QEMU). */
  fds: number[] = [],
  env: NodeJS.ProcessEnv = process.env,
): number {
  const log = openSync(logFile, 'a', 0o640);
  try {
    const child = spawn(binary, args, { detached: true, stdio: ['ignore', log, log, ...fds], env });
    if (child.pid === undefined) throw new Error(`cannot start ${binary}`);
    child.on('error', () => {
      /* reported by the caller through the missing QMP socket and the log */
    });
    if (onExit) child.once('exit', onExit);
    child.unref();
    return child.pid;
  } finally {
    closeSync(log);
  }
}

/**
 * True if `pid` is a live QEMU for the VM with this uuid. Checking the command line guards against pid
 * reuse; a zombie has an empty cmdline and so counts as gone.
 */
export async function isQemuFor(pid: number, uuid: string): Promise<boolean> {
  const argv = await argvOf(pid);
  const at = argv?.indexOf('-uuid') ?? -1;
  return at >= 0 && argv![at + 1] === uuid;
}

/** A live process's argv; undefined when it is gone or a zombie (empty cmdline). */
export async function argvOf(pid: number): Promise<string[] | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return text ? text.split('\0') : undefined;
  } catch {
    return undefined;
  }
}

export async function readPidfile(file: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt((await readFile(file, 'utf8')).trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (bounded) until the process is gone. QEMU has already closed QMP when this runs, so it is short. */
export async function waitGone(pid: number, uuid: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (await isQemuFor(pid, uuid)) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

/** SIGKILL by pid, only after checking the pid still is this VM's QEMU. */
export async function killQemu(pid: number, uuid: string): Promise<void> {
  if (!(await isQemuFor(pid, uuid))) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

/**
 * A helper program (swtpm, passt, dnsmasq): `override` when set (an env variable), else the first on
 * PATH or in the sbin folders, which a non-login PATH may lack.
 */
export async function findBinary(
  name: string,
  override?: string,
  envPath = process.env.PATH,
): Promise<string | undefined> {
  const dirs = [...(envPath ?? '/usr/bin:/bin').split(':'), '/usr/sbin', '/sbin'];
  for (const c of override ? [override] : dirs.map((d) => path.join(d, name))) {
    if (await exists(c)) return c;
  }
  return undefined;
}

/** SIGTERM by pid: only for a pid just checked to be ours, or one spawned moments ago. */
export function terminate(pid: number): void {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    /* gone */
  }
}

/**
 * Starts a helper that serves a Unix socket (swtpm, passt) detached, so it outlives a daemon restart
 * with its QEMU, and waits (bounded) for the socket. One that exits first fails with the words of its
 * log (`logTail`); its exit is watched, not its argv, which is briefly empty while it execs.
 */
export async function startSocketHelper(o: {
  name: string;
  binary: string;
  args: string[];
  log: string;
  socket: string;
  timeoutMs: number;
  logTail: () => Promise<string>;
}): Promise<number> {
  let exited = false;
  const pid = spawnDetached(o.binary, o.args, o.log, () => (exited = true));
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    if (await exists(o.socket)) return pid;
    if (exited)
      throw new Error(`${o.name} exited at start: ${(await o.logTail()) || 'no message'}; see ${o.log}`);
    if (Date.now() > deadline) {
      terminate(pid);
      throw new Error(`${o.name} did not open its socket within ${o.timeoutMs} ms; see ${o.log}`);
    }
    await sleep(20);
  }
}

/**
 * A helper (swtpm, passt) leaves by itself when its QEMU goes: wait for that (bounded), then stop one
 * that stayed. `isOurs` checks the pid still is that helper (pid reuse).
 */
export async function reapHelper(pid: number, isOurs: () => Promise<boolean>, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  while ((await isOurs()) && Date.now() < deadline) await sleep(20);
  if (await isOurs()) terminate(pid);
}
