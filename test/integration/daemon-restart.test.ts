import { spawn } from 'node:child_process';
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { QmpClient } from '../../src/qemu/qmp.js';
import {
  alive,
  createGuest,
  daemonPid,
  findProcesses,
  json,
  ok,
  openConsole,
  READY,
  root,
  useHome,
  waitFor,
  waitForReady,
  type Vm,
} from './helpers.js';

const home = useHome();

const killDaemon = async () => {
  const pid = (await daemonPid(home()))!;
  process.kill(pid, 'SIGKILL');
  await waitFor('the daemon to die', () => !alive(pid) || undefined, 5000);
  return pid;
};

describe('the daemon can die without taking VMs with it', () => {
  it('re-adopts running VMs after SIGKILL and records those that died meanwhile', async () => {
    const h = home();
    for (const name of ['one', 'two', 'three']) {
      await createGuest(h, name);
      await ok(h, ['start', name]);
    }
    const before = await json<Vm[]>(h, ['list']);
    expect(before.map((v) => v.state)).toEqual(['running', 'running', 'running']);
    const pids = Object.fromEntries(before.map((v) => [v.name, v.pid!]));
    // Wait for 'one' to boot, so it can answer the power button after the re-adoption.
    await waitForReady(h, 'one');
    await ok(h, ['pause', 'two']);

    const oldDaemon = await killDaemon();
    for (const pid of Object.values(pids)) expect(alive(pid)).toBe(true);
    // 'three' dies while no daemon watches it.
    process.kill(pids.three!, 'SIGKILL');
    await waitFor('three to die', () => !alive(pids.three!) || undefined, 5000);
    // The daemon died while it held 'one' paused for a snapshot (whilePaused): its marker and stopped vCPUs.
    const qmp = await QmpClient.connect(path.join(h.run, 'vms/one/qmp.sock'), { connectTimeoutMs: 5000 });
    await writeFile(path.join(h.run, 'vms/one/held'), '');
    await qmp.execute('stop');
    qmp.close();

    // Any CLI call starts a new daemon, which re-adopts.
    const after = await json<Vm[]>(h, ['list']);
    const newDaemon = await daemonPid(h);
    expect(newDaemon).not.toBe(oldDaemon);
    // 'one' is resumed, as the marker asks; 'two', paused by its user, stays paused.
    expect(after.find((v) => v.name === 'one')).toMatchObject({ state: 'running', pid: pids.one });
    await expect(access(path.join(h.run, 'vms/one/held'))).rejects.toThrow();
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
    await waitForReady(h, 'two');
    expect(await json<Vm>(h, ['stop', 'two'])).toMatchObject({ state: 'stopped', forced: false });
    expect(alive(pids.one!)).toBe(false);
    expect(alive(pids.two!)).toBe(false);

    // And a state that survives one more restart.
    await killDaemon();
    expect((await json<Vm[]>(h, ['list'])).map((v) => v.state)).toEqual(['stopped', 'stopped', 'stopped']);
  });

  it('sees a clean guest shutdown that happened while it was down', async () => {
    const h = home();
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
    const h = home();
    const tmp = path.join(h.dir, 'tmp');
    await mkdir(tmp);
    const daemon = spawn(process.execPath, [path.join(root, 'dist/phyllome.mjs'), 'daemon'], {
      env: { ...h.env, TMPDIR: tmp },
      stdio: 'ignore',
    });
    const probes = () =>
      findProcesses(
        (argv) =>
          argv.some((a) => a.includes(tmp)) && argv.includes('isa-debug-exit,iobase=0xf4,iosize=0x01'),
      );
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
