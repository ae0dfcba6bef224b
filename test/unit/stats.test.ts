import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  blockTotals,
  nicCounters,
  nicReading,
  parseProcStatTicks,
  parseVmRss,
  toSample,
  type Reading,
  type StatsSample,
} from '../../src/daemon/stats.js';
import { StatsSampler } from '../../src/daemon/stats-sampler.js';
import { statsText } from '../../src/cli/format.js';
import type { QmpClient } from '../../src/qemu/qmp.js';

// Captured from a QEMU 7.2 (Debian 12) with a virtio-blk qcow2 disk, an empty CD-ROM and a balloon.
const fixture = (name: string) =>
  readFileSync(path.join(import.meta.dirname, '../fixtures/stats', name), 'utf8');

describe('VM statistics parsers', () => {
  it('reads utime + stime from /proc/PID/stat, whatever the command name holds', () => {
    const stat = fixture('qemu-proc-stat.txt');
    expect(parseProcStatTicks(stat)).toBe(15 + 18);
    // A name with spaces and a parenthesis cannot shift the fields.
    expect(parseProcStatTicks(stat.replace('(qemu-system-x86)', '(a) b (c)'))).toBe(33);
    expect(() => parseProcStatTicks('garbage')).toThrow(/unexpected/);
  });

  it('reads VmRSS from /proc/PID/status in bytes', () => {
    expect(parseVmRss(fixture('qemu-proc-status.txt'))).toBe(35868 * 1024);
    expect(() => parseVmRss('Name:\tqemu\n')).toThrow(/VmRSS/);
  });

  it("sums query-blockstats' top-level drives only (their parent nodes count the same I/O again)", () => {
    const answer: unknown = JSON.parse(fixture('query-blockstats.json'));
    // disk0 read 512 bytes (its file node "f0" holds 0 here, but would repeat them), the CD-ROM 108.
    expect(blockTotals(answer)).toEqual({ readBytes: 512 + 108, writeBytes: 0 });
    expect(blockTotals([])).toEqual({ readBytes: 0, writeBytes: 0 });
    expect(() => blockTotals({ error: 'x' })).toThrow(/list/);
  });

  it("counts tap and macvtap NICs from the guest's side, and user-mode ones not at all", () => {
    const sysfs = { rx: '1000\n', tx: '25\n' };
    const tap = nicCounters({ kind: 'tap', ifname: 'phy0', bridge: 'br0' });
    expect(nicReading(0, tap, sysfs)).toEqual({ index: 0, rxBytes: 25, txBytes: 1000 });
    const macvtap = nicCounters({ kind: 'macvtap', ifname: 'mvt0', device: 'eth0', mac: 'm', fd: 3 });
    expect(nicReading(1, macvtap, sysfs)).toEqual({ index: 1, rxBytes: 1000, txBytes: 25 });
    expect(nicReading(2, tap, undefined)).toMatchObject({ rxBytes: null, note: 'phy0 is gone' });
    for (const user of [
      nicCounters({ kind: 'slirp', forwards: [] }),
      nicCounters({ kind: 'passt', socket: '/s', forwards: [], hostLoopback: false }),
    ]) {
      expect(nicReading(0, user, undefined)).toMatchObject({
        rxBytes: null,
        txBytes: null,
        note: expect.stringMatching(/^not counted: user-mode/),
      });
    }
  });
});

describe('VM statistics samples', () => {
  const vm = { name: 'web', configuredBytes: 256 * 2 ** 20, hostCores: 2 };
  const reading = (over: Partial<Reading>): Reading => ({
    mono: 0,
    at: 1_700_000_000_000,
    cpuTicks: 0,
    rssBytes: 100,
    balloonBytes: null,
    disk: { readBytes: 0, writeBytes: 0 },
    nics: [],
    ...over,
  });

  it('has no rates in the first sample, only the totals', () => {
    const s = toSample(vm, undefined, reading({ disk: { readBytes: 5, writeBytes: 6 } }));
    expect(s).toMatchObject({
      vm: 'web',
      intervalMs: null,
      cpu: { percent: null, hostCores: 2 },
      memory: { rssBytes: 100, configuredBytes: 256 * 2 ** 20, balloonBytes: null },
      disk: { readBytes: 5, writeBytes: 6, readBps: null, writeBps: null },
      net: { rxBytes: null, txBytes: null, rxBps: null, txBps: null },
    });
  });

  it('turns counter deltas into CPU percent of one core and bytes per second', () => {
    const prev = reading({
      cpuTicks: 1000,
      disk: { readBytes: 1000, writeBytes: 0 },
      nics: [
        { index: 0, rxBytes: 0, txBytes: 0 },
        { index: 1, rxBytes: null, txBytes: null, note: 'n' },
      ],
    });
    const cur = reading({
      mono: 2000,
      at: prev.at + 2000,
      // 300 ticks of 10 ms in 2 s: 1.5 cores busy.
      cpuTicks: 1300,
      disk: { readBytes: 5000, writeBytes: 2048 },
      nics: [
        { index: 0, rxBytes: 400, txBytes: 200 },
        { index: 1, rxBytes: null, txBytes: null, note: 'n' },
      ],
    });
    const s = toSample(vm, prev, cur);
    expect(s.intervalMs).toBe(2000);
    expect(s.cpu.percent).toBeCloseTo(150);
    expect(s.disk).toEqual({ readBytes: 5000, writeBytes: 2048, readBps: 2000, writeBps: 1024 });
    expect(s.net).toEqual({ rxBytes: 400, txBytes: 200, rxBps: 200, txBps: 100 });
    expect(s.nics[1]).toEqual({
      index: 1,
      rxBytes: null,
      txBytes: null,
      note: 'n',
      rxBps: null,
      txBps: null,
    });
  });

  it('gives no rate for a counter that went back (a disk unplugged) rather than a negative one', () => {
    const prev = reading({ disk: { readBytes: 9000, writeBytes: 10 } });
    const s = toSample(vm, prev, reading({ mono: 1000, disk: { readBytes: 100, writeBytes: 10 } }));
    expect(s.disk.readBps).toBeNull();
    expect(s.disk.writeBps).toBe(0);
  });
});

describe('the stats sampler', () => {
  const blockstats: unknown = JSON.parse(fixture('query-blockstats.json'));

  it('reads only while watched, and ends its watchers when the VM stops', async () => {
    let running = true;
    let queries = 0;
    const qmp = {
      execute: () => {
        queries++;
        return Promise.resolve(blockstats);
      },
    } as unknown as QmpClient;
    // This test's own process stands in for QEMU: its /proc files have the same form.
    const sampler = new StatsSampler((name) => {
      if (!running) throw new Error(`VM "${name}" is stopped`);
      return {
        pid: process.pid,
        qmp,
        nets: [{ kind: 'slirp', forwards: [] }],
        configuredBytes: 1,
        balloon: false,
      };
    });

    const got: StatsSample[] = [];
    const unwatch = sampler.watch('vm', { sample: (s) => got.push(s), end: () => undefined });
    const latest = await sampler.latest('vm');
    expect(latest.intervalMs).toBeGreaterThan(900);
    expect(latest.memory.rssBytes).toBeGreaterThan(0);
    expect(latest.disk.readBytes).toBe(620);
    expect(latest.nics[0]?.note).toMatch(/slirp/);
    expect(got.length).toBe(2);

    unwatch();
    let after = queries;
    await new Promise((r) => setTimeout(r, 1500));
    expect(queries).toBe(after);
    // A one-off read (GET) leaves nothing sampling behind it either.
    await sampler.latest('vm');
    after = queries;
    await new Promise((r) => setTimeout(r, 1500));
    expect(queries).toBe(after);

    const ended = new Promise<string>((resolve) =>
      sampler.watch('vm', { sample: () => undefined, end: resolve }),
    );
    running = false;
    expect(await ended).toMatch(/stopped sampling VM "vm": VM "vm" is stopped/);
    expect(() => sampler.watch('vm', { sample: () => undefined, end: () => undefined })).toThrow(/stopped/);
  });
});

describe('phyllome stats', () => {
  it('prints each resource with its total and its rate, and why a NIC has none', () => {
    const at = 1_700_000_000_000;
    const prev: Reading = {
      mono: 0,
      at,
      cpuTicks: 100,
      rssBytes: 0,
      balloonBytes: null,
      disk: { readBytes: 0, writeBytes: 0 },
      nics: [{ index: 0, rxBytes: 0, txBytes: 0 }],
    };
    const cur: Reading = {
      ...prev,
      mono: 1000,
      at: at + 1000,
      cpuTicks: 125,
      rssBytes: 200 * 2 ** 20,
      balloonBytes: 128 * 2 ** 20,
      disk: { readBytes: 3 * 2 ** 20, writeBytes: 2048 },
      nics: [
        { index: 0, rxBytes: 1024, txBytes: 512 },
        nicReading(
          1,
          nicCounters({ kind: 'passt', socket: '/s', forwards: [], hostLoopback: false }),
          undefined,
        ),
      ],
    };
    const s = toSample({ name: 'web', configuredBytes: 256 * 2 ** 20, hostCores: 2 }, prev, cur);
    expect(statsText(s).split('\n')).toEqual([
      'CPU      25.0 % of one host core (2 host cores)',
      'Memory   200.0 MiB resident, the guest has 256.0 MiB (balloon at 128.0 MiB)',
      'Disk     read 3.0 MiB (3072.0 KiB/s), written 0.0 MiB (2.0 KiB/s)',
      'Network  NIC 0: received 0.0 MiB (1.0 KiB/s), sent 0.0 MiB (0.5 KiB/s)',
      '         NIC 1: not counted: user-mode networking (passt) has no per-guest counters',
    ]);
  });
});
