import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { openSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach } from 'vitest';
import { alive, root, waitFor, type TestHome } from './helpers.js';

const run = promisify(execFile);
const bundle = path.join(root, 'dist/phyllome.mjs');

export const isRoot = process.getuid?.() === 0;

/** Where the daemon's API listens inside the namespace: a guest must not reach it. */
export const API_PORT = 8470;

/**
 * A network namespace of the test's own, so that nothing a test does (bridges, NAT, passt) touches the
 * machine's network. It has loopback and a veth pair holding 10.99.0.2/24 with a default route via
 * 10.99.0.1 (nobody): passt copies its address and routes from there, and nothing leaves the namespace.
 */
export class Netns {
  constructor(readonly name: string) {}

  static async make(): Promise<Netns> {
    const ns = new Netns(`pht-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
    await run('ip', ['netns', 'add', ns.name]);
    for (const args of [
      ['link', 'set', 'lo', 'up'],
      ['link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1'],
      ['addr', 'add', '10.99.0.2/24', 'dev', 'v0'],
      ['link', 'set', 'v0', 'up'],
      ['link', 'set', 'v1', 'up'],
      ['route', 'add', 'default', 'via', '10.99.0.1'],
    ]) {
      await run('ip', ['-n', ns.name, ...args]);
    }
    return ns;
  }

  /**
   * A namespace joined to this machine by a veth pair: `hostSide` (10.231.N.1/30) here, `address`
   * (10.231.N.2/30) in there, and no route beyond that link: "another host" on a LAN of the test's own.
   */
  static async linked(): Promise<Netns & { address: string; hostSide: string }> {
    const n = 1 + Math.floor(Math.random() * 250);
    const ns = Object.assign(await Netns.make(), { address: `10.231.${n}.2`, hostSide: `10.231.${n}.1` });
    const link = `phv${process.pid % 100_000}${n}`;
    try {
      await run('ip', ['link', 'add', link, 'type', 'veth', 'peer', 'name', 'lan0', 'netns', ns.name]);
      await run('ip', ['addr', 'add', `${ns.hostSide}/30`, 'dev', link]);
      await run('ip', ['link', 'set', link, 'up']);
      await run('ip', ['-n', ns.name, 'addr', 'add', `${ns.address}/30`, 'dev', 'lan0']);
      await run('ip', ['-n', ns.name, 'link', 'set', 'lan0', 'up']);
    } catch (e) {
      // Removing the namespace removes the pair's other end, and with it this one.
      await ns.destroy();
      await run('ip', ['link', 'del', link]).catch(() => undefined);
      throw e;
    }
    return ns;
  }

  /** Runs a command inside the namespace (bounded); stdout, or the error with stderr. */
  async exec(args: string[], timeoutMs = 15_000): Promise<string> {
    return (await run('ip', ['netns', 'exec', this.name, ...args], { timeout: timeoutMs })).stdout;
  }

  /** An HTTP GET from inside the namespace (its loopback is not the machine's): the body, or undefined. */
  async fetch(url: string): Promise<string | undefined> {
    const script = `fetch(${JSON.stringify(url)},{signal:AbortSignal.timeout(4000)}).then(r=>r.text()).then(t=>process.stdout.write(t),()=>process.exit(3))`;
    return this.exec([process.execPath, '-e', script]).catch(() => undefined);
  }

  /** `ip -j link` names inside the namespace. */
  async links(): Promise<string[]> {
    const list = JSON.parse(await this.exec(['ip', '-j', 'link'])) as { ifname: string }[];
    return list.map((l) => l.ifname);
  }

  async pids(): Promise<number[]> {
    const out = await run('ip', ['netns', 'pids', this.name]).catch(() => ({ stdout: '' }));
    return out.stdout
      .split('\n')
      .filter(Boolean)
      .map(Number)
      .filter((p) => alive(p));
  }

  /** The processes in the namespace, by command name (comm). */
  async commands(): Promise<string[]> {
    const { readFile } = await import('node:fs/promises');
    return Promise.all(
      (await this.pids()).map(async (p) =>
        (await readFile(`/proc/${p}/comm`, 'utf8').catch(() => '?')).trim(),
      ),
    );
  }

  /**
   * Starts phyllomed inside the namespace, listening on TCP there (its loopback unless `host` says
   * otherwise) too; the CLI reaches it by its socket. Its log is h.dir/daemon.log.
   */
  async startDaemon(h: TestHome, env: NodeJS.ProcessEnv = {}, host = '127.0.0.1'): Promise<void> {
    const log = openSync(path.join(h.dir, 'daemon.log'), 'a');
    const child = spawn(
      'ip',
      ['netns', 'exec', this.name, process.execPath, bundle, 'daemon', '--listen', `${host}:${API_PORT}`],
      { env: { ...h.env, ...env }, detached: true, stdio: ['ignore', log, log] },
    );
    child.unref();
    await this.waitListening(API_PORT, 'phyllomed to listen in the namespace');
  }

  /** A second namespace of the test's: "the outside", the far end of the veth pair (10.99.0.1). */
  outside?: Netns;

  async makeOutside(): Promise<Netns> {
    const out = new Netns(`${this.name}-o`);
    await run('ip', ['netns', 'add', out.name]);
    this.outside = out;
    await run('ip', ['-n', this.name, 'link', 'set', 'v1', 'netns', out.name]);
    for (const args of [
      ['link', 'set', 'lo', 'up'],
      ['addr', 'add', '10.99.0.1/24', 'dev', 'v1'],
      ['link', 'set', 'v1', 'up'],
    ]) {
      await run('ip', ['-n', out.name, ...args]);
    }
    return out;
  }

  /** Waits (bounded) until something listens on TCP `port` in the namespace. */
  async waitListening(port: number, what: string): Promise<void> {
    await waitFor(
      what,
      async () => (await this.exec(['ss', '-Hltn', `sport = :${port}`])).includes(`:${port}`) || undefined,
      30_000,
    );
  }

  /** A Node script that listens on TCP `port` in the namespace, once it listens; the caller kills it. */
  async serve(script: string, port: number, what: string): Promise<ChildProcess> {
    const child = spawn('ip', ['netns', 'exec', this.name, process.execPath, '-e', script]);
    await this.waitListening(port, what).catch((e: unknown) => {
      child.kill('SIGKILL');
      throw e;
    });
    return child;
  }

  /** Every process in the namespace was started by this test (daemon, QEMU, passt, dnsmasq): kill them, then it. */
  async destroy(): Promise<void> {
    await this.outside?.destroy();
    for (let i = 0; i < 3; i++) {
      const pids = await this.pids();
      if (!pids.length) break;
      for (const p of pids) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    await run('ip', ['netns', 'del', this.name]).catch(() => undefined);
  }
}

/** A fresh namespace for each test of the file, removed (with everything in it) after it. */
export function useNetns(): () => Netns {
  let ns: Netns | undefined;
  beforeEach(async () => {
    ns = await Netns.make();
  });
  afterEach(async () => {
    await ns?.destroy();
    ns = undefined;
  });
  return () => ns!;
}
