import type { ChildProcess } from 'node:child_process';
import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import WebSocket from 'ws';
import type { StatsSample } from '../../src/daemon/stats.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cli,
  copyDisk,
  createGuest,
  destroyHome,
  json,
  makeHome,
  ok,
  tcpDaemon,
  waitFor,
  waitForReady,
  type TestHome,
} from './helpers.js';

let h: TestHome;
let daemon: ChildProcess;
let port: number;
let own: string;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Plain node:http, so Host and Origin are exactly what the test says (fetch would set its own). */
function send(
  method: string,
  url: string,
  headers: Record<string, string> = {},
  body?: unknown,
): Promise<Answer> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: url,
        timeout: 10_000,
        headers: {
          host: `127.0.0.1:${port}`,
          ...(payload ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
      },
      (res) => {
        let data = '';
        res.setEncoding('utf8').on('data', (d: string) => (data += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data }));
      },
    );
    req.on('error', reject).on('timeout', () => req.destroy(new Error('no answer')));
    req.end(payload);
  });
}

/** What `phyllome ui` prints, and the code in its URL's fragment. */
async function loginCode(): Promise<{ url: string; code: string }> {
  const { url } = await json<{ url: string }>(h, ['ui']);
  return { url, code: new URL(url).hash.slice(1) };
}

/** Logs in as a browser would; the session cookie ("name=value"). */
async function login(): Promise<string> {
  const res = await send('POST', '/v1/ui/login', { origin: own }, { code: (await loginCode()).code });
  expect(res.status).toBe(200);
  return String(res.headers['set-cookie']).split(';')[0]!;
}

/** The TCP ports (IPv4 and IPv6) a process listens on, from its socket inodes and /proc/net. */
async function tcpListeners(pid: number): Promise<number[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode) inodes.add(inode);
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of (await readFile(table, 'utf8')).split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A' && inodes.has(cols[9]!)) ports.push(parseInt(cols[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

/** How a WebSocket handshake ends: 'open', or the HTTP status it was refused with. */
function handshake(url: string, headers: Record<string, string>): Promise<'open' | number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${url}`, { headers });
    ws.once('open', () => {
      ws.close();
      resolve('open');
    });
    ws.once('unexpected-response', (_req, res) => {
      ws.terminate();
      resolve(res.statusCode ?? 0);
    });
    ws.once('error', reject);
  });
}

beforeAll(async () => {
  h = await makeHome();
  ({ daemon, port } = await tcpDaemon(h));
  own = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  daemon.kill('SIGKILL');
  await destroyHome(h);
});

describe('the web UI login and the API over loopback TCP', () => {
  it('answers 401 without the token or a login', async () => {
    const res = await send('GET', '/v1/vms');
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).error.message).toMatch(/phyllome ui/);
    expect((await send('GET', '/v1/vms', { cookie: `phyllome-session-${port}=forged` })).status).toBe(401);
    expect((await send('POST', '/v1/ui/login-code')).status).toBe(401);
  });

  it('prints a one-time login URL on this listener, and trades its code for a session cookie once', async () => {
    const { url, code } = await loginCode();
    expect(url).toBe(`http://127.0.0.1:${port}/login#${code}`);
    const first = await send('POST', '/v1/ui/login', { origin: own }, { code });
    expect(first.status).toBe(200);
    const cookie = String(first.headers['set-cookie']);
    expect(cookie).toMatch(new RegExp(`^phyllome-session-${port}=[\\w-]{40,};`));
    expect(cookie).toMatch(/; HttpOnly/);
    expect(cookie).toMatch(/; SameSite=Strict/);
    const again = await send('POST', '/v1/ui/login', { origin: own }, { code });
    expect(again.status).toBe(401);
    expect(JSON.parse(again.body).error.code).toBe('bad-login-code');
    expect((await send('POST', '/v1/ui/login', { origin: own }, { code: 'made-up' })).status).toBe(401);
  });

  it('lets the session cookie read, and change things only with its own Origin', async () => {
    const cookie = await login();
    expect((await send('GET', '/v1/vms', { cookie })).status).toBe(200);
    // Past the checks, the API answers for itself: there is no such VM.
    expect((await send('POST', '/v1/vms/nope/start', { cookie, origin: own }, {})).status).toBe(404);
    // A bundle written into a file on the daemon's host is for local (Unix socket) clients only.
    const toFile = await send(
      'POST',
      '/v1/vms/nope/export',
      { cookie, origin: own },
      { file: '/tmp/x.phyllome' },
    );
    expect(toFile.status).toBe(400);
    expect(JSON.parse(toFile.body).error.message).toMatch(/only accepted over the Unix socket/);
    const noOrigin = await send('POST', '/v1/vms/nope/start', { cookie });
    expect(noOrigin.status).toBe(403);
    expect(JSON.parse(noOrigin.body).error.code).toBe('bad-origin');
    // Logging out ends the session at once.
    expect((await send('POST', '/v1/ui/logout', { cookie, origin: own })).status).toBe(204);
    expect((await send('GET', '/v1/vms', { cookie })).status).toBe(401);
  });

  it('refuses a foreign Origin with 403, another port of 127.0.0.1 included', async () => {
    const cookie = await login();
    const token = {
      authorization: `Bearer ${(await readFile(path.join(h.home, 'api-token'), 'utf8')).trim()}`,
    };
    for (const origin of ['http://evil.example', `http://127.0.0.1:${port + 1}`, 'null']) {
      const res = await send('POST', '/v1/vms/nope/start', { cookie, origin });
      expect(res.status, origin).toBe(403);
      expect(JSON.parse(res.body).error.code).toBe('bad-origin');
      expect((await send('GET', '/v1/vms', { cookie, origin })).status, origin).toBe(403);
      expect((await send('GET', '/v1/vms', { ...token, origin })).status, origin).toBe(403);
    }
    // A login from another page is refused too (login CSRF).
    const { code } = await loginCode();
    expect((await send('POST', '/v1/ui/login', { origin: 'http://evil.example' }, { code })).status).toBe(
      403,
    );
  });

  it('refuses a Host that is not this loopback listener with 403 (DNS rebinding)', async () => {
    const cookie = await login();
    for (const host of [`evil.example:${port}`, `127.0.0.1.nip.io:${port}`, `127.0.0.1:${port + 1}`]) {
      const res = await send('GET', '/v1/vms', { cookie, host });
      expect(res.status, host).toBe(403);
      expect(JSON.parse(res.body).error.code).toBe('bad-host');
    }
    expect((await send('GET', '/v1/vms', { cookie, host: `localhost:${port}` })).status).toBe(200);
    // The login exchange needs no login, but a rebound page cannot reach it either.
    const { code } = await loginCode();
    expect((await send('POST', '/v1/ui/login', { host: `evil.example:${port}` }, { code })).status).toBe(403);
  });

  it('authenticates WebSockets the same way', async () => {
    const cookie = await login();
    expect(await handshake('/v1/events', {})).toBe(401);
    expect(await handshake('/v1/vms/any/console', {})).toBe(401);
    expect(await handshake('/v1/events', { cookie })).toBe(403);
    expect(await handshake('/v1/events', { cookie, origin: 'http://evil.example' })).toBe(403);
    expect(await handshake('/v1/vms/any/console', { cookie, origin: 'http://evil.example' })).toBe(403);
    expect(await handshake('/v1/events', { cookie, origin: own })).toBe('open');
  });

  it('serves the web UI without a login, but only to its own Host, and nothing outside its folder', async () => {
    const page = await send('GET', '/login');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toMatch(/default-src 'self'/);
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(page.body)?.[1];
    expect(script).toBeDefined();
    const js = await send('GET', script!);
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toMatch(/^text\/javascript/);
    expect(js.headers['cache-control']).toMatch(/immutable/);
    expect((await send('GET', '/', { host: `evil.example:${port}` })).status).toBe(403);
    for (const url of [
      '/assets/..%2Findex.html',
      '/assets/%2E%2E%2F%2E%2E%2Fphyllome.mjs',
      '/assets/.hidden',
    ]) {
      expect((await send('GET', url)).status, url).toBe(404);
    }
    expect((await send('GET', '/elsewhere')).status).toBe(401);
  });

  it("bridges a VM's screen (VNC) to a logged-in page only; QEMU serves it on no TCP port", async () => {
    await createGuest(h, 'screen', ['--graphics', 'vga']);
    await ok(h, ['start', 'screen']);
    const cookie = await login();
    expect(await handshake('/v1/vms/screen/vnc', {})).toBe(401);
    expect(await handshake('/v1/vms/screen/vnc', { cookie, origin: 'http://evil.example' })).toBe(403);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/vms/screen/vnc`, {
      headers: { cookie, origin: own },
    });
    const banner = await new Promise<string>((resolve, reject) => {
      ws.once('message', (d: Buffer) => resolve(d.toString()));
      ws.once('error', reject);
    });
    ws.close();
    // The RFB handshake's first words, straight from QEMU.
    expect(banner).toMatch(/^RFB 003\.00\d\n/);

    const pid = Number((await readFile(path.join(h.run, 'vms/screen/qemu.pid'), 'utf8')).trim());
    expect(await tcpListeners(pid)).toEqual([]);
    // The same look finds the daemon's own listener.
    expect(await tcpListeners(daemon.pid!)).toContain(port);
    expect((await stat(path.join(h.run, 'vms/screen/vnc.sock'))).isSocket()).toBe(true);
    await ok(h, ['stop', 'screen', '--force']);
  });

  it("streams a running VM's statistics to a logged-in page only, and ends the stream when it stops", async () => {
    await createGuest(h, 'stats', ['--disk', `${await copyDisk(h, 'stats.ext4')}:ro`]);
    const cookie = await login();
    const stopped = await send('GET', '/v1/vms/stats/stats', { cookie });
    expect(stopped.status).toBe(409);
    expect(JSON.parse(stopped.body).error.message).toMatch(/is stopped/);
    await ok(h, ['start', 'stats']);
    expect(await handshake('/v1/vms/stats/stats', {})).toBe(401);
    expect(await handshake('/v1/vms/stats/stats', { cookie, origin: 'http://evil.example' })).toBe(403);

    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/vms/stats/stats`, {
      headers: { cookie, origin: own },
    });
    const samples: StatsSample[] = [];
    ws.on('message', (d: Buffer) => samples.push(JSON.parse(d.toString()) as StatsSample));
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    // The guest boots under TCG meanwhile: QEMU is busy.
    await waitFor(`three samples (${samples.length})`, () => samples.length >= 3 || undefined, 10_000);
    expect(samples[0]!.intervalMs).toBeNull();
    for (const s of samples.slice(1)) {
      expect(s.intervalMs).toBeGreaterThan(800);
      expect(s.intervalMs).toBeLessThan(1500);
      expect(s.cpu.percent).toBeGreaterThan(0);
      expect(s.memory.rssBytes).toBeGreaterThan(10 * 2 ** 20);
      expect(s.memory.configuredBytes).toBe(256 * 2 ** 20);
    }
    // Its NIC is user-mode: no counters, and a reason rather than a made-up zero.
    expect(samples[1]!.net.rxBytes).toBeNull();
    expect(samples[1]!.nics[0]!.note).toMatch(/user-mode networking \((passt|slirp)\)/);

    await waitForReady(h, 'stats');
    // While the stream runs, the page's GET gets its latest sample, up to a sampling interval old:
    // the one that counts was taken after the boot.
    const readyAt = Date.now();
    const sample = await waitFor('a sample taken after the boot', async () => {
      const latest = await send('GET', '/v1/vms/stats/stats', { cookie });
      expect(latest.status).toBe(200);
      const s = JSON.parse(latest.body) as StatsSample;
      return s.at >= readyAt ? s : undefined;
    });
    // The kernel read the disk's partition table (and more) while booting.
    expect(sample.disk.readBytes).toBeGreaterThan(0);
    expect(sample.cpu.percent).not.toBeNull();
    // The CLI reads the same.
    expect((await json<StatsSample>(h, ['stats', 'stats'])).disk.readBytes).toBeGreaterThan(0);
    expect(await ok(h, ['stats', 'stats'])).toMatch(/^CPU +\d+\.\d % of one host core/);

    await ok(h, ['stop', 'stats', '--force']);
    expect(await closed).toMatchObject({ code: 4000, reason: expect.stringMatching(/stats/) });
  });

  it('says how to serve the UI when the daemon does not listen on TCP', async () => {
    const plain = await makeHome();
    try {
      const r = await cli(plain, ['ui']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/phyllome daemon --listen/);
    } finally {
      await destroyHome(plain);
    }
  });
});
