import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { alive, waitFor } from './helpers.js';

/** Runs a program with a hard timeout; resolves with its exit code and output, never rejects. */
export function run(
  cmd: string,
  args: string[],
  timeoutMs = 60_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 124) : 0;
      resolve({ code, stdout, stderr: err && !stderr ? err.message : stderr });
    });
  });
}

const onPath = (tool: string) =>
  (process.env.PATH ?? '').split(':').some((dir) => existsSync(path.join(dir, tool)));

/** libvirtd's QEMU driver runs as root only (qemu:///system); virt-xml-validate needs xmllint. */
export const canRunLibvirt =
  process.getuid?.() === 0 && ['libvirtd', 'virtlogd', 'virsh', 'virt-xml-validate', 'xmllint'].every(onPath);

/**
 * A libvirtd of the test's own, on a socket in a temporary folder, and the virtlogd its QEMU driver logs
 * through. Both are children of the test, stopped by pid; both also exit by themselves after 5 idle
 * minutes, should the test die first.
 */
export class PrivateLibvirt {
  private readonly children: ChildProcess[] = [];
  private constructor(readonly dir: string) {}

  get uri(): string {
    return `qemu:///system?socket=${path.join(this.dir, 'libvirt-sock')}`;
  }

  static async start(): Promise<PrivateLibvirt> {
    const lv = new PrivateLibvirt(await mkdtemp('/tmp/lvd-'));
    const conf = path.join(lv.dir, 'libvirtd.conf');
    await writeFile(conf, `unix_sock_dir = "${lv.dir}"\nunix_sock_rw_perms = "0700"\n`);
    lv.spawn('virtlogd', ['-p', path.join(lv.dir, 'virtlogd.pid'), '-t', '300']);
    lv.spawn('libvirtd', ['-f', conf, '-p', path.join(lv.dir, 'libvirtd.pid'), '-t', '300']);
    try {
      await waitFor(
        () => `libvirtd to answer on ${lv.uri} (${lv.log()})`,
        async () => (await run('virsh', ['-c', lv.uri, 'version'], 10_000)).code === 0 || undefined,
        60_000,
      );
    } catch (e) {
      await lv.stop();
      throw e;
    }
    return lv;
  }

  private output = '';
  private spawn(cmd: string, args: string[]): void {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (d: Buffer) => (this.output = (this.output + d.toString()).slice(-2000));
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.children.push(child);
  }

  log(): string {
    return this.output.trim() || 'no output';
  }

  virsh(...args: string[]) {
    return run('virsh', ['-c', this.uri, ...args]);
  }

  /** Destroys and undefines a domain; its QEMU is killed by pid should libvirtd not answer. */
  async removeDomain(name: string): Promise<void> {
    const pidfile = `/run/libvirt/qemu/${name}.pid`;
    const pid = Number((await readFile(pidfile, 'utf8').catch(() => '')).trim());
    await this.virsh('destroy', name);
    await this.virsh('undefine', name, '--nvram');
    if (pid && alive(pid) && (await readFile(`/proc/${pid}/cmdline`, 'utf8')).includes(`guest=${name}`)) {
      process.kill(pid, 'SIGKILL');
    }
  }

  async stop(): Promise<void> {
    for (const child of this.children.reverse()) {
      if (child.pid && alive(child.pid)) {
        child.kill('SIGTERM');
        await waitFor('a libvirt daemon to exit', () => !alive(child.pid!) || undefined, 15_000).catch(() =>
          child.kill('SIGKILL'),
        );
      }
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}
