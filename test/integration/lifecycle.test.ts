import { access, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  alive,
  cli,
  copyDisk,
  createGuest,
  findProcesses,
  json,
  ok,
  openConsole,
  READY,
  useHome,
  waitForReady,
  type Vm,
} from './helpers.js';

const home = useHome();

describe('a VM through the CLI, on real QEMU', () => {
  it('boots, shows its console, pauses, resumes and stops on the ACPI power button', async () => {
    const h = home();
    // A comma and an equals sign in the disk path prove user values reach QEMU escaped.
    const disk = await copyDisk(h, 'data,id=x.ext4');
    await createGuest(h, 'demo', ['--disk', `${disk}:ro`]);
    expect((await json<Vm[]>(h, ['list']))[0]).toMatchObject({ name: 'demo', state: 'stopped' });

    const started = await cli(h, ['start', 'demo']);
    expect(started.code).toBe(0);
    expect(started.stdout).toMatch(/Started "demo"/);
    const vm = await json<Vm>(h, ['status', 'demo']);
    expect(vm.state).toBe('running');
    expect(alive(vm.pid!)).toBe(true);
    // This machine's /dev/kvm hangs: the probe must have chosen TCG and said so.
    if (vm.accel === 'tcg') {
      expect(vm.warnings.join()).toMatch(/KVM is not usable/);
      expect(started.stderr).toMatch(/warning: KVM is not usable/);
    }

    const console = openConsole(h, 'demo');
    await console.waitFor(READY, 90_000);
    expect(console.output).toContain('disk: phyllome test disk');
    console.type('echo con$((6*7))sole\n');
    await console.waitFor('con42sole');
    console.type('\x1d');
    expect(await console.exited).toBe(0);

    expect(await readFile(path.join(h.home, 'vms/demo/serial.log'), 'utf8')).toContain(READY);

    await ok(h, ['pause', 'demo']);
    expect((await json<Vm>(h, ['status', 'demo'])).state).toBe('paused');
    const table = await ok(h, ['list']);
    expect(table).toMatch(/^NAME\s+STATE\s+OS\s+CPUS\s+MEMORY/);
    expect(table).toMatch(/demo\s+paused\s+-\s+1\s+256M\s+(tcg|kvm)/);
    await ok(h, ['resume', 'demo']);
    expect((await json<Vm>(h, ['status', 'demo'])).state).toBe('running');

    const stopped = await json<Vm>(h, ['stop', 'demo', '--timeout', '60']);
    expect(stopped).toMatchObject({ state: 'stopped', forced: false, reason: 'guest shut down' });
    expect(alive(vm.pid!)).toBe(false);
    // Runtime files are gone; nothing stale is left for the next start.
    await expect(access(path.join(h.run, 'vms/demo'))).rejects.toThrow();
    expect((await json<Vm[]>(h, ['list']))[0]).toMatchObject({ state: 'stopped' });
  });

  it('forces off a guest that ignores the power button, after the timeout', async () => {
    const h = home();
    await createGuest(h, 'stubborn');
    await ok(h, ['start', 'stubborn']);
    const { pid } = await json<Vm>(h, ['status', 'stubborn']);
    // Paused at once, the guest has not booted to its ACPI daemon: stop must fall back to force.
    await ok(h, ['pause', 'stubborn']);
    const begin = Date.now();
    const stopped = await json<Vm>(h, ['stop', 'stubborn', '--timeout', '1']);
    expect(stopped).toMatchObject({ state: 'stopped', forced: true, reason: 'forced off' });
    expect(Date.now() - begin).toBeLessThan(30_000);
    expect(alive(pid!)).toBe(false);
  });

  it('restarts, force-stops and deletes', async () => {
    const h = home();
    await createGuest(h, 'again');
    await ok(h, ['start', 'again']);
    const first = await json<Vm>(h, ['status', 'again']);
    await ok(h, ['restart', 'again', '--timeout', '2']);
    const second = await json<Vm>(h, ['status', 'again']);
    expect(second.state).toBe('running');
    expect(second.pid).not.toBe(first.pid);
    expect(alive(first.pid!)).toBe(false);

    const forced = await json<Vm>(h, ['stop', 'again', '--force']);
    expect(forced).toMatchObject({ state: 'stopped', forced: true });
    expect(alive(second.pid!)).toBe(false);

    expect(await ok(h, ['delete', 'again'])).toMatch(/Deleted "again"/);
    expect(await json(h, ['list'])).toEqual([]);
    await expect(stat(path.join(h.home, 'vms/again'))).rejects.toThrow();
  });

  it('deletes a running VM only with --force, killing it first', async () => {
    const h = home();
    await createGuest(h, 'doomed');
    await ok(h, ['start', 'doomed']);
    const { pid } = await json<Vm>(h, ['status', 'doomed']);
    const refused = await cli(h, ['delete', 'doomed']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/VM "doomed" is running: stop it first, or delete with --force/);
    expect(alive(pid!)).toBe(true);
    await ok(h, ['delete', 'doomed', '--force']);
    expect(alive(pid!)).toBe(false);
    expect(await json(h, ['list'])).toEqual([]);
  });

  it('shows recent output to a console attached after boot, and to two consoles at once', async () => {
    const h = home();
    await createGuest(h, 'late');
    await ok(h, ['start', 'late']);
    await waitForReady(h, 'late');
    const first = openConsole(h, 'late');
    const second = openConsole(h, 'late');
    await first.waitFor(READY);
    await second.waitFor(READY);
    first.type('echo both$((1+1))\n');
    await first.waitFor('both2');
    await second.waitFor('both2');
    first.type('\x1d');
    second.type('\x1d');
    expect(await first.exited).toBe(0);
    expect(await second.exited).toBe(0);
    await ok(h, ['stop', 'late']);
  });

  it('never interleaves two operations on one VM: concurrent starts launch one QEMU', async () => {
    const h = home();
    await createGuest(h, 'racy');
    const results = await Promise.all([
      cli(h, ['start', 'racy']),
      cli(h, ['start', 'racy']),
      cli(h, ['start', 'racy']),
    ]);
    expect(results.map((r) => r.code).sort()).toEqual([0, 1, 1]);
    for (const r of results.filter((x) => x.code === 1))
      expect(r.stderr).toMatch(/VM "racy" is already running/);
    const { uuid, pid } = await json<Vm>(h, ['status', 'racy']);
    const qemus = await findProcesses((argv) => argv.includes(uuid));
    expect(qemus).toEqual([pid]);
    // A stop racing a pause: both complete, one after the other, and the VM ends stopped.
    const [paused, stopped] = await Promise.all([
      cli(h, ['pause', 'racy']),
      cli(h, ['stop', 'racy', '--force']),
    ]);
    expect(stopped.code).toBe(0);
    expect([0, 1]).toContain(paused.code);
    expect((await json<Vm>(h, ['status', 'racy'])).state).toBe('stopped');
  });
});
