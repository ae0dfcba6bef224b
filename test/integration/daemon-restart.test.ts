import { spawn } from 'node:child_process';
import { access, mkdir, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  alive,
  root,
  createGuest,
  daemonPid,
  destroyHome,
  json,
  makeHome,
  ok,
  openConsole,
  READY,
  waitFor,
  type TestHome,
} from './helpers.js';

interface Vm {
  name: string;
  state: string;
  reason?: string;
  pid?: number;
}

let h: TestHome;
beforeEach(async () => {
  h = await makeHome();
});
afterEach(() => destroyHome(h));

const killDaemon = async () => {
  const pid = (await daemonPid(h))!;
  process.kill(pid, 'SIGKILL');
  await waitFor('the daemon to die', () => !alive(pid) || undefined, 5000);
  return pid;
};

describe('the daemon can die without taking VMs with it', () => {
  it('re-adopts running VMs after SIGKILL and records those that died meanwhile', async () => {
    for (const name of ['one', 'two', 'three']) {
      await createGuest(h, name);
      await ok(h, ['start', name]);
    }
    const before = await json<Vm[]>(h, ['list']);
    expect(before.map((v) => v.state)).toEqual(['running', 'running', 'running']);
    const pids = Object.fromEntries(before.map((v) => [v.name, v.pid!]));
    // Wait for 'one' to boot, so it can answer the power button after the re-adoption.
    await waitFor(
      'one to boot',
      async () =>
        (await readFile(path.join(h.home, 'vms/one/serial.log'), 'utf8')).includes(READY) || undefined,
      90_000,
    );
    await ok(h, ['pause', 'two']);

    const oldDaemon = await killDaemon();
    for (const pid of Object.values(pids)) expect(alive(pid)).toBe(true);
    // 'three' dies while no daemon watches it.
    process.kill(pids.three!, 'SIGKILL');
    await waitFor('three to die', () => !alive(pids.three!) || undefined, 5000);

    // Any CLI call starts a new daemon, which re-adopts.
    const after = await json<Vm[]>(h, ['list']);
    const newDaemon = await daemonPid(h);
    expect(newDaemon).not.toBe(oldDaemon);
    expect(after.find((v) => v.name === 'one')).toMatchObject({ state: 'running', pid: pids.one });
    expect(after.find((v) => v.name === 'two')).toMatchObject({ state: 'paused', pid: pids.two });
    expect(after.find((v) => v.name === 'three')).toMatchObject({
      state: 'stopped',
      reason: 'crashed: QEMU exited while phyllomed was down',
    });
    expect(after.find((v) => v.name === 'three')?.pid).toBeUndefined();
    // No stale sockets or pidfile for the dead VM.
    await expect(access(path.join(h.run, 'vms/three'))).rejects.toThrow();

    // The re-adopted VMs are fully controllable: console, resume, clean ACPI stop.
    const console = openConsole(h, 'one');
    await console.waitFor(READY);
    console.type('echo adopted$((2+3))\n');
    await console.waitFor('adopted5');
    console.type('\x1d');
    await console.exited;
    await ok(h, ['resume', 'two']);
    expect(await json<Vm>(h, ['stop', 'one'])).toMatchObject({ state: 'stopped', forced: false });
    // 'two' was paused before it booted: let it boot, so the power button finds its ACPI daemon.
    await waitFor(
      'two to boot',
      async () =>
        (await readFile(path.join(h.home, 'vms/two/serial.log'), 'utf8')).includes(READY) || undefined,
      90_000,
    );
    expect(await json<Vm>(h, ['stop', 'two'])).toMatchObject({ state: 'stopped', forced: false });
    expect(alive(pids.one!)).toBe(false);
    expect(alive(pids.two!)).toBe(false);

    // And a state that survives one more restart.
    await killDaemon();
    expect((await json<Vm[]>(h, ['list'])).map((v) => v.state)).toEqual(['stopped', 'stopped', 'stopped']);
  });

  it('sees a clean guest shutdown that happened while it was down', async () => {
    await createGuest(h, 'quiet');
    await ok(h, ['start', 'quiet']);
    const { pid } = await json<Vm>(h, ['status', 'quiet']);
    const console = openConsole(h, 'quiet');
    await console.waitFor(READY, 90_000);
    await killDaemon();
    // The console bridge died with the daemon; power off from inside through a fresh daemon-less path:
    // QEMU's own QMP socket is free now, so ask it directly.
    const { QmpClient } = await import('../../src/qemu/qmp.js');
    const qmp = await QmpClient.connect(path.join(h.run, 'vms/quiet/qmp.sock'));
    await qmp.execute('system_powerdown');
    await waitFor('QEMU to exit', () => !alive(pid!) || undefined, 30_000);
    expect(await json<Vm>(h, ['status', 'quiet'])).toMatchObject({
      state: 'stopped',
      reason: 'shut down while phyllomed was down',
    });
    await expect(access(path.join(h.run, 'vms/quiet'))).rejects.toThrow();
  });

  it('leaves no KVM probe behind when killed during start-up', async () => {
    const tmp = path.join(h.dir, 'tmp');
    await mkdir(tmp);
    const daemon = spawn(process.execPath, [path.join(root, 'dist/phyllome.mjs'), 'daemon'], {
      env: { ...h.env, TMPDIR: tmp },
      stdio: 'ignore',
    });
    const probes = async () => {
      const found: number[] = [];
      for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
        const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (cmdline.includes(tmp) && cmdline.includes('isa-debug-exit')) found.push(Number(pid));
      }
      return found.filter(alive);
    };
    // Kill it while its probe runs (the probe outlives start-up on a machine whose KVM hangs).
    const probe = await waitFor(
      'the probe to start',
      async () => ((await probes()).length ? true : undefined),
      10_000,
    ).catch(() => false);
    daemon.kill('SIGKILL');
    if (probe)
      await waitFor(
        'the orphaned probe to end',
        async () => ((await probes()).length === 0 ? true : undefined),
        8000,
      );
    expect(await probes()).toEqual([]);
  });
});
