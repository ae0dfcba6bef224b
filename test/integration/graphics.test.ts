import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { argvOf } from '../../src/qemu/process.js';
import {
  cli,
  createGuest,
  json,
  ok,
  stopDaemon,
  useHome,
  waitFor,
  waitForReady,
  type TestHome,
  type Vm,
} from './helpers.js';

const home = useHome();

/** The first bytes QEMU's VNC server sends on the VM's Unix socket. */
const vncGreeting = (h: TestHome, name: string) =>
  new Promise<string>((resolve, reject) => {
    const socket = net.createConnection(path.join(h.run, 'vms', name, 'vnc.sock'));
    socket.once('data', (d) => {
      socket.destroy();
      resolve(d.toString());
    });
    socket.once('error', reject);
  });

/** What `phyllome host check --json` prints, as far as these tests read it (it exits 3 here: no KVM). */
const hostCheck = async (h: TestHome) =>
  JSON.parse((await cli(h, ['host', 'check', '--json'])).stdout) as {
    findings: { id: string; title: string }[];
    plans: Record<string, { kind: string; graphics: unknown }[]>;
  };

describe('virgl 3D without a GPU (Mesa llvmpipe on the host)', () => {
  it('boots a guest whose kernel reports +virgl and a render node', async () => {
    const h = home();
    await createGuest(h, 'gl', ['--graphics', 'virtio-vga-gl', '--render-node', '/dev/null']);
    expect(await ok(h, ['status', 'gl'])).toMatch(/Graphics\s+virtio-vga-gl \(render node \/dev\/null\)/);
    await ok(h, ['start', 'gl']);
    await waitForReady(h, 'gl');
    const log = await readFile(path.join(h.home, 'vms/gl/serial.log'), 'utf8');
    expect(log).toMatch(/gpu: features: \+virgl/);
    expect(log).toMatch(/render: card0 renderD128/);
    // The GL-rendered screen is served over VNC on a Unix socket, for the web console to bridge.
    expect(await vncGreeting(h, 'gl')).toMatch(/^RFB 003\.00\d\n$/);
    expect(await json<Vm>(h, ['stop', 'gl'])).toMatchObject({ state: 'stopped', forced: false });
  });

  it("renders off-screen 3D where the spec names no render node: on the host's GPU, else on the CPU", async () => {
    const h = home();
    await createGuest(h, 'bare', ['--graphics', 'virtio-vga-gl']);
    expect((await json<Vm>(h, ['status', 'bare'])).spec.graphics).toEqual({ device: 'virtio-vga-gl' });
    await ok(h, ['start', 'bare']);
    await waitForReady(h, 'bare');
    const log = await readFile(path.join(h.home, 'vms/bare/serial.log'), 'utf8');
    expect(log).toMatch(/gpu: features: \+virgl/);
    const { pid } = await json<Vm>(h, ['status', 'bare']);
    const renderers = existsSync('/dev/dri') ? 'renderD' : '/dev/null';
    expect((await argvOf(pid!))!.join(' ')).toContain(`egl-headless,rendernode=${renderers}`);
    await ok(h, ['stop', 'bare', '--force']);
  });

  it('gives a 2D guest a display device without virgl', async () => {
    const h = home();
    await createGuest(h, 'flat', ['--graphics', 'virtio-vga']);
    await ok(h, ['start', 'flat']);
    await waitForReady(h, 'flat');
    const log = await readFile(path.join(h.home, 'vms/flat/serial.log'), 'utf8');
    expect(log).toMatch(/gpu: features: -virgl/);
    await ok(h, ['stop', 'flat', '--force']);
  });

  it('refuses an unknown graphics device before touching disk', async () => {
    const h = home();
    const r = await cli(h, ['create', 'bad', '--graphics', 'cirrus']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/graphics\.device/);
    expect(await json(h, ['list'])).toEqual([]);
  });
});

/** Runs an X server without a screen (Xvfb) on a free display number; stopped by pid. */
async function xServer(): Promise<{ display: string; stop: () => void }> {
  for (let n = 90 + Math.floor(Math.random() * 100); ; n++) {
    if (existsSync(`/tmp/.X11-unix/X${n}`) || existsSync(`/tmp/.X${n}-lock`)) continue;
    const x = spawn('Xvfb', [`:${n}`, '-screen', '0', '1280x800x24', '-nolisten', 'tcp'], {
      stdio: 'ignore',
    });
    const stop = () => void (x.exitCode === null && x.kill('SIGKILL'));
    try {
      await waitFor('Xvfb to listen', () => existsSync(`/tmp/.X11-unix/X${n}`) || undefined, 10_000);
    } catch (e) {
      stop();
      throw e;
    }
    return { display: `:${n}`, stop };
  }
}

/** The top-level windows on an X display, by their titles (xwininfo). */
const windowTitles = async (display: string) =>
  (await promisify(execFile)('xwininfo', ['-display', display, '-root', '-children'], { timeout: 5000 }))
    .stdout;

describe("a VM shown in a window on the host's own screen", () => {
  it('draws virgl 3D in a window there beside the web console; where the daemon has no screen, says what to do', async () => {
    const h = home();
    delete h.env.DISPLAY;
    delete h.env.WAYLAND_DISPLAY;
    await createGuest(h, 'win', ['--graphics', 'virtio-vga-gl', '--window']);
    expect(await ok(h, ['status', 'win'])).toMatch(
      /Graphics\s+virtio-vga-gl \(also in a window on the host's screen\)/,
    );
    const refused = await cli(h, ['start', 'win']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /VM "win" shows in a window on this host's screen, but the daemon has no display \(neither WAYLAND_DISPLAY nor DISPLAY is set\): start phyllomed from the graphical session, or turn its window off \(phyllome set win --window off\)/,
    );
    expect(await json<Vm>(h, ['status', 'win'])).toMatchObject({ state: 'stopped' });
    expect(existsSync(path.join(h.run, 'vms/win/qemu.pid'))).toBe(false);
    const headless = await hostCheck(h);
    expect(headless.findings.find((f) => f.id === 'local-display')?.title).toMatch(/web console/);

    // The daemon starts again inside a graphical session (an X server of the test's own).
    await stopDaemon(h);
    const x = await xServer();
    try {
      h.env.DISPLAY = x.display;
      const check = await hostCheck(h);
      expect(check.findings.find((f) => f.id === 'local-display')?.title).toContain(`(X11 ${x.display})`);
      expect(check.plans.linux!.find((s) => s.kind === 'virtio-virgl')?.graphics).toEqual({
        device: 'virtio-vga-gl',
        window: true,
      });
      await ok(h, ['start', 'win']);
      await waitForReady(h, 'win');
      const log = await readFile(path.join(h.home, 'vms/win/serial.log'), 'utf8');
      expect(log).toMatch(/gpu: features: \+virgl/);
      const { pid } = await json<Vm>(h, ['status', 'win']);
      expect((await argvOf(pid!))!.join(' ')).toContain('-display gtk,gl=on,window-close=off -vnc unix:');
      await waitFor(
        'the window on the X screen',
        async () => /"QEMU \(win\)/.test(await windowTitles(x.display)) || undefined,
      );
      expect(await vncGreeting(h, 'win')).toMatch(/^RFB 003\.00\d\n$/);
      const busy = await cli(h, ['set', 'win', '--window', 'off']);
      expect(busy.stderr).toMatch(
        /stop VM "win" to turn its window off: QEMU opens its display only at start/,
      );
      expect(await json<Vm>(h, ['stop', 'win'])).toMatchObject({ state: 'stopped', forced: false });
      expect(await windowTitles(x.display)).not.toMatch(/"QEMU \(win\)/);
    } finally {
      x.stop();
    }
    // Off again: the off-screen renderer gets a render node (none on this host: llvmpipe).
    const off = await json<Vm>(h, ['set', 'win', '--window', 'off', '--json']);
    expect(off.spec.graphics).toEqual({ device: 'virtio-vga-gl', renderNode: '/dev/null' });
  });
});
