import type { ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ISO_TYPE } from '../../src/daemon/isos.js';
import { makeIso } from '../fixtures/iso.js';
import {
  createGuest,
  destroyHome,
  makeHome,
  ok,
  tcpCall,
  tcpDaemon,
  tokenHeader,
  waitFor,
  type TestHome,
} from './helpers.js';

let h: TestHome;
let daemon: ChildProcess;
let port: number;
let auth: Record<string, string>;
let isosDir: string;

const request = (method: string, url: string, headers: Record<string, string | number>, body?: Buffer) =>
  tcpCall(port, method, url, headers, body);

const upload = (name: string, bytes: Buffer, headers = auth) =>
  request('PUT', `/v1/isos/${encodeURIComponent(name)}`, { ...headers, 'content-type': ISO_TYPE }, bytes);

beforeAll(async () => {
  h = await makeHome();
  ({ daemon, port } = await tcpDaemon(h));
  auth = await tokenHeader(h);
  isosDir = path.join(h.home, 'isos');
});
afterAll(async () => {
  daemon.kill('SIGKILL');
  await destroyHome(h);
});

describe('installer ISO uploads (PUT /v1/isos/NAME, GET /v1/isos)', () => {
  it('refuses both without the token or a login over TCP', async () => {
    expect((await upload('x.iso', Buffer.alloc(10), {})).status).toBe(401);
    expect((await request('GET', '/v1/isos', {})).status).toBe(401);
    expect(await readdir(isosDir).catch(() => [])).toEqual([]);
  });

  it('refuses names that could leave the folder, hide, or split a QEMU option, saying what is allowed', async () => {
    for (const name of [
      '../evil.iso',
      'a/b.iso',
      'a,b.iso',
      '.hidden.iso',
      'x..y.iso',
      'noext',
      '-dash.iso',
    ]) {
      const r = await upload(name, Buffer.alloc(10));
      expect(r.status, name).toBe(400);
      expect(r.body.error?.message, name).toMatch(
        /invalid ISO name .*no "\/", "," or "\.\.".*like debian-12\.iso/,
      );
    }
    expect(await readdir(isosDir).catch(() => [])).toEqual([]);
  });

  it('stores an upload under its name and lists it with the OS identified from it; a taken name is refused', async () => {
    const bytes = await readFile(
      await makeIso(h.dir, 'src.iso', { volume: 'Debian 11.5.0 amd64 n', system: 'LINUX' }),
    );
    const r = await upload('debian-11.5.iso', bytes);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({
      name: 'debian-11.5.iso',
      path: path.join(isosDir, 'debian-11.5.iso'),
      size: bytes.length,
      os: { shortId: 'debian11' },
    });
    expect(await readFile(path.join(isosDir, 'debian-11.5.iso'))).toEqual(bytes);
    const other = await readFile(await makeIso(h.dir, 'other.iso', { volume: 'XYZZY_NOT_AN_OS' }));
    expect((await upload('unknown.iso', other)).status).toBe(201);

    const list = await request('GET', '/v1/isos', auth);
    expect(list.body.isos).toEqual([
      expect.objectContaining({
        name: 'debian-11.5.iso',
        os: expect.objectContaining({ shortId: 'debian11' }),
      }),
      expect.objectContaining({
        name: 'unknown.iso',
        problem: expect.stringMatching(/could not identify the OS/),
      }),
    ]);

    const again = await upload('debian-11.5.iso', Buffer.alloc(10));
    expect(again.status).toBe(409);
    expect(again.body.error?.message).toMatch(/already uploaded: delete it first or pick another name/);
    expect(await readFile(path.join(isosDir, 'debian-11.5.iso'))).toEqual(bytes);
  });

  it('deletes an ISO only once no VM holds it in a drive', async () => {
    const iso = await readFile(await makeIso(h.dir, 'held.iso', { volume: 'XYZZY_NOT_AN_OS' }));
    expect((await upload('held.iso', iso)).status).toBe(201);
    await createGuest(h, 'holder');
    await ok(h, ['media', 'insert', 'holder', path.join(isosDir, 'held.iso')]);
    const refused = await request('DELETE', '/v1/isos/held.iso', auth);
    expect(refused.status).toBe(409);
    expect(refused.body.error?.message).toBe(
      'the ISO "held.iso" is in a drive of "holder": eject it first (phyllome media eject holder)',
    );
    expect(await readdir(isosDir)).toContain('held.iso');

    await ok(h, ['media', 'eject', 'holder']);
    expect((await request('DELETE', '/v1/isos/held.iso', auth)).status).toBe(204);
    expect(await readdir(isosDir)).not.toContain('held.iso');
    const gone = await request('DELETE', '/v1/isos/held.iso', auth);
    expect([gone.status, gone.body.error?.message]).toEqual([404, 'no ISO named "held.iso"']);
    await ok(h, ['delete', 'holder']);
  });

  it('leaves nothing behind an upload cut off midway', async () => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'PUT',
      path: '/v1/isos/cut.iso',
      headers: { ...auth, 'content-type': ISO_TYPE, 'content-length': 8 << 20 },
    });
    req.on('error', () => {});
    req.write(Buffer.alloc(256 << 10));
    const inFlight = await waitFor('the upload to reach the disk', async () =>
      (await readdir(isosDir)).find((f) => f.includes('cut')),
    );
    // Only a temp name exists while it streams, never the final one.
    expect(inFlight).toMatch(/^\.cut\.iso\..*\.part$/);
    req.destroy();
    await waitFor(
      'the cut upload to be cleaned away',
      async () => (await readdir(isosDir)).every((f) => !f.includes('cut')) || undefined,
      10_000,
    );
    const list = await request('GET', '/v1/isos', auth);
    expect((list.body.isos as { name: string }[]).map((i) => i.name)).not.toContain('cut.iso');
  });
});
