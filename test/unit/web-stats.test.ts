import { describe, expect, it } from 'vitest';
import {
  formatValue,
  graphs,
  keepWindow,
  nicLabel,
  WINDOW_MS,
  type StatsSample,
} from '../../web/src/stats.js';

const sample = (at: number, over: Partial<StatsSample> = {}): StatsSample => ({
  at,
  cpu: { percent: 12.34 },
  memory: { rssBytes: 300 * 2 ** 20, configuredBytes: 256 * 2 ** 20, balloonBytes: null },
  disk: { readBps: 2048, writeBps: null },
  net: { rxBytes: null, rxBps: null, txBps: null },
  nics: [
    {
      index: 0,
      rxBps: null,
      txBps: null,
      note: 'not counted: user-mode networking (passt) has no per-guest counters',
    },
  ],
  ...over,
});

describe("the VM page's graphs", () => {
  it('keep the last two minutes of samples, in order', () => {
    let h: StatsSample[] = [];
    for (let t = 0; t <= 200_000; t += 1000) h = keepWindow(h, sample(t));
    expect(h[0]!.at).toBe(200_000 - WINDOW_MS);
    expect(h.at(-1)!.at).toBe(200_000);
    expect(h).toHaveLength(121);
    // A sample from a restarted stream replaces what would come after it rather than going back in time.
    expect(keepWindow(h, sample(150_000)).at(-1)!.at).toBe(150_000);
  });

  it("say each graph's latest value in words, and why the network has none on user-mode NICs", () => {
    const { times, graphs: list } = graphs([sample(1000), sample(2000)]);
    expect(times).toEqual([1, 2]);
    expect(list.map((g) => [g.title, g.now])).toEqual([
      ['CPU', '12.3 % of one host core'],
      ['Memory', '300.0 MiB resident, guest has 256.0 MiB'],
      ['Disk', 'read 2.0 KiB/s, write –'],
      ['Network', 'not counted: user-mode networking (passt) has no per-guest counters'],
    ]);
    const tap = graphs([
      sample(1000, {
        net: { rxBytes: 10, rxBps: 1536, txBps: 0 },
        nics: [{ index: 0, rxBps: 1536, txBps: 0 }],
      }),
    ]);
    expect(tap.graphs[3]!.now).toBe('received 1.5 KiB/s, sent 0 B/s');
    expect(graphs([]).graphs[0]!.now).toBe('– of one host core');
    expect(formatValue('bytes', 5 * 2 ** 30)).toBe('5.0 GiB');
  });

  it('draw a series per NIC, each direction on its own graph, where a VM has several', () => {
    const labels = [{ net: { type: 'user' } }, { net: { type: 'bridge', bridge: 'br0' } }].map(nicLabel);
    expect(labels).toEqual(['NIC 0 (user)', 'NIC 1 (bridge br0)']);
    const two = (at: number, rx: number) =>
      sample(at, {
        net: { rxBytes: 10, rxBps: rx, txBps: 0 },
        nics: [
          { index: 0, rxBps: null, txBps: null, note: 'not counted: user-mode networking (passt)' },
          { index: 1, rxBps: rx, txBps: 512 },
        ],
      });
    // The first sample had only the counted NIC: the other's series starts empty.
    const first = { ...two(1000, 1024), nics: [{ index: 1, rxBps: 1024, txBps: 512 }] };
    const { graphs: list } = graphs([first, two(2000, 2048)], labels);
    expect(list.map((g) => g.title)).toEqual(['CPU', 'Memory', 'Disk', 'Network received', 'Network sent']);
    const [received, sent] = list.slice(3);
    expect(received!.series).toEqual([
      { label: 'NIC 0 (user)', values: [null, null] },
      { label: 'NIC 1 (bridge br0)', values: [1024, 2048] },
    ]);
    expect(received!.now).toBe('NIC 0 (user): not counted; NIC 1 (bridge br0): 2.0 KiB/s');
    expect(sent!.series[1]!.values).toEqual([512, 512]);
    expect(sent!.now).toBe('NIC 0 (user): not counted; NIC 1 (bridge br0): 512 B/s');
    // Without a label from the spec (a NIC added since) it is named by its index.
    expect(graphs([two(1000, 0)]).graphs[3]!.series.map((s) => s.label)).toEqual(['NIC 0', 'NIC 1']);
    // One NIC keeps the single total graph.
    expect(graphs([sample(1000)], labels).graphs.map((g) => g.title)).toEqual([
      'CPU',
      'Memory',
      'Disk',
      'Network',
    ]);
  });

  it("show the guest's memory beside the resident set where the VM has a balloon", () => {
    const mib = 2 ** 20;
    const memory = (balloonBytes: number | null) =>
      graphs([sample(1000, { memory: { rssBytes: 300 * mib, configuredBytes: 256 * mib, balloonBytes } })])
        .graphs[1]!;
    expect(memory(null).series.map((s) => s.label)).toEqual(['Resident']);
    const full = memory(256 * mib);
    expect(full.series).toEqual([
      { label: 'Resident', values: [300 * mib] },
      { label: 'Guest', values: [256 * mib] },
    ]);
    expect(full.now).toBe('300.0 MiB resident, guest has 256.0 MiB');
    expect(memory(192 * mib).now).toBe('300.0 MiB resident, guest has 192.0 MiB of 256.0 MiB (balloon)');
    // A query the balloon did not answer is a gap in its line, not the end of it.
    const gap = graphs([
      sample(1000, { memory: { rssBytes: mib, configuredBytes: 256 * mib, balloonBytes: 192 * mib } }),
      sample(2000),
    ]).graphs[1]!;
    expect(gap.series[1]).toEqual({ label: 'Guest', values: [192 * mib, null] });
  });
});
