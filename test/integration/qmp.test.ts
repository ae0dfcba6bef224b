import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QmpClient, QmpError } from '../../src/qemu/qmp.js';
import { waitFor } from './helpers.js';

let dir: string;
let qemu: ChildProcess;
let socket: string;

const exited = (child: ChildProcess) =>
  new Promise<void>((r) =>
    child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r()),
  );

beforeEach(async () => {
  dir = await mkdtemp('/tmp/phq-');
  socket = path.join(dir, 'qmp.sock');
  qemu = spawn(
    'qemu-system-x86_64',
    [
      '-nodefaults',
      '-no-user-config',
      '-machine',
      'none',
      '-display',
      'none',
      '-S',
      '-chardev',
      `socket,id=qmp,path=${socket},server=on,wait=off`,
      '-mon',
      'chardev=qmp,mode=control',
    ],
    { stdio: 'ignore' },
  );
});

afterEach(async () => {
  if (qemu.exitCode === null && qemu.signalCode === null) {
    qemu.kill('SIGKILL');
    await exited(qemu);
  }
  await rm(dir, { recursive: true, force: true });
});

const connect = () =>
  waitFor(
    'QMP to accept',
    () =>
      QmpClient.connect(socket, { connectTimeoutMs: 2000, commandTimeoutMs: 5000 }).catch(() => undefined),
    10_000,
  );

describe('QMP client against real QEMU', () => {
  it('negotiates, runs commands and reports events', async () => {
    const qmp = await connect();
    expect(qmp.version).toMatchObject({ version: { qemu: { major: expect.any(Number) } } });
    expect(await qmp.execute('query-status')).toMatchObject({ status: 'prelaunch', running: false });
    const resume = qmp.waitForEvent('RESUME', 5000);
    await qmp.execute('cont');
    expect((await resume).event).toBe('RESUME');
    const stop = qmp.waitForEvent('STOP', 5000);
    await qmp.execute('stop');
    await stop;
    expect(await qmp.execute('query-status')).toMatchObject({ status: 'paused' });
    qmp.close();
  });

  it('turns QEMU errors into QmpError with the class', async () => {
    const qmp = await connect();
    const err = await qmp.execute('no-such-command').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect(err).toMatchObject({
      qmpClass: 'CommandNotFound',
      message: expect.stringContaining('no-such-command'),
    });
    qmp.close();
  });

  it('times out a call QEMU does not answer', async () => {
    const qmp = await connect();
    process.kill(qemu.pid!, 'SIGSTOP');
    try {
      const started = Date.now();
      const err = await qmp.execute('query-status', undefined, { timeoutMs: 300 }).catch((e: unknown) => e);
      expect(err).toMatchObject({
        qmpClass: 'Timeout',
        message: expect.stringMatching(/did not answer within 300 ms/),
      });
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      process.kill(qemu.pid!, 'SIGCONT');
    }
    qmp.close();
  });

  it('fails a call at once, clearly, when QEMU exits mid-call', async () => {
    const qmp = await connect();
    // Stopped, QEMU cannot answer: the call is in flight when the process dies.
    process.kill(qemu.pid!, 'SIGSTOP');
    const call = qmp.execute('query-status', undefined, { timeoutMs: 10_000 });
    const started = Date.now();
    process.kill(qemu.pid!, 'SIGKILL');
    const err = await call.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect(err).toMatchObject({
      qmpClass: 'Disconnected',
      message: expect.stringMatching(/query-status failed: QEMU closed its monitor/),
    });
    expect(Date.now() - started).toBeLessThan(3000);
    // Later calls fail the same way without waiting.
    await expect(qmp.execute('query-status')).rejects.toThrow(/QEMU closed its monitor/);
  });

  it('fails to connect with a clear error when nothing listens', async () => {
    await expect(QmpClient.connect(path.join(dir, 'none.sock'), { connectTimeoutMs: 1000 })).rejects.toThrow(
      /cannot connect to QMP/,
    );
  });
});
