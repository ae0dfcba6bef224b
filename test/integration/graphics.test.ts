import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, createGuest, json, ok, useHome, waitForReady, type Vm } from './helpers.js';

const home = useHome();

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
    const greeting = await new Promise<string>((resolve, reject) => {
      const socket = net.createConnection(path.join(h.run, 'vms/gl/vnc.sock'));
      socket.once('data', (d) => {
        socket.destroy();
        resolve(d.toString());
      });
      socket.once('error', reject);
    });
    expect(greeting).toMatch(/^RFB 003\.00\d\n$/);
    expect(await json<Vm>(h, ['stop', 'gl'])).toMatchObject({ state: 'stopped', forced: false });
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
