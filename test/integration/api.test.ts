import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  alive,
  cli,
  createGuest,
  daemonPid,
  destroyHome,
  findProcesses,
  makeHome,
  ok,
  root,
  waitFor,
  type TestHome,
} from './helpers.js';

let h: TestHome;
let daemon: ChildProcess;
const port = 18000 + Math.floor(Math.random() * 2000);
const base = `http://127.0.0.1:${port}`;

beforeAll(async () => {
  h = await makeHome();
  // The foreground daemon, as systemd would run it, also on loopback TCP.
  daemon = spawn(
    process.execPath,
    [path.join(root, 'dist/phyllome.mjs'), 'daemon', '--listen', `127.0.0.1:${port}`],
    {
      env: h.env,
      stdio: 'ignore',
    },
  );
  await waitFor(
    'the TCP listener',
    () =>
      fetch(`${base}/v1/vms`).then(
        () => true,
        () => undefined,
      ),
    20_000,
  );
});
afterAll(async () => {
  daemon.kill('SIGKILL');
  await destroyHome(h);
});

const token = () => readFile(path.join(h.home, 'api-token'), 'utf8').then((t) => t.trim());

describe('the API', () => {
  it('serves its Unix socket with mode 0660', async () => {
    const s = await stat(path.join(h.run, 'phyllomed.sock'));
    expect(s.isSocket()).toBe(true);
    expect(s.mode & 0o777).toBe(0o660);
  });

  it('wants the bearer token over TCP', async () => {
    expect((await fetch(`${base}/v1/vms`)).status).toBe(401);
    expect((await fetch(`${base}/v1/vms`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const res = await fetch(`${base}/v1/vms`, { headers: { authorization: `Bearer ${await token()}` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual([]);
    expect((await stat(path.join(h.home, 'api-token'))).mode & 0o777).toBe(0o600);
  });

  it('publishes an OpenAPI document generated from the schemas', async () => {
    const res = await fetch(`${base}/openapi.json`, {
      headers: { authorization: `Bearer ${await token()}` },
    });
    const doc = (await res.json()) as {
      openapi: string;
      paths: Record<string, Record<string, { requestBody?: unknown }>>;
    };
    expect(doc.openapi).toMatch(/^3\./);
    for (const p of [
      '/v1/vms',
      '/v1/vms/{name}',
      '/v1/vms/{name}/start',
      '/v1/vms/{name}/stop',
      '/v1/host',
    ]) {
      expect(Object.keys(doc.paths)).toContain(p);
    }
    expect(JSON.stringify(doc.paths['/v1/vms']!.post!.requestBody)).toMatch(/"memory"/);
  });

  it('reports the accelerator and why KVM is not used', async () => {
    const res = await fetch(`${base}/v1/host`, { headers: { authorization: `Bearer ${await token()}` } });
    const host = (await res.json()) as { accel: string; warnings: string[] };
    expect(['kvm', 'tcg']).toContain(host.accel);
    if (host.accel === 'tcg') expect(host.warnings[0]).toMatch(/KVM is not usable/);
  });

  it('streams state changes that come from QMP events', async () => {
    await createGuest(h, 'evented');
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/events`, {
      headers: { authorization: `Bearer ${await token()}` },
    });
    const events: { type: string; vm: string; state?: string; event?: string }[] = [];
    ws.on('message', (d) => events.push(JSON.parse(d.toString())));
    await new Promise((r) => ws.once('open', r));
    await ok(h, ['start', 'evented']);
    await ok(h, ['pause', 'evented']);
    await ok(h, ['stop', 'evented', '--force']);
    await waitFor('the stopped event', () => events.some((e) => e.state === 'stopped') || undefined, 10_000);
    ws.close();
    const states = events.filter((e) => e.type === 'state' && e.vm === 'evented').map((e) => e.state);
    expect(states).toEqual(['starting', 'running', 'paused', 'stopping', 'stopped']);
    expect(events.filter((e) => e.type === 'qemu-event').map((e) => e.event)).toEqual(
      expect.arrayContaining(['RESUME', 'STOP']),
    );
  });

  it('keeps VMs running when the daemon stops on SIGTERM', async () => {
    await ok(h, ['start', 'evented']);
    const { pid } = JSON.parse(await ok(h, ['status', 'evented', '--json'])) as { pid: number };
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));
    expect(() => process.kill(pid, 0)).not.toThrow();
    await expect(stat(path.join(h.run, 'phyllomed.sock'))).rejects.toThrow();
    // A new (auto-started) daemon takes it over.
    expect(JSON.parse(await ok(h, ['status', 'evented', '--json']))).toMatchObject({ state: 'running', pid });
    await ok(h, ['stop', 'evented', '--force']);
  });

  it('starts exactly one daemon when several CLIs find none', async () => {
    const other = await makeHome();
    try {
      const runs = await Promise.all([1, 2, 3].map(() => cli(other, ['list', '--json'])));
      expect(runs.map((r) => r.code)).toEqual([0, 0, 0]);
      const pid = await daemonPid(other);
      expect(pid && alive(pid)).toBe(true);
      const daemons = () =>
        findProcesses(
          (argv, environ) => argv.includes('daemon') && environ.includes(`PHYLLOME_HOME=${other.home}\0`),
        );
      // The daemons that lost the race exit once they find the lock taken; one stays.
      await waitFor(
        'the losing daemons to exit',
        async () => ((await daemons()).length === 1 ? true : undefined),
        10_000,
      );
      expect(await daemons()).toEqual([pid]);
      expect(JSON.parse((await cli(other, ['list', '--json'])).stdout)).toEqual([]);
    } finally {
      await destroyHome(other);
    }
  });
});
