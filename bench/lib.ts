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

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export const ms = (x: number): string => `${x.toFixed(0)} ms`;
