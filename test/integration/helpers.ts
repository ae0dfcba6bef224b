import { execFile, spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, inject } from 'vitest';
import type { VmInfo } from '../../src/daemon/vms.js';
import { isQemuFor, readPidfile } from '../../src/qemu/process.js';
import { isSwtpmFor } from '../../src/qemu/swtpm.js';
import { isPasstFor } from '../../src/net/passt.js';

export const root = path.resolve(import.meta.dirname, '../..');
const bundle = path.join(root, 'dist/phyllome.mjs');

/** The test guest's files; the disk is copied per test so VMs never share a writable image. */
export function guest() {
  const dir = inject('guestDir');
  // The uncompressed kernel boots in half the time under TCG (no firmware unpacking it); the builder
  // makes it when it can.
  const vmlinux = path.join(dir, 'vmlinux');
  return {
    kernel: existsSync(vmlinux) ? vmlinux : path.join(dir, 'vmlinuz'),
    initrd: path.join(dir, 'initrd.img'),
    disk: path.join(dir, 'disk.ext4'),
    append: 'console=ttyS0 panic=-1 quiet cryptomgr.notests mitigations=off',
  };
}

export const READY = 'PHYLLOME-GUEST-READY';

export interface TestHome {
  dir: string;
  home: string;
  run: string;
  env: NodeJS.ProcessEnv;
}

/** A private PHYLLOME_HOME and runtime folder (short, for socket paths). */
export async function makeHome(): Promise<TestHome> {
  const dir = await mkdtemp('/tmp/pht-');
  const home = path.join(dir, 'home');
  const run = path.join(dir, 'run');
  // The daemon unlocks (on first use: creates) the disk keystore from this file, as a service would.
  const passphraseFile = path.join(dir, 'passphrase');
  await writeFile(passphraseFile, 'correct horse battery staple\n', { mode: 0o600 });
  return {
    dir,
    home,
    run,
    env: {
      ...process.env,
      PHYLLOME_HOME: home,
      PHYLLOME_RUNTIME_DIR: run,
      PHYLLOME_PASSPHRASE_FILE: passphraseFile,
    },
  };
}

export async function copyDisk(h: TestHome, name = 'disk.ext4'): Promise<string> {
  const target = path.join(h.dir, name);
  await copyFile(guest().disk, target);
  return target;
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI as a user would, with a hard timeout. */
export function cli(h: TestHome, args: string[], timeoutMs = 90_000): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bundle, ...args],
      { env: h.env, timeout: timeoutMs, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 124) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Like cli(), but fails the test unless the command succeeds; returns parsed JSON when asked for. */
export async function ok(h: TestHome, args: string[]): Promise<string> {
  const r = await cli(h, args);
  if (r.code !== 0) throw new Error(`phyllome ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

export async function json<T = Record<string, unknown>>(h: TestHome, args: string[]): Promise<T> {
  return JSON.parse(await ok(h, [...args, '--json'])) as T;
}

export async function daemonPid(h: TestHome): Promise<number | undefined> {
  return readPidfile(path.join(h.run, 'phyllomed.pid'));
}

/** A process counts as alive unless it is gone or a zombie (PID 1 here may not reap orphans promptly). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export async function waitFor<T>(
  /** A function when the description must show the state at the time of failure. */
  what: string | (() => string),
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Stops the test home's daemon (SIGTERM: VMs keep running); the next CLI call starts a new one with h.env. */
export async function stopDaemon(h: TestHome): Promise<void> {
  const pid = await daemonPid(h);
  if (!pid || !alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  await waitFor('the daemon to exit', () => !alive(pid) || undefined, 15_000);
}

/** A `phyllome console` session whose output is collected. */
export class ConsoleSession {
  output = '';
  readonly exited: Promise<number | null>;
  errors = '';
  constructor(readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.setEncoding('utf8').on('data', (d: string) => (this.output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (this.errors += d));
    this.exited = new Promise((r) => child.on('exit', (code) => r(code)));
  }
  waitFor(text: string, timeoutMs = 60_000): Promise<true> {
    return waitFor(
      () =>
        `"${text}" on the console (got ${JSON.stringify(this.output.slice(-300))}${this.errors ? `, stderr ${JSON.stringify(this.errors)}` : ''})`,
      () => this.output.includes(text) || undefined,
      timeoutMs,
    );
  }
  type(text: string): void {
    this.child.stdin.write(text);
  }
}

export function openConsole(h: TestHome, name: string): ConsoleSession {
  const child = spawn(process.execPath, [bundle, 'console', name], { env: h.env, stdio: 'pipe' });
  return new ConsoleSession(child);
}

/** Kills (by pid, after checking it is ours) every QEMU and the daemon of a test home, then removes it. */
export async function destroyHome(h: TestHome): Promise<void> {
  const pid = await daemonPid(h);
  if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
  const vmsRun = path.join(h.run, 'vms');
  const names = await readdir(vmsRun).catch(() => [] as string[]);
  for (const name of names) {
    const qemuPid = await readPidfile(path.join(vmsRun, name, 'qemu.pid'));
    const spec = JSON.parse(
      await readFile(path.join(h.home, 'vms', name, 'vm.json'), 'utf8').catch(() => '{}'),
    ) as { uuid?: string };
    if (qemuPid && spec.uuid && (await isQemuFor(qemuPid, spec.uuid))) process.kill(qemuPid, 'SIGKILL');
    const swtpmPid = await readPidfile(path.join(vmsRun, name, 'swtpm.pid'));
    if (swtpmPid && (await isSwtpmFor(swtpmPid, path.join(h.home, 'vms', name, 'tpm')))) {
      process.kill(swtpmPid, 'SIGKILL');
    }
    for (const file of (await readdir(path.join(vmsRun, name)).catch(() => [])).filter((f) =>
      /^passt-\d+\.pid$/.test(f),
    )) {
      const passtPid = await readPidfile(path.join(vmsRun, name, file));
      const socket = path.join(vmsRun, name, file.replace(/\.pid$/, '.sock'));
      if (passtPid && (await isPasstFor(passtPid, socket))) process.kill(passtPid, 'SIGKILL');
    }
  }
  await rm(h.dir, { recursive: true, force: true });
}

/**
 * The create flags that boot the test guest. `efi`: its compressed kernel, which UEFI starts through
 * the EFI stub (the faster PVH vmlinux boots under BIOS only).
 */
export function bootArgs(kind: 'pvh' | 'efi' = 'pvh'): string[] {
  const g = guest();
  const kernel = kind === 'efi' ? path.join(path.dirname(g.kernel), 'vmlinuz') : g.kernel;
  return ['--kernel', kernel, '--initrd', g.initrd, '--append', g.append];
}

/** Creates a VM booting the test guest; extra CLI flags may follow. */
export async function createGuest(h: TestHome, name: string, extra: string[] = []): Promise<void> {
  await ok(h, ['create', name, ...bootArgs(), '-m', '256M', ...extra]);
}

/** What `phyllome status/stop --json` prints. */
export type Vm = VmInfo & { forced?: boolean };

/** A fresh test home for each test of the file, destroyed (processes killed) after it. */
export function useHome(): () => TestHome {
  let h: TestHome | undefined;
  beforeEach(async () => {
    h = await makeHome();
  });
  afterEach(() => destroyHome(h!));
  return () => h!;
}

/** Waits (bounded) until the guest has printed its ready line into its serial log. */
export function waitForReady(h: TestHome, name: string, timeoutMs = 90_000): Promise<true> {
  const log = path.join(h.home, 'vms', name, 'serial.log');
  return waitFor(
    `${name} to boot`,
    async () => (await readFile(log, 'utf8').catch(() => '')).includes(READY) || undefined,
    timeoutMs,
  );
}

/** Live processes whose command line (NUL-separated argv) and environment match. */
export async function findProcesses(match: (argv: string[], environ: string) => boolean): Promise<number[]> {
  const found: number[] = [];
  for (const entry of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const environ = await readFile(`/proc/${entry}/environ`, 'utf8').catch(() => '');
    if (match(argv, environ) && alive(Number(entry))) found.push(Number(entry));
  }
  return found;
}

/** Writes a marker at the start of the guest's first disk through its shell, and syncs. */
export async function writeMarker(h: TestHome, name: string, marker: string): Promise<void> {
  const c = openConsole(h, name);
  // `sync /dev/vda` is an fsync of the device: a cache flush, so QEMU writes the qcow2 metadata too.
  c.type(`echo ${marker} > /dev/vda; sync /dev/vda; echo done-${marker}\n`);
  // At a line start: the echoed command line has it after "echo ".
  await c.waitFor(`\ndone-${marker}`, 30_000);
  c.child.kill();
}

/** Runs a shell command in the guest and returns what it printed between two markers. */
export async function inGuest(
  h: TestHome,
  name: string,
  command: string,
  timeoutMs = 30_000,
): Promise<string> {
  const c = openConsole(h, name);
  const tag = Math.random().toString(36).slice(2, 8);
  c.type(`echo B-${tag}; ${command}; echo E-${tag}\n`);
  // At a line start only in the output: the echoed command line has them after "echo ".
  await c.waitFor(`\nE-${tag}`, timeoutMs);
  c.child.kill();
  const out = c.output.replaceAll('\r', '');
  return out.slice(out.lastIndexOf(`\nB-${tag}\n`) + tag.length + 4, out.lastIndexOf(`\nE-${tag}`)).trim();
}

/** The first bytes of the guest's first disk, where writeMarker puts its markers. */
export const markerOnDisk = (h: TestHome, name: string) =>
  inGuest(h, name, 'head -c 32 /dev/vda | tr -dc A-Z0-9-; echo');

/** A loopback port nothing listens on now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** A daemon in the foreground that also listens on loopback TCP (the web UI's listener), once it answers. */
export async function tcpDaemon(h: TestHome): Promise<{ daemon: ChildProcess; port: number }> {
  const port = await freePort();
  const daemon = spawn(process.execPath, [bundle, 'daemon', '--listen', `127.0.0.1:${port}`], {
    env: h.env,
    stdio: 'ignore',
  });
  await waitFor(
    'the TCP listener',
    () =>
      new Promise<true | undefined>((resolve) => {
        http
          .get({ host: '127.0.0.1', port, path: '/v1/vms' }, (res) => resolve(res.resume() && true))
          .on('error', () => resolve(undefined));
      }),
    20_000,
  );
  return { daemon, port };
}

export interface TcpAnswer {
  status: number;
  body: { error?: { message: string; code: string }; [k: string]: unknown };
}

/** One request to a daemon's loopback TCP listener, its JSON answer read back. */
export function tcpCall(
  port: number,
  method: string,
  url: string,
  headers: Record<string, string | number>,
  body?: Buffer | string,
): Promise<TcpAnswer> {
  return call({ host: '127.0.0.1', port, method, path: url, headers }, body);
}

/** One request to the daemon on its Unix socket (as the CLI), a JSON body sent, its answer read back. */
export function socketCall(h: TestHome, method: string, url: string, body?: unknown): Promise<TcpAnswer> {
  const json = body === undefined ? undefined : JSON.stringify(body);
  const headers = json === undefined ? {} : { 'content-type': 'application/json' };
  return call({ socketPath: path.join(h.run, 'phyllomed.sock'), method, path: url, headers }, json);
}

function call(options: http.RequestOptions, body?: Buffer | string): Promise<TcpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(options, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : {} }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The bearer token header a TCP client needs (the daemon writes the token at its start). */
export async function tokenHeader(h: TestHome): Promise<{ authorization: string }> {
  return { authorization: `Bearer ${(await readFile(path.join(h.home, 'api-token'), 'utf8')).trim()}` };
}
