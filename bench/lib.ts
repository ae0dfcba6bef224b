// Shared bench helpers: run the built CLI against a private PHYLLOME_HOME, and small statistics.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const root = path.resolve(import.meta.dirname, '..');
const bundle = path.join(root, 'dist/phyllome.mjs');

export function prepare(): { guest: string; env: NodeJS.ProcessEnv; dir: string; cleanup: () => void } {
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'inherit' });
  const guest = execFileSync('bash', ['scripts/build-test-guest.sh'], { cwd: root, encoding: 'utf8' })
    .split('\n')[0]!
    .replace(/ \(cached\)$/, '');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'phb-'));
  const env = {
    ...process.env,
    PHYLLOME_HOME: path.join(dir, 'home'),
    PHYLLOME_RUNTIME_DIR: path.join(dir, 'run'),
  };
  const cleanup = () => {
    try {
      const pid = Number(readFileSync(path.join(dir, 'run/phyllomed.pid'), 'utf8'));
      process.kill(pid, 'SIGTERM');
    } catch {
      /* not running */
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { guest, env, dir, cleanup };
}

export function cli(env: NodeJS.ProcessEnv, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [bundle, ...args], { env, timeout: 120_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`phyllome ${args.join(' ')}: ${stderr}`)) : resolve(stdout),
    ),
  );
}

/** Defines a VM booting the test guest (256M, serial console); extra CLI flags may follow. */
export const createGuest = (env: NodeJS.ProcessEnv, guest: string, name: string, extra: string[] = []) =>
  cli(env, [
    'create',
    name,
    '--memory',
    '256M',
    '--kernel',
    `${guest}/vmlinuz`,
    '--initrd',
    `${guest}/initrd.img`,
    '--append',
    'console=ttyS0 panic=-1 quiet',
    ...extra,
  ]);

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export const ms = (x: number): string => `${x.toFixed(0)} ms`;

/** The value below which a fraction q of xs lie (nearest rank). */
export const percentile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
};
