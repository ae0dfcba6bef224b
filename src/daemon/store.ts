import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseSpec, SpecError, type VmSpec } from '../spec/schema.js';
import { writeJsonAtomic } from './files.js';
import { vmDir, vmsDir, vmSpecFile, vmStatusFile, type Layout } from './paths.js';

/** What the daemon last knew of a VM's process; used after a daemon restart. */
export interface StoredStatus {
  state: 'running' | 'paused' | 'stopped';
  reason?: string;
  pid?: number;
  accel?: string;
  startedAt?: string;
}

/** VM state as files: `vms/<name>/vm.json` (the spec) and `status.json`. All writes are atomic. */
export class StateStore {
  constructor(readonly layout: Layout) {}

  /** Also removes what a crash left half-made: staging folders of creates and deletes. */
  async init(): Promise<string[]> {
    await mkdir(vmsDir(this.layout), { recursive: true, mode: 0o750 });
    const leftovers = (await readdir(vmsDir(this.layout))).filter((n) => /^\.(creating|deleting)-/.test(n));
    for (const n of leftovers) await rm(path.join(vmsDir(this.layout), n), { recursive: true, force: true });
    return leftovers;
  }

  async listNames(): Promise<string[]> {
    const entries = await readdir(vmsDir(this.layout), { withFileTypes: true });
    return entries
      .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
      .map((e) => e.name)
      .sort();
  }

  async readSpec(name: string): Promise<VmSpec> {
    const file = vmSpecFile(this.layout, name);
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(file, 'utf8'));
    } catch (e) {
      throw new SpecError([`${file}: cannot read (${(e as Error).message})`]);
    }
    try {
      return parseSpec(raw);
    } catch (e) {
      if (e instanceof SpecError) throw new SpecError(e.problems.map((p) => `${file}: ${p}`));
      throw e;
    }
  }

  async readStatus(name: string): Promise<StoredStatus | undefined> {
    try {
      return JSON.parse(await readFile(vmStatusFile(this.layout, name), 'utf8')) as StoredStatus;
    } catch {
      return undefined;
    }
  }

  writeStatus(name: string, status: StoredStatus): Promise<void> {
    return writeJsonAtomic(vmStatusFile(this.layout, name), status);
  }

  writeSpec(spec: VmSpec): Promise<void> {
    return writeJsonAtomic(vmSpecFile(this.layout, spec.name), spec);
  }

  /**
   * Creates the VM folder under a temporary name and renames it into place: all or nothing. `prepare`
   * makes the VM's own files (new disks, the UEFI variable store) inside the staging folder first.
   */
  async create(spec: VmSpec, prepare?: (staging: string) => Promise<void>): Promise<void> {
    const final = vmDir(this.layout, spec.name);
    const staging = path.join(vmsDir(this.layout), `.creating-${spec.name}-${process.pid}`);
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging, { mode: 0o750 });
    try {
      await prepare?.(staging);
      await writeJsonAtomic(path.join(staging, 'vm.json'), spec);
      await writeJsonAtomic(path.join(staging, 'status.json'), { state: 'stopped' } satisfies StoredStatus);
      await rename(staging, final);
    } catch (e) {
      await rm(staging, { recursive: true, force: true });
      throw e;
    }
  }

  /** Moves the folder aside first so a crash mid-delete never leaves a half VM under its name. */
  async delete(name: string): Promise<void> {
    const doomed = path.join(vmsDir(this.layout), `.deleting-${name}-${process.pid}`);
    await rename(vmDir(this.layout, name), doomed);
    await rm(doomed, { recursive: true, force: true });
  }
}
