// Live VM statistics, the adapter: reads /proc, sysfs and QMP once a second per watched VM.
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import type { NicWiring } from '../net/wiring.js';
import type { QmpClient } from '../qemu/qmp.js';
import {
  blockTotals,
  nicCounters,
  nicReading,
  parseProcStatTicks,
  parseVmRss,
  toSample,
  type Reading,
  type StatsSample,
} from './stats.js';

/** What the sampler reads of a running VM (VmManager.statsTarget); that call throws once it stops. */
export interface StatsTarget {
  pid: number;
  qmp: QmpClient;
  nets: NicWiring[];
  configuredBytes: number;
  balloon: boolean;
}

export interface StatsWatcher {
  sample: (s: StatsSample) => void;
  /** The VM stopped (or cannot be read): no more samples. */
  end: (why: string) => void;
}

interface Watch {
  watchers: Set<StatsWatcher>;
  timer?: NodeJS.Timeout;
  prev?: Reading;
  latest?: StatsSample;
}

const INTERVAL_MS = 1000;
/** How long GET waits for a sample with rates (two readings) before giving up. */
const FIRST_SAMPLE_TIMEOUT_MS = 5000;

async function readSysfs(ifname: string): Promise<{ rx: string; tx: string } | undefined> {
  const dir = `/sys/class/net/${ifname}/statistics`;
  try {
    const [rx, tx] = await Promise.all([
      readFile(`${dir}/rx_bytes`, 'utf8'),
      readFile(`${dir}/tx_bytes`, 'utf8'),
    ]);
    return { rx, tx };
  } catch {
    return undefined;
  }
}

async function read(t: StatsTarget): Promise<Reading> {
  const [stat, status, blocks, balloon, nics] = await Promise.all([
    readFile(`/proc/${t.pid}/stat`, 'utf8'),
    readFile(`/proc/${t.pid}/status`, 'utf8'),
    t.qmp.execute('query-blockstats'),
    t.balloon ? t.qmp.execute<{ actual: number }>('query-balloon').catch(() => undefined) : undefined,
    Promise.all(
      t.nets.map(async (wiring, index) => {
        const counters = nicCounters(wiring);
        return nicReading(
          index,
          counters,
          counters.kind === 'sysfs' ? await readSysfs(counters.ifname) : undefined,
        );
      }),
    ),
  ]);
  return {
    mono: performance.now(),
    at: Date.now(),
    cpuTicks: parseProcStatTicks(stat),
    rssBytes: parseVmRss(status),
    balloonBytes: balloon?.actual ?? null,
    disk: blockTotals(blocks),
    nics,
  };
}

/**
 * Samples a VM only while someone watches it: the first watcher starts its timer, the last one to
 * leave (or the VM stopping) ends it, so an idle daemon reads nothing.
 */
export class StatsSampler {
  private readonly watches = new Map<string, Watch>();

  constructor(private readonly target: (name: string) => StatsTarget) {}

  /** Samples every second until the returned function is called; throws at once if the VM does not run. */
  watch(name: string, watcher: StatsWatcher): () => void {
    let w = this.watches.get(name);
    if (!w) {
      this.target(name);
      w = { watchers: new Set() };
      this.watches.set(name, w);
      void this.tick(name, w);
    }
    w.watchers.add(watcher);
    return () => {
      w.watchers.delete(watcher);
      if (!w.watchers.size) this.stop(name, w);
    };
  }

  /** The latest sample with rates: the running one's, or one taken now (about a second). */
  latest(name: string): Promise<StatsSample> {
    const ready = this.watches.get(name)?.latest;
    if (ready && ready.intervalMs !== null) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const done = (result: StatsSample | Error) => {
        clearTimeout(timer);
        unwatch();
        if (result instanceof Error) reject(result);
        else resolve(result);
      };
      const unwatch = this.watch(name, {
        sample: (s) => s.intervalMs !== null && done(s),
        end: (why) => done(new Error(why)),
      });
      const timer = setTimeout(
        () => done(new Error(`no statistics from VM "${name}" within ${FIRST_SAMPLE_TIMEOUT_MS / 1000} s`)),
        FIRST_SAMPLE_TIMEOUT_MS,
      );
    });
  }

  private stop(name: string, w: Watch): void {
    clearTimeout(w.timer);
    if (this.watches.get(name) === w) this.watches.delete(name);
  }

  private async tick(name: string, w: Watch): Promise<void> {
    const started = performance.now();
    let sample: StatsSample;
    try {
      const t = this.target(name);
      const reading = await read(t);
      sample = toSample(
        { name, configuredBytes: t.configuredBytes, hostCores: os.availableParallelism() },
        w.prev,
        reading,
      );
      w.prev = reading;
    } catch (e) {
      this.stop(name, w);
      for (const watcher of w.watchers) watcher.end(`stopped sampling VM "${name}": ${(e as Error).message}`);
      return;
    }
    if (this.watches.get(name) !== w) return;
    w.latest = sample;
    for (const watcher of w.watchers) watcher.sample(sample);
    // The last watcher may have left on this very sample (a GET's one-off watch).
    if (this.watches.get(name) !== w) return;
    // The next reading a second after this one started, however long this one took.
    w.timer = setTimeout(
      () => void this.tick(name, w),
      Math.max(0, INTERVAL_MS - (performance.now() - started)),
    ).unref(); // the open WebSocket, not the sampling, is what keeps the daemon busy
  }
}
