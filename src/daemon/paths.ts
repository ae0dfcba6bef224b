import { createHash } from 'node:crypto';
import path from 'node:path';
import type { RuntimeFiles, StateFiles } from '../qemu/cmdline.js';

export interface Layout {
  /** Persistent state: one folder per VM. */
  home: string;
  /** Runtime files: sockets, pidfiles; gone after a reboot. */
  run: string;
}

const isRoot = () => process.getuid?.() === 0;

/**
 * PHYLLOME_HOME defaults to /var/lib/phyllome for root and $XDG_DATA_HOME/phyllome otherwise. The runtime
 * folder is /run/phyllome (or $XDG_RUNTIME_DIR/phyllome); a non-default home gets its own subfolder there
 * so two homes never share sockets. PHYLLOME_RUNTIME_DIR overrides it.
 */
export function resolveLayout(env: NodeJS.ProcessEnv = process.env): Layout {
  const xdgData = env.XDG_DATA_HOME || path.join(env.HOME ?? '/root', '.local/share');
  const defaultHome = isRoot() ? '/var/lib/phyllome' : path.join(xdgData, 'phyllome');
  const home = path.resolve(env.PHYLLOME_HOME || defaultHome);
  if (env.PHYLLOME_RUNTIME_DIR) return { home, run: path.resolve(env.PHYLLOME_RUNTIME_DIR) };
  const runBase =
    isRoot() || !env.XDG_RUNTIME_DIR ? '/run/phyllome' : path.join(env.XDG_RUNTIME_DIR, 'phyllome');
  const run =
    home === defaultHome
      ? runBase
      : path.join(runBase, createHash('sha256').update(home).digest('hex').slice(0, 12));
  return { home, run };
}

export const vmDir = (layout: Layout, name: string): string => path.join(layout.home, 'vms', name);
export const vmSpecFile = (layout: Layout, name: string): string => path.join(vmDir(layout, name), 'vm.json');
export const vmStatusFile = (layout: Layout, name: string): string =>
  path.join(vmDir(layout, name), 'status.json');
export const vmsDir = (layout: Layout): string => path.join(layout.home, 'vms');
/** Installer ISOs uploaded through the API (the web UI's wizard). */
export const isosDir = (layout: Layout): string => path.join(layout.home, 'isos');
export const daemonSocket = (layout: Layout): string => path.join(layout.run, 'phyllomed.sock');
export const daemonPidfile = (layout: Layout): string => path.join(layout.run, 'phyllomed.pid');
export const daemonLog = (layout: Layout): string => path.join(layout.home, 'phyllomed.log');

export const networksDir = (layout: Layout): string => path.join(layout.home, 'networks');
/** A private network's dnsmasq files (leases, pidfile, log): runtime, rebuilt after a reboot. */
export const networkRunDir = (layout: Layout, name: string): string =>
  path.join(layout.run, 'networks', name);

export const runtimeDir = (layout: Layout, name: string): string => path.join(layout.run, 'vms', name);

export function runtimeFiles(
  layout: Layout,
  name: string,
): RuntimeFiles & {
  dir: string;
  qemuLog: string;
  serialLog: string;
  swtpmPidfile: string;
  swtpmKey: string;
  passtSocket: (nic: number) => string;
  passtPidfile: (nic: number) => string;
  passtLog: (nic: number) => string;
  /** Present while the daemon holds the guest paused for a moment (whilePaused). */
  held: string;
  /** A source's record of a migration out in progress (migrate.ts): a later daemon finishes or undoes it. */
  migrationOut: string;
} {
  const dir = runtimeDir(layout, name);
  return {
    dir,
    qmp: path.join(dir, 'qmp.sock'),
    serial: path.join(dir, 'serial.sock'),
    pidfile: path.join(dir, 'qemu.pid'),
    vnc: path.join(dir, 'vnc.sock'),
    tpm: path.join(dir, 'swtpm.sock'),
    key: path.join(dir, 'key'),
    qga: path.join(dir, 'qga.sock'),
    swtpmPidfile: path.join(dir, 'swtpm.pid'),
    swtpmKey: path.join(dir, 'swtpm.key'),
    held: path.join(dir, 'held'),
    migrationOut: path.join(dir, 'migration-out.json'),
    passtSocket: (nic) => path.join(dir, `passt-${nic}.sock`),
    passtPidfile: (nic) => path.join(dir, `passt-${nic}.pid`),
    passtLog: (nic) => path.join(vmDir(layout, name), `passt-${nic}.log`),
    // Logs outlive the runtime folder so a crash can be read after cleanup.
    serialLog: path.join(vmDir(layout, name), 'serial.log'),
    qemuLog: path.join(vmDir(layout, name), 'qemu.log'),
  };
}

/** Files that belong to the VM for its whole life (snapshots and exports include them). */
export function stateFiles(
  layout: Layout,
  name: string,
): StateFiles & { tpmState: string; swtpmLog: string } {
  const dir = vmDir(layout, name);
  return {
    nvram: path.join(dir, 'nvram.qcow2'),
    tpmState: path.join(dir, 'tpm'),
    swtpmLog: path.join(dir, 'swtpm.log'),
  };
}

/** Unix socket paths are limited to 107 bytes; say so plainly instead of failing inside QEMU. */
export const MAX_SOCKET_PATH = 107;
export function checkSocketPath(p: string): void {
  if (Buffer.byteLength(p) > MAX_SOCKET_PATH) {
    throw new Error(
      `socket path ${p} is longer than ${MAX_SOCKET_PATH} bytes: set PHYLLOME_RUNTIME_DIR to a shorter folder`,
    );
  }
}
