import { describe, expect, it } from 'vitest';
import { formatValue, graphs, keepWindow, WINDOW_MS, type StatsSample } from '../../web/src/stats.js';

const sample = (at: number, over: Partial<StatsSample> = {}): StatsSample => ({
  at,
  cpu: { percent: 12.34 },
  memory: { rssBytes: 300 * 2 ** 20, configuredBytes: 256 * 2 ** 20 },
  disk: { readBps: 2048, writeBps: null },
  net: { rxBytes: null, rxBps: null, txBps: null },
  nics: [{ note: 'not counted: user-mode networking (passt) has no per-guest counters' }],
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
    const tap = graphs([sample(1000, { net: { rxBytes: 10, rxBps: 1536, txBps: 0 }, nics: [{}] })]);
    expect(tap.graphs[3]!.now).toBe('received 1.5 KiB/s, sent 0 B/s');
    expect(graphs([]).graphs[0]!.now).toBe('– of one host core');
    expect(formatValue('bytes', 5 * 2 ** 30)).toBe('5.0 GiB');
  });
});
