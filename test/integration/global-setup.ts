import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

const root = path.resolve(import.meta.dirname, '../..');

/** Builds the CLI bundle and the small test guest (cached); returns the guest's folder. */
export function buildForTests(): string {
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'inherit' });
  const cache =
    process.env.PHYLLOME_CACHE ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'phyllome');
  const guestDir = path.join(cache, 'test-guest');
  execFileSync('bash', ['scripts/build-test-guest.sh', guestDir], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return guestDir;
}

/** Once for all integration tests (and the browser tests' setup: test/e2e). */
export default function setup(project: TestProject): void {
  project.provide('guestDir', buildForTests());
}

declare module 'vitest' {
  export interface ProvidedContext {
    guestDir: string;
  }
}
