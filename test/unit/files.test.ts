import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomic, writeJsonAtomic } from '../../src/daemon/files.js';
import { resolveLayout, runtimeFiles, checkSocketPath } from '../../src/daemon/paths.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'phyllome-files-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('atomic writes', () => {
  it('replaces the file whole and leaves no temp file', async () => {
    const file = path.join(dir, 'vm.json');
    await writeFile(file, 'old');
    await writeJsonAtomic(file, { a: 1 });
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ a: 1 });
    expect(await readdir(dir)).toEqual(['vm.json']);
  });

  it('keeps the old file when the write fails', async () => {
    const file = path.join(dir, 'vm.json');
    await writeFile(file, 'old');
    await expect(writeFileAtomic(path.join(dir, 'missing', 'vm.json'), 'x')).rejects.toThrow();
    expect(await readFile(file, 'utf8')).toBe('old');
    expect(await readdir(dir)).toEqual(['vm.json']);
  });

  it('sets the mode asked for', async () => {
    const file = path.join(dir, 'secret');
    await writeFileAtomic(file, 'k', 0o600);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });
});

describe('layout', () => {
  it('uses PHYLLOME_HOME and a per-home runtime folder', () => {
    const a = resolveLayout({ PHYLLOME_HOME: '/srv/a', HOME: '/root' });
    const b = resolveLayout({ PHYLLOME_HOME: '/srv/b', HOME: '/root' });
    expect(a.home).toBe('/srv/a');
    expect(a.run).not.toBe(b.run);
    expect(resolveLayout({ PHYLLOME_HOME: '/srv/a', PHYLLOME_RUNTIME_DIR: '/tmp/r' }).run).toBe('/tmp/r');
  });

  it('defaults to /var/lib/phyllome and /run/phyllome as root', () => {
    if (process.getuid?.() !== 0) return;
    expect(resolveLayout({ HOME: '/root' })).toEqual({ home: '/var/lib/phyllome', run: '/run/phyllome' });
  });

  it('keeps runtime files apart from the state and refuses over-long socket paths', () => {
    const files = runtimeFiles({ home: '/var/lib/phyllome', run: '/run/phyllome' }, 'web');
    expect(files.qmp).toBe('/run/phyllome/vms/web/qmp.sock');
    expect(files.serialLog).toBe('/var/lib/phyllome/vms/web/serial.log');
    expect(() => checkSocketPath('/run/' + 'x'.repeat(110))).toThrow(/PHYLLOME_RUNTIME_DIR/);
    checkSocketPath(files.qmp);
  });
});
