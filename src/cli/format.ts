import Table from 'cli-table3';
import type { VmInfo } from '../daemon/vms.js';

/** Human tables: plain borders so they read well in any terminal and in logs. */
export function vmTable(vms: VmInfo[]): string {
  if (vms.length === 0) return 'No VMs yet. Create one with: phyllome create NAME --kernel FILE';
  const table = new Table({
    head: ['NAME', 'STATE', 'CPUS', 'MEMORY', 'ACCEL', 'PID'],
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
  for (const vm of vms) {
    table.push([vm.name, vm.state, vm.spec.cpus, vm.spec.memory, vm.accel ?? '-', vm.pid ?? '-']);
  }
  return table
    .toString()
    .split('\n')
    .map((l) => l.trimEnd().replace(/^ /, ''))
    .join('\n');
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
    const node = vm.spec.graphics.renderNode;
    lines.push([
      'Graphics',
      node ? `${vm.spec.graphics.device} (render node ${node})` : vm.spec.graphics.device,
    ]);
  }
  vm.spec.disks.forEach((d, i) =>
    lines.push([`Disk ${i}`, `${d.path} (${d.format}${d.readOnly ? ', read-only' : ''})`]),
  );
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}
