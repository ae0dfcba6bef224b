// Live VM statistics, the pure part: parsers for /proc and QMP answers, and samples from two readings.
import type { NicWiring } from '../net/wiring.js';

/**
 * The kernel reports utime/stime in USER_HZ clock ticks, which Linux fixes at 100 for userspace on
 * every architecture (sysconf(_SC_CLK_TCK)); Node has no sysconf, and the value is part of the ABI.
 */
export const CLOCK_TICKS_PER_S = 100;

/** Counters read at one instant; a sample is the difference between two of them. */
export interface Reading {
  /** Monotonic milliseconds (performance.now), for rates. */
  mono: number;
  /** Wall-clock milliseconds, for the page's time axis. */
  at: number;
  /** utime + stime of the QEMU process, in clock ticks. */
  cpuTicks: number;
  rssBytes: number;
  balloonBytes: number | null;
  disk: { readBytes: number; writeBytes: number };
  nics: NicReading[];
}

/** One NIC's counters as the guest sees them; null where the host cannot count them (see nicCounters). */
export interface NicReading {
  index: number;
  rxBytes: number | null;
  txBytes: number | null;
  /** Why there are no counters. */
  note?: string;
}

export interface NicSample extends NicReading {
  rxBps: number | null;
  txBps: number | null;
}

/** What the stats API sends: once a second per VM while someone watches. */
export interface StatsSample {
  vm: string;
  /** Wall-clock milliseconds since the epoch. */
  at: number;
  /** Milliseconds since the previous reading; null for the first. */
  intervalMs: number | null;
  /** CPU time of the QEMU process in percent of one host core (200 = two cores busy). */
  cpu: { percent: number | null; hostCores: number };
  memory: { rssBytes: number; configuredBytes: number; balloonBytes: number | null };
  disk: { readBytes: number; writeBytes: number; readBps: number | null; writeBps: number | null };
  /** Totals of the NICs that can be counted; null when none can. */
  net: { rxBytes: number | null; txBytes: number | null; rxBps: number | null; txBps: number | null };
  nics: NicSample[];
}

/** utime + stime (fields 14 and 15) of /proc/PID/stat; the command name may hold spaces and parentheses. */
export function parseProcStatTicks(text: string): number {
  const afterName = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // afterName[0] is field 3 (state), so field N is afterName[N - 3].
  const utime = Number(afterName[11]);
  const stime = Number(afterName[12]);
  if (!Number.isInteger(utime) || !Number.isInteger(stime)) {
    throw new Error(`unexpected /proc/PID/stat: ${text.slice(0, 80)}`);
  }
  return utime + stime;
}

/** VmRSS of /proc/PID/status, in bytes (the kernel writes kB, meaning KiB). */
export function parseVmRss(text: string): number {
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(text)?.[1];
  if (kib === undefined) throw new Error('no VmRSS in /proc/PID/status');
  return Number(kib) * 1024;
}

interface BlockStats {
  stats?: { rd_bytes?: number; wr_bytes?: number };
}

/**
 * Bytes the guest read and wrote, over every drive: the top-level entries of query-blockstats are the
 * devices' backends; their `parent`/`backing` nodes count the same I/O again (and qcow2 metadata), so
 * only the top level is summed.
 */
export function blockTotals(answer: unknown): { readBytes: number; writeBytes: number } {
  if (!Array.isArray(answer)) throw new Error('query-blockstats did not answer a list');
  let readBytes = 0;
  let writeBytes = 0;
  for (const entry of answer as BlockStats[]) {
    readBytes += entry.stats?.rd_bytes ?? 0;
    writeBytes += entry.stats?.wr_bytes ?? 0;
  }
  return { readBytes, writeBytes };
}

/** Where a NIC's traffic can be counted on the host, in the guest's direction. */
export type NicCounters =
  { kind: 'sysfs'; ifname: string; swapped: boolean } | { kind: 'none'; note: string };

/**
 * QEMU 7.2 has no QMP command for netdev counters, and /proc/PID/net/dev lists the host's network
 * namespace, not the guest's. A tap or macvtap is a host interface with its own counters; user-mode
 * backends (passt, slirp) turn the guest's frames into ordinary host sockets with nothing to read, so
 * they get null rather than a guess.
 */
export function nicCounters(wiring: NicWiring): NicCounters {
  switch (wiring.kind) {
    case 'tap':
      // What QEMU writes into the tap the kernel counts as received: the guest's tx is the tap's rx.
      return { kind: 'sysfs', ifname: wiring.ifname, swapped: true };
    case 'macvtap':
      // A macvtap counts from the guest's side: frames for the guest are its rx, the guest's its tx.
      return { kind: 'sysfs', ifname: wiring.ifname, swapped: false };
    case 'passt':
    case 'slirp':
      return {
        kind: 'none',
        note: `not counted: user-mode networking (${wiring.kind}) has no per-guest counters`,
      };
  }
}

/** The guest's rx/tx from an interface's /sys/class/net/IF/statistics/{rx,tx}_bytes. */
export function nicReading(
  index: number,
  counters: NicCounters,
  sysfs: { rx: string; tx: string } | undefined,
): NicReading {
  if (counters.kind === 'none') return { index, rxBytes: null, txBytes: null, note: counters.note };
  if (!sysfs) return { index, rxBytes: null, txBytes: null, note: `${counters.ifname} is gone` };
  const rx = Number(sysfs.rx.trim());
  const tx = Number(sysfs.tx.trim());
  return counters.swapped ? { index, rxBytes: tx, txBytes: rx } : { index, rxBytes: rx, txBytes: tx };
}

/** Bytes per second between two counter values; null when unknown or when the counter went back (a disk unplugged). */
function rate(before: number | null | undefined, now: number | null, seconds: number): number | null {
  if (before === null || before === undefined || now === null || seconds <= 0 || now < before) return null;
  return (now - before) / seconds;
}

function sum(values: (number | null)[]): number | null {
  const known = values.filter((v): v is number => v !== null);
  return known.length ? known.reduce((a, b) => a + b, 0) : null;
}

/** A sample from the current reading and the one before it (none for the first: no rates yet). */
export function toSample(
  vm: { name: string; configuredBytes: number; hostCores: number },
  prev: Reading | undefined,
  cur: Reading,
): StatsSample {
  const seconds = prev ? (cur.mono - prev.mono) / 1000 : 0;
  const nics = cur.nics.map((n): NicSample => {
    const before = prev?.nics.find((p) => p.index === n.index);
    return {
      ...n,
      rxBps: rate(before?.rxBytes, n.rxBytes, seconds),
      txBps: rate(before?.txBytes, n.txBytes, seconds),
    };
  });
  const cpuTicks = rate(prev?.cpuTicks, cur.cpuTicks, seconds);
  return {
    vm: vm.name,
    at: cur.at,
    intervalMs: prev ? Math.round(cur.mono - prev.mono) : null,
    cpu: {
      percent: cpuTicks === null ? null : (cpuTicks / CLOCK_TICKS_PER_S) * 100,
      hostCores: vm.hostCores,
    },
    memory: { rssBytes: cur.rssBytes, configuredBytes: vm.configuredBytes, balloonBytes: cur.balloonBytes },
    disk: {
      ...cur.disk,
      readBps: rate(prev?.disk.readBytes, cur.disk.readBytes, seconds),
      writeBps: rate(prev?.disk.writeBytes, cur.disk.writeBytes, seconds),
    },
    net: {
      rxBytes: sum(nics.map((n) => n.rxBytes)),
      txBytes: sum(nics.map((n) => n.txBytes)),
      rxBps: sum(nics.map((n) => n.rxBps)),
      txBps: sum(nics.map((n) => n.txBps)),
    },
    nics,
  };
}
