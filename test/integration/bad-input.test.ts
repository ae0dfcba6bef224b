import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, cli, createGuest, destroyHome, guest, json, makeHome, ok, type TestHome } from './helpers.js';

let h: TestHome;

/** Every file under the home with a hash of its content: what "nothing on disk changed" means. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      // The daemon's own log grows with every request, and the running guest writes its serial log
      // (DHCP renewals) and passt its own when it likes: none of them is VM state.
      if (['phyllomed.log', 'serial.log'].includes(e.name) || /^passt-\d+\.log$/.test(e.name)) continue;
      if (e.isDirectory()) await walk(p);
      else
        out[path.relative(dir, p)] = createHash('sha256')
          .update(await readFile(p))
          .digest('hex');
    }
  };
  await walk(dir);
  return out;
}

function post(body: unknown): Promise<{ status: number; body: { error: { message: string } } }> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(
      {
        socketPath: path.join(h.run, 'phyllomed.sock'),
        method: 'POST',
        path: '/v1/vms',
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

beforeAll(async () => {
  h = await makeHome();
  await createGuest(h, 'keep');
  await ok(h, ['start', 'keep']);
});
afterAll(() => destroyHome(h));

describe('bad input gets a clear error and changes nothing', () => {
  const g = () => guest();

  const refused = async (args: string[], message: RegExp, code = 1) => {
    const before = await snapshot(h.home);
    const r = await cli(h, args);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(await snapshot(h.home)).toEqual(before);
  };

  it.each(['a,b', 'a=b', 'a/b', 'a\nb', '..', 'Upper', '-x'])('refuses the name %j', async (name) => {
    // Commander would take '-x' as an option; '--' makes it the name.
    await refused(
      ['create', '--kernel', g().kernel, '--', name],
      /invalid VM name .*lowercase letters, digits and "-"/,
    );
  });

  it('refuses unknown spec keys, naming where they are', async () => {
    const before = await snapshot(h.home);
    const top = await post({ name: 'x', kernal: '/boot/vmlinuz' });
    expect(top.status).toBe(400);
    expect(top.body.error.message).toMatch(/kernal/);
    const nested = await post({ name: 'x', boot: { kernel: g().kernel, initramfs: '/i' } });
    expect(nested.status).toBe(400);
    expect(nested.body.error.message).toMatch(/boot.*initramfs|initramfs.*boot/);
    expect(await snapshot(h.home)).toEqual(before);
  });

  it('refuses a missing kernel file, naming it', async () => {
    await refused(
      ['create', 'nokernel', '--kernel', '/nonexistent/vmlinuz'],
      /boot\.kernel: \/nonexistent\/vmlinuz does not exist/,
    );
  });

  it('refuses a missing disk file, naming it', async () => {
    await refused(
      ['create', 'nodisk', '--disk', '/nonexistent/disk.qcow2'],
      /disks\[0\]\.path: \/nonexistent\/disk\.qcow2 does not exist/,
    );
  });

  it.each([
    ['0', /must be greater than zero/],
    ['abc', /"abc" is not a size: write a number with an optional unit, like 512M or 4G/],
  ])('refuses memory %j', async (memory, message) => {
    await refused(['create', 'mem', '--kernel', g().kernel, '--memory', memory], message);
  });

  it('refuses a second VM with the same name', async () => {
    await refused(['create', 'keep', '--kernel', g().kernel], /a VM named "keep" already exists/);
  });

  it('refuses to start a running VM', async () => {
    const { pid } = await json<{ pid: number }>(h, ['status', 'keep']);
    await refused(['start', 'keep'], /VM "keep" is already running: stop it first/);
    expect(alive(pid)).toBe(true);
  });

  it('refuses to delete a running VM without --force', async () => {
    await refused(['delete', 'keep'], /VM "keep" is running: stop it first, or delete with --force/);
    expect((await json<{ state: string }>(h, ['status', 'keep'])).state).toBe('running');
  });

  it('says when a VM does not exist, with exit code 4', async () => {
    await refused(['start', 'ghost'], /no VM named "ghost": see "phyllome list"/, 4);
  });

  it('refuses pause/resume in the wrong state', async () => {
    await refused(['resume', 'keep'], /VM "keep" is running; this needs it to be paused/);
  });

  it('reports a usage error with exit code 2', async () => {
    const r = await cli(h, ['start']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/missing required argument 'name'/);
  });
});
