import { describe, expect, it } from 'vitest';
import { BusyError, KeyedLock } from '../../src/daemon/lock.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('per-VM lock', () => {
  it('never interleaves two operations on one key', async () => {
    const lock = new KeyedLock();
    const trace: string[] = [];
    const op = (id: string) => async () => {
      trace.push(`${id}:begin`);
      await sleep(30);
      trace.push(`${id}:end`);
      return id;
    };
    const results = await Promise.all([
      lock.run('vm1', 'a', 1000, op('a')),
      lock.run('vm1', 'b', 1000, op('b')),
      lock.run('vm1', 'c', 1000, op('c')),
    ]);
    expect(results).toEqual(['a', 'b', 'c']);
    expect(trace).toEqual(['a:begin', 'a:end', 'b:begin', 'b:end', 'c:begin', 'c:end']);
  });

  it('lets different keys run at once', async () => {
    const lock = new KeyedLock();
    const trace: string[] = [];
    await Promise.all(
      ['x', 'y'].map((k) =>
        lock.run(k, 'op', 1000, async () => {
          trace.push(`${k}:begin`);
          await sleep(20);
          trace.push(`${k}:end`);
        }),
      ),
    );
    expect(trace.slice(0, 2).sort()).toEqual(['x:begin', 'y:begin']);
  });

  it('gives a clear busy error after waiting too long, and keeps order for the rest', async () => {
    const lock = new KeyedLock();
    const trace: string[] = [];
    const slow = lock.run('vm1', 'start', 1000, async () => {
      await sleep(150);
      trace.push('slow');
    });
    const impatient = lock.run('vm1', 'stop', 20, async () => trace.push('impatient'));
    const patient = lock.run('vm1', 'pause', 1000, async () => trace.push('patient'));
    await expect(impatient).rejects.toThrow(BusyError);
    await expect(impatient).rejects.toThrow('vm1 is busy (start in progress)');
    await Promise.all([slow, patient]);
    expect(trace).toEqual(['slow', 'patient']);
  });

  it('releases the key when an operation fails', async () => {
    const lock = new KeyedLock();
    await expect(lock.run('k', 'boom', 100, async () => Promise.reject(new Error('boom')))).rejects.toThrow(
      'boom',
    );
    await expect(lock.run('k', 'next', 100, async () => 'ok')).resolves.toBe('ok');
  });
});
