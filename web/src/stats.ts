// The VM page's live graphs, the pure part: a window of samples, and what each graph draws and says.

/** What the graphs use of a sample from /v1/vms/NAME/stats (src/daemon/stats.ts StatsSample). */
export interface StatsSample {
  at: number;
  cpu: { percent: number | null };
  /** balloonBytes: what the guest has with the balloon's share taken out; null without a balloon. */
  memory: { rssBytes: number; configuredBytes: number; balloonBytes: number | null };
  disk: { readBps: number | null; writeBps: number | null };
  net: { rxBytes: number | null; rxBps: number | null; txBps: number | null };
  nics: NicStats[];
}

/** One NIC's rates; `index` is its place in the VM's spec. */
export interface NicStats {
  index: number;
  rxBps: number | null;
  txBps: number | null;
  /** Why it is not counted. */
  note?: string;
}

/**
 * Where a NIC plugs in, as in the VM's spec (Vm in api.ts): written out here because api.ts needs the
 * DOM's types, which the Node-checked unit tests lack.
 */
interface NicNet {
  type: string;
  bridge?: string;
  network?: string;
  device?: string;
}

/** A NIC as the per-NIC graphs name it: its index and where it plugs in, like "NIC 1 (bridge br0)". */
export function nicLabel(nic: { net: NicNet }, index: number): string {
  const { type, bridge, network, device } = nic.net;
  const where = bridge ?? network ?? device;
  return `NIC ${index} (${where ? `${type} ${where}` : type})`;
}

/** How far back the graphs reach. */
export const WINDOW_MS = 120_000;

/** The history with this sample added and those older than the window dropped. */
export function keepWindow(history: StatsSample[], sample: StatsSample): StatsSample[] {
  const from = sample.at - WINDOW_MS;
  return [...history.filter((s) => s.at >= from && s.at < sample.at), sample];
}

export type Unit = 'percent' | 'bytes' | 'rate';

export interface Graph {
  title: string;
  unit: Unit;
  series: { label: string; values: (number | null)[] }[];
  /** The latest values in words: shown beside the graph, and what a screen reader gets. */
  now: string;
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  let i = 0;
  while (n >= 1024 && i < BYTE_UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n.toFixed(0) : n.toFixed(1)} ${BYTE_UNITS[i]}`;
}

export function formatValue(unit: Unit, v: number | null | undefined): string {
  if (v === null || v === undefined) return '–';
  if (unit === 'percent') return `${v.toFixed(1)} %`;
  return unit === 'rate' ? `${formatBytes(v)}/s` : formatBytes(v);
}

/** Resident memory, and what the guest has: less than configured while the balloon holds some back. */
function memoryNow(m: StatsSample['memory']): string {
  const guest = m.balloonBytes ?? m.configuredBytes;
  const held = guest < m.configuredBytes ? ` of ${formatBytes(m.configuredBytes)} (balloon)` : '';
  return `${formatBytes(m.rssBytes)} resident, guest has ${formatBytes(guest)}${held}`;
}

/**
 * A VM with several NICs gets a graph per direction with a series per NIC (labelled from `nicLabels`,
 * by index): their totals would hide which network is busy.
 */
function perNic(history: StatsSample[], last: StatsSample, nicLabels: string[]): Graph[] {
  const label = (index: number) => nicLabels[index] ?? `NIC ${index}`;
  const direction = (title: string, bps: (n: NicStats) => number | null): Graph => ({
    title,
    unit: 'rate',
    series: last.nics.map(({ index }) => ({
      label: label(index),
      values: history.map((s) => {
        const nic = s.nics.find((n) => n.index === index);
        return nic ? bps(nic) : null;
      }),
    })),
    now: last.nics
      .map((n) => `${label(n.index)}: ${n.note ? 'not counted' : formatValue('rate', bps(n))}`)
      .join('; '),
  });
  return [direction('Network received', (n) => n.rxBps), direction('Network sent', (n) => n.txBps)];
}

/**
 * The time axis (seconds, as uPlot wants) and the graphs, from the oldest sample to the latest: CPU,
 * memory, disk, and the network in total, or per NIC where there are several.
 */
export function graphs(
  history: StatsSample[],
  nicLabels: string[] = [],
): { times: number[]; graphs: Graph[] } {
  const last = history.at(-1);
  const pick = (f: (s: StatsSample) => number | null) => history.map(f);
  const pair = (
    unit: Unit,
    a: string,
    b: string,
    va: number | null | undefined,
    vb: number | null | undefined,
  ) => `${a} ${formatValue(unit, va)}, ${b} ${formatValue(unit, vb)}`;
  const netNote = last?.nics.find((n) => n.note)?.note;
  const total: Graph = {
    title: 'Network',
    unit: 'rate',
    series: [
      { label: 'Received', values: pick((s) => s.net.rxBps) },
      { label: 'Sent', values: pick((s) => s.net.txBps) },
    ],
    // User-mode NICs cannot be counted: say so rather than draw an empty line as if idle.
    now:
      last && last.net.rxBytes === null && netNote
        ? netNote
        : pair('rate', 'received', 'sent', last?.net.rxBps, last?.net.txBps),
  };
  return {
    times: history.map((s) => s.at / 1000),
    graphs: [
      {
        title: 'CPU',
        unit: 'percent',
        series: [{ label: 'CPU', values: pick((s) => s.cpu.percent) }],
        now: `${formatValue('percent', last?.cpu.percent)} of one host core`,
      },
      {
        title: 'Memory',
        unit: 'bytes',
        series: [
          { label: 'Resident', values: pick((s) => s.memory.rssBytes) },
          // The guest's memory as the balloon leaves it, where the VM has one (a failed query: a gap).
          ...(history.some((s) => s.memory.balloonBytes !== null)
            ? [{ label: 'Guest', values: pick((s) => s.memory.balloonBytes) }]
            : []),
        ],
        now: last ? memoryNow(last.memory) : '–',
      },
      {
        title: 'Disk',
        unit: 'rate',
        series: [
          { label: 'Read', values: pick((s) => s.disk.readBps) },
          { label: 'Write', values: pick((s) => s.disk.writeBps) },
        ],
        now: pair('rate', 'read', 'write', last?.disk.readBps, last?.disk.writeBps),
      },
      ...(last && last.nics.length > 1 ? perNic(history, last, nicLabels) : [total]),
    ],
  };
}
