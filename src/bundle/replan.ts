import path from 'node:path';
import { pickFirmware, type FirmwareDescriptor } from '../host/firmware.js';
import { BUNDLE_DIR } from './layout.js';
import { offScreen } from '../spec/window.js';
import { hostDeviceAddresses, randomMac, renewMdevs, type NetSpec, type VmSpec } from '../spec/schema.js';

/** What the importing host offers, gathered by the daemon; the replanning itself is pure. */
export interface ImportHost {
  firmware: FirmwareDescriptor[];
  /** Which of the spec's outside paths (firmware, render node, media) exist here. */
  present: Set<string>;
  bridges: string[];
  /** Phyllome private networks defined here. */
  networks: string[];
  /** Host network interfaces (for macvtap). */
  links: string[];
  /** The GPU render nodes here (/dev/dri/renderD*), the boot GPU's first. */
  renderNodes: string[];
  /** This QEMU has the virgl devices (Debian: qemu-system-gui). */
  gl: boolean;
  /** The host's own screen, for VMs shown in a window (graphics.window). */
  localDisplay?: string | undefined;
}

/** The sysfs paths that say whether the spec's host GPU hardware is on a host. */
export const hostDevicePaths = (g: VmSpec['graphics']): string[] =>
  (g.hostDevices ?? []).flatMap((d) =>
    d.kind === 'mdev'
      ? [`/sys/bus/pci/devices/${d.address}/mdev_supported_types/${d.mdevType}`]
      : hostDeviceAddresses(d).map((a) => `/sys/bus/pci/devices/${a}`),
  );

/**
 * Host GPU hardware comes along only where this host has it at the same address (a VM restored to its
 * own host), its mediated devices renewed.
 */
function fitHostDevices(g: VmSpec['graphics'], host: ImportHost, changes: Change[]): VmSpec['graphics'] {
  const missing = hostDevicePaths(g).filter((p) => !host.present.has(p));
  if (!missing.length) return renewMdevs(g);
  const { hostDevices: _gone, ...rest } = g;
  // The emulated display the strategy kept as console takes over; a GVT-g slice had none.
  const device = g.device === 'none' ? 'virtio-vga' : g.device;
  changes.push({
    what: `graphics: ${device}, without host GPU hardware`,
    why: `${missing.map((p) => p.replace('/sys/bus/pci/devices/', '')).join(', ')} ${missing.length > 1 ? 'are' : 'is'} not on this host; every guest drives ${device}. "phyllome host check" lists this host's GPUs; hand one over with create --gpu`,
  });
  return { ...rest, device };
}

export interface Change {
  what: string;
  why: string;
}

const userNet: NetSpec = { type: 'user', forwards: [], hostLoopback: false };

function netProblem(net: NetSpec, host: ImportHost): string | undefined {
  if (net.type === 'bridge' && !host.bridges.includes(net.bridge)) {
    return `host bridge ${net.bridge} does not exist here (create it and attach the NIC to it again)`;
  }
  if (net.type === 'network' && !host.networks.includes(net.network)) {
    return `private network "${net.network}" does not exist here (phyllome network create ${net.network})`;
  }
  if (net.type === 'macvtap' && !host.links.includes(net.device)) {
    return `host NIC ${net.device} does not exist here`;
  }
  return undefined;
}

/**
 * Pure: a VM from another host, fitted to this one. It gets a new identity (uuid, MACs) so it can
 * sit beside its original; what names host hardware it does not find here (firmware files, a GPU's
 * render node, bridges, networks, media) falls back to the best this host has, each change with why.
 */
export function replan(
  spec: VmSpec,
  host: ImportHost,
  identity: { name: string; uuid: string; createdAt: string },
): { spec: VmSpec; changes: Change[] } {
  const changes: Change[] = [];
  let out: VmSpec = { ...spec, ...identity };
  const fw = spec.firmware;
  if (fw.type === 'uefi' && !(host.present.has(fw.code) && host.present.has(fw.varsTemplate))) {
    const picked = pickFirmware(host.firmware, { machine: spec.machine, secureBoot: fw.secureBoot });
    if (picked.type === 'uefi') {
      out = { ...out, firmware: { ...picked, nvramEncrypted: fw.nvramEncrypted } };
      changes.push({
        what: `firmware: ${picked.code}`,
        why: `${fw.code} is not on this host; this is its UEFI firmware${fw.secureBoot ? ' with Secure Boot' : ''} (the VM's own variables came along)`,
      });
    }
  }
  const g = spec.graphics.hostDevices ? fitHostDevices(spec.graphics, host, changes) : spec.graphics;
  out = { ...out, graphics: g };
  if ((g.device === 'virtio-vga-gl' || g.device === 'virtio-gpu-gl-pci') && !host.gl) {
    out = { ...out, graphics: { device: 'virtio-vga' } };
    changes.push({
      what: 'graphics: virtio-vga (2D)',
      why: `this host's QEMU has no ${g.device} (Debian: apt-get install qemu-system-gui)`,
    });
  } else if (g.renderNode && !host.present.has(g.renderNode)) {
    const node = host.renderNodes[0] ?? '/dev/null';
    out = { ...out, graphics: { ...g, renderNode: node } };
    changes.push({
      what: `graphics render node: ${node}`,
      why:
        node === '/dev/null'
          ? `${g.renderNode} is not on this host, which has no GPU render node: Mesa renders in software (llvmpipe)`
          : `${g.renderNode} is not on this host: its first GPU renders`,
    });
  }
  if (out.graphics.window && !host.localDisplay) {
    out = { ...out, graphics: offScreen(out.graphics, host.renderNodes) };
    changes.push({
      what: 'graphics: web console only, no window',
      why: "this host's daemon has no screen of its own to open the VM's window on (neither WAYLAND_DISPLAY nor DISPLAY)",
    });
  }
  out = {
    ...out,
    nics: spec.nics.map((n, i) => {
      const problem = netProblem(n.net, host);
      if (problem) {
        changes.push({ what: `nic ${i}: user-mode networking`, why: problem });
      }
      return { ...n, mac: randomMac(), net: problem ? userNet : n.net };
    }),
    cdroms: spec.cdroms.map((c, i) => {
      if (!c.path || path.dirname(c.path) === BUNDLE_DIR || host.present.has(c.path)) return c;
      changes.push({
        what: `cdrom ${i}: empty`,
        why: `${c.path} is not on this host (insert media with phyllome media insert)`,
      });
      return { role: c.role };
    }),
  };
  if (spec.nics.length) {
    changes.push({ what: 'new MAC addresses', why: 'an imported VM may run beside its original' });
  }
  return { spec: out, changes };
}
