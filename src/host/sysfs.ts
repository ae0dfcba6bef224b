import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import path from 'node:path';

/**
 * Reads a host's /proc, /sys and /dev under a root folder, so recorded hosts replay like live ones.
 * Missing files are normal (absent features); any other failure is remembered in `unreadable` so the
 * check can say what it could not read, and reading goes on.
 */
export class HostFs {
  readonly unreadable: string[] = [];

  constructor(readonly root: string) {}

  private abs(rel: string): string {
    return path.join(this.root, rel);
  }

  private note(rel: string, e: unknown): void {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR')
      this.unreadable.push(`${rel} (${code ?? (e as Error).message})`);
  }

  /** The file's text without its trailing newline, or undefined. */
  async read(rel: string): Promise<string | undefined> {
    try {
      return (await readFile(this.abs(rel), 'utf8')).replace(/\n$/, '');
    } catch (e) {
      this.note(rel, e);
      return undefined;
    }
  }

  async list(rel: string): Promise<string[]> {
    try {
      return (await readdir(this.abs(rel))).sort();
    } catch (e) {
      this.note(rel, e);
      return [];
    }
  }

  /** Last component of a symlink's target (a driver's or a group's name), or undefined. */
  async linkName(rel: string): Promise<string | undefined> {
    try {
      return path.basename(await readlink(this.abs(rel)));
    } catch (e) {
      this.note(rel, e);
      return undefined;
    }
  }

  async exists(rel: string): Promise<boolean> {
    try {
      await stat(this.abs(rel));
      return true;
    } catch {
      return false;
    }
  }
}
