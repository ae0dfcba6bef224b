import Table from 'cli-table3';
import type { VmInfo } from '../daemon/vms.js';
import type { NetworkInfo } from '../daemon/networks.js';
import type { ForwardSpec } from '../spec/schema.js';
import type { StatsSample } from '../daemon/stats.js';

/** Human tables: plain borders so they read well in any terminal and in logs. */
function table(head: string[], rows: (string | number)[][]): string {
  const t = new Table({
    head,
    style: { head: [], border: [] },
    chars: {
      top: '',
      'top-mid': '',
      'top-left': '',
      'top-right': '',
      bottom: '',
      'bottom-mid': '',
      'bottom-left': '',
      'bottom-right': '',
      left: '',
      'left-mid': '',
      mid: '',
      'mid-mid': '',
      right: '',
      'right-mid': '',
      middle: '  ',
    },
  });
  t.push(...rows);
  return t
    .toString()
    .split('\n')
    .map((l) => l.trimEnd().replace(/^ /, ''))
    .join('\n');
}

export function vmTable(vms: VmInfo[]): string {
  if (vms.length === 0) return 'No VMs yet. Create one with: phyllome create NAME --os ID or --iso FILE';
  return table(
    ['NAME', 'STATE', 'OS', 'CPUS', 'MEMORY', 'ACCEL', 'PID'],
    vms.map((vm) => [
      vm.name,
      vm.state,
      vm.spec.os ?? '-',
      vm.spec.cpus,
      vm.spec.memory,
      vm.accel ?? '-',
      vm.pid ?? '-',
    ]),
  );
}

export interface DiskRow {
  id: string;
  path: string;
  format: string;
  bus: string;
  encrypted: boolean;
  readOnly: boolean;
  virtualSize?: number;
}

export function diskTable(disks: DiskRow[]): string {
  if (disks.length === 0) return 'No disks. Add one with: phyllome disk add NAME --size 10G';
  const gib = (b?: number) => (b === undefined ? '?' : `${(b / 2 ** 30).toFixed(b % 2 ** 30 ? 2 : 0)}G`);
  return table(
    ['ID', 'SIZE', 'FORMAT', 'BUS', 'ENCRYPTED', 'PATH'],
    disks.map((d) => [
      d.id,
      gib(d.virtualSize),
      d.format,
      d.bus,
      d.encrypted ? 'yes' : 'no',
      `${d.path}${d.readOnly ? ' (ro)' : ''}`,
    ]),
  );
}

export interface OsRow {
  shortId: string;
  name: string;
  family?: string;
  releaseDate?: string;
}

export function osTable(entries: OsRow[]): string {
  if (entries.length === 0) return 'No OS matches; try a shorter --search.';
  return table(
    ['ID', 'NAME', 'FAMILY', 'RELEASED'],
    entries.map((e) => [e.shortId, e.name, e.family ?? '-', e.releaseDate ?? '-']),
  );
}

export interface PlanView {
  os: { shortId: string; name: string; note?: string; identifiedFrom?: string };
  choices: { item: string; value: string; reason: string }[];
  notes: string[];
}

/** Every device choice with its reason, then what the user should know. */
export function planText(plan: PlanView): string {
  const lines = [
    `${plan.os.name} (${plan.os.shortId})${plan.os.identifiedFrom ? `, identified from the ISO's ${plan.os.identifiedFrom}` : ''}`,
  ];
  if (plan.os.note) lines.push(`note: ${plan.os.note}`);
  const width = Math.max(...plan.choices.map((c) => c.item.length));
  for (const c of plan.choices)
    lines.push(`  ${c.item.padEnd(width)}  ${c.value}\n  ${' '.repeat(width)}  ↳ ${c.reason}`);
  for (const n of plan.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}

export function vmDetails(vm: VmInfo): string {
  const lines: [string, string][] = [
    ['Name', vm.name],
    ['UUID', vm.uuid],
    ['State', vm.reason ? `${vm.state} (${vm.reason})` : vm.state],
    ['CPUs', String(vm.spec.cpus)],
    ['Memory', vm.spec.memory],
  ];
  if (vm.pid) lines.push(['PID', String(vm.pid)]);
  if (vm.accel) lines.push(['Accelerator', vm.accel]);
  if (vm.spec.boot) {
    lines.push(['Kernel', vm.spec.boot.kernel]);
    if (vm.spec.boot.initrd) lines.push(['Initrd', vm.spec.boot.initrd]);
    if (vm.spec.boot.append) lines.push(['Cmdline', vm.spec.boot.append]);
  }
  if (vm.spec.graphics.device !== 'none') {
    const { device, renderNode, window } = vm.spec.graphics;
    lines.push([
      'Graphics',
      `${device}${renderNode ? ` (render node ${renderNode})` : ''}${window ? " (also in a window on the host's screen)" : ''}`,
    ]);
  }
  for (const d of vm.spec.graphics.hostDevices ?? []) {
    lines.push([
      'Host GPU',
      d.kind === 'mdev'
        ? `${d.address}, mediated ${d.mdevType} (${d.uuid})`
        : d.kind === 'vf'
          ? `${d.address} (SR-IOV VF)`
          : `${d.address} (whole card${d.companions.length ? `, with ${d.companions.join(', ')}` : ''})`,
    ]);
  }
  if (vm.spec.os) lines.push(['OS', vm.spec.os]);
  lines.push([
    'Firmware',
    vm.spec.firmware.type === 'bios' ? 'BIOS' : `UEFI${vm.spec.firmware.secureBoot ? ' + Secure Boot' : ''}`,
  ]);
  if (vm.spec.tpm) lines.push(['TPM', '2.0 (swtpm)']);
  vm.spec.disks.forEach((d, i) =>
    lines.push([`Disk ${i}`, `${d.path} (${d.format}, ${d.bus}${d.readOnly ? ', read-only' : ''})`]),
  );
  vm.spec.cdroms.forEach((c, i) => lines.push([`CD-ROM ${i}`, `${c.path ?? '(empty)'} (${c.role})`]));
  for (const n of vm.nics ?? []) {
    lines.push([`NIC ${n.index}`, `${n.model} ${n.mac} on ${n.network}`]);
    if (n.ips.length) lines.push(['  addresses', `${n.ips.join(', ')} (from ${n.ipsFrom ?? 'the guest'})`]);
    if (n.forwards.length) lines.push(['  forwards', n.forwards.join(', ')]);
  }
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

export function forwardTable(forwards: (ForwardSpec & { nic: number })[]): string {
  if (!forwards.length) return 'No port forwards. Add one with: phyllome net forward add NAME 8080:80';
  return table(
    ['NIC', 'HOST', 'GUEST PORT', 'PROTO'],
    forwards.map((f) => [
      String(f.nic),
      `${f.public ? '*' : '127.0.0.1'}:${f.hostPort}`,
      String(f.guestPort),
      f.proto,
    ]),
  );
}

export type NetworkRow = Pick<
  NetworkInfo,
  'name' | 'subnet' | 'gateway' | 'nat' | 'bridge' | 'up' | 'vms' | 'leases'
>;

export function networkTable(nets: NetworkRow[]): string {
  if (!nets.length) return 'No private networks. Create one with: phyllome network create NAME';
  return table(
    ['NAME', 'SUBNET', 'NAT', 'BRIDGE', 'STATE', 'VMS', 'LEASES'],
    nets.map((n) => [
      n.name,
      n.subnet,
      n.nat ? 'yes' : 'no',
      n.bridge,
      n.up ? 'up' : 'down (restart phyllomed to repair)',
      n.vms.join(', ') || '-',
      n.leases.map((l) => `${l.ip} ${l.mac}`).join('\n') || '-',
    ]),
  );
}

/** `phyllome stats`: one sample, each line a resource with its total and its rate over the last second. */
export function statsText(s: StatsSample): string {
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const rate = (b: number | null) => (b === null ? '' : ` (${(b / 1024).toFixed(1)} KiB/s)`);
  const nic = (n: StatsSample['nics'][number]) =>
    `NIC ${n.index}: ${
      n.rxBytes === null || n.txBytes === null
        ? n.note
        : `received ${mib(n.rxBytes)}${rate(n.rxBps)}, sent ${mib(n.txBytes)}${rate(n.txBps)}`
    }`;
  const { cpu, memory, disk } = s;
  return [
    `CPU      ${cpu.percent === null ? '-' : `${cpu.percent.toFixed(1)} %`} of one host core (${cpu.hostCores} host cores)`,
    `Memory   ${mib(memory.rssBytes)} resident, the guest has ${mib(memory.configuredBytes)}${
      memory.balloonBytes === null ? '' : ` (balloon at ${mib(memory.balloonBytes)})`
    }`,
    `Disk     read ${mib(disk.readBytes)}${rate(disk.readBps)}, written ${mib(disk.writeBytes)}${rate(disk.writeBps)}`,
    ...(s.nics.length
      ? s.nics.map((n, i) => `${i ? '         ' : 'Network  '}${nic(n)}`)
      : ['Network  no NICs']),
  ].join('\n');
}
