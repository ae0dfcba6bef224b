import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createGuest,
  destroyHome,
  json,
  makeHome,
  ok,
  tcpCall,
  tcpDaemon,
  tokenHeader,
  type TestHome,
  type Vm,
} from './helpers.js';

let h: TestHome;
let daemon: ChildProcess;
let port: number;

const patch = async (body: unknown) =>
  tcpCall(
    port,
    'PATCH',
    '/v1/vms/box',
    { ...(await tokenHeader(h)), 'content-type': 'application/json' },
    JSON.stringify(body),
  );

beforeAll(async () => {
  h = await makeHome();
  ({ daemon, port } = await tcpDaemon(h));
  await createGuest(h, 'box');
});
afterAll(async () => {
  daemon.kill('SIGKILL');
  await destroyHome(h);
});

describe("a VM's CPUs and memory (PATCH /v1/vms/NAME, the web UI's settings)", () => {
  it('changes them while the VM is stopped, and the spec keeps them', async () => {
    const r = await patch({ cpus: 2, memory: '320M' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const vm = await json<Vm>(h, ['status', 'box']);
    expect(vm.spec).toMatchObject({ cpus: 2, memory: '320M' });
  });

  it('refuses values the spec refuses, saying which and why, and changes nothing', async () => {
    const cpus = await patch({ cpus: 0 });
    expect(cpus.status).toBe(400);
    expect(cpus.body.error?.message).toMatch(/^cpus: /);
    const memory = await patch({ memory: 'lots' });
    expect(memory.status).toBe(400);
    expect(memory.body.error?.message).toMatch(/^memory: /);
    expect((await patch({ disks: [] })).status).toBe(400);
    // box has no screen (graphics none): nothing to show in a window.
    const window = await patch({ window: true });
    expect(window.status).toBe(400);
    expect(window.body.error?.message).toMatch(/^graphics\.window: a window needs a display device/);
    expect((await json<Vm>(h, ['status', 'box'])).spec).toMatchObject({ cpus: 2, memory: '320M' });
  });

  it('refuses while the VM runs, saying to stop it', async () => {
    await ok(h, ['start', 'box']);
    try {
      const r = await patch({ cpus: 1 });
      expect(r.status).toBe(409);
      expect(r.body.error?.message).toMatch(/stop VM "box" to change its CPUs or memory/);
    } finally {
      await ok(h, ['stop', 'box', '--force']);
    }
  });
});
