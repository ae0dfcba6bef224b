import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { conflict, UserError } from './errors.js';
import { exists } from './files.js';

/** The content type an upload is sent with (the registered type of ISO 9660 images). */
export const ISO_TYPE = 'application/x-iso9660-image';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,195}\.iso$/;

/**
 * Pure: an uploaded ISO's name becomes a file name under PHYLLOME_HOME/isos and later part of a QEMU
 * drive path: refuse anything that could leave the folder, hide as a temp file or split an option.
 */
export function isoNameProblem(name: string): string | undefined {
  if (!NAME_RE.test(name) || name.includes('..')) {
    return `invalid ISO name "${name}": use letters, digits, ".", "_", "+" and "-" (no "/", "," or ".."), starting with a letter or digit and ending in .iso, like debian-12.iso`;
  }
  return undefined;
}

export interface IsoFile {
  name: string;
  path: string;
  size: number;
  /** The OS identified from the volume descriptor, as the planner would. */
  os?: { shortId: string; name: string };
  /** Why no OS was identified. */
  problem?: string;
}

/** Uploaded installer ISOs, one folder of plain files; the OS of each is identified when listed. */
export class IsoStore {
  constructor(
    readonly dir: string,
    private readonly identify: (file: string) => Promise<{ shortId: string; name: string }>,
    /** The VMs whose drives hold `file`. */
    private readonly usersOf: (file: string) => string[],
  ) {}

  private file(name: string): string {
    const problem = isoNameProblem(name);
    if (problem) throw new UserError(problem);
    return path.join(this.dir, name);
  }

  async list(): Promise<IsoFile[]> {
    const names = await readdir(this.dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return [];
      throw e;
    });
    // Temp files start with a dot, so they never pass the name check.
    return Promise.all(
      names
        .filter((n) => !isoNameProblem(n))
        .sort()
        .map((n) => this.info(n)),
    );
  }

  async info(name: string): Promise<IsoFile> {
    const file = this.file(name);
    const { size } = await stat(file).catch(() => {
      throw new UserError(`no ISO named "${name}": see GET /v1/isos for those uploaded`, 404, 'not-found');
    });
    const os = await this.identify(file).then(
      (os) => ({ os }),
      (e: Error) => ({ problem: e.message }),
    );
    return { name, path: file, size, ...os };
  }

  /**
   * Streams the body to a temp file and links it under its name only once complete: an interrupted
   * upload leaves nothing that looks like an ISO, and a name already taken is never overwritten.
   */
  async upload(name: string, body: Readable): Promise<IsoFile> {
    const file = this.file(name);
    const taken = () =>
      conflict(`an ISO named "${name}" is already uploaded: delete it first or pick another name`);
    // Checked first so a taken name is refused before the upload, and again (atomically) at the end.
    if (await exists(file)) throw taken();
    await mkdir(this.dir, { recursive: true });
    const tmp = path.join(this.dir, `.${name}.${randomBytes(6).toString('hex')}.part`);
    try {
      await pipeline(body, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }));
      await link(tmp, file).catch((e: NodeJS.ErrnoException) => {
        throw e.code === 'EEXIST' ? taken() : e;
      });
    } finally {
      await rm(tmp, { force: true });
    }
    return this.info(name);
  }

  async delete(name: string): Promise<void> {
    const file = this.file(name);
    const users = this.usersOf(file);
    // A VM would lose its medium at its next start, and QEMU would refuse to start.
    if (users.length) {
      throw conflict(
        `the ISO "${name}" is in a drive of ${users.map((u) => `"${u}"`).join(', ')}: eject it first (phyllome media eject ${users[0]})`,
      );
    }
    await rm(file).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') throw new UserError(`no ISO named "${name}"`, 404, 'not-found');
      throw e;
    });
  }
}
