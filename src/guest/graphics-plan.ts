import type { QemuFeatures } from '../host/qemu-features.js';
import type { Gpu, HostReport } from '../host/report.js';
import { opts } from '../qemu/opts.js';
import type { GraphicsSpec } from '../spec/schema.js';

export type GuestFamily = 'linux' | 'windows' | 'macos' | 'bsd';
export type Intent = 'desktop' | 'gaming' | 'server';

export interface Strategy {
  kind:
    | 'vfio-passthrough'
    | 'sriov-vf'
    | 'mdev'
    | 'virtio-native-context'
    | 'virtio-venus'
    | 'virtio-virgl'
    | 'virtio-2d';
  /** The display device for the VM spec (virtio kinds), or the host devices to hand over. */
  graphics?: GraphicsSpec;
  devices?: string[];
  why: string;
  /** What the user gives up by choosing it. */
  tradeoff: string;
}

/**
 * The QEMU arguments that hand a strategy's host devices to a q35 guest. A whole card goes behind its
 * own PCIe root port as one multifunction device, as on real hardware (drivers expect the audio
 * function beside the GPU). A mediated device needs the instance's uuid, made at VM start.
 */
export function hardwareArgs(s: Strategy, options: { index?: number; mdevUuid?: string } = {}): string[] {
  const index = options.index ?? 0;
  const [first, ...rest] = s.devices ?? [];
  if (!first) return [];
  if (s.kind === 'mdev') {
    if (!options.mdevUuid) throw new Error('a mediated device needs its instance uuid');
    return [
      '-device',
      opts('vfio-pci-nohotplug', {
        sysfsdev: `/sys/bus/mdev/devices/${options.mdevUuid}`,
        display: true,
        ramfb: true,
      }),
    ];
  }
  const port = `hostdev-port${index}`;
  return [
    '-device',
    opts('pcie-root-port', { id: port, chassis: 10 + index }),
    ...[first, ...rest].flatMap((bdf, fn) => [
      '-device',
      opts('vfio-pci', {
        host: bdf,
        bus: port,
        addr: `00.${fn}`,
        ...(rest.length && fn === 0 ? { multifunction: true } : {}),
      }),
    ]),
  ];
}

/** Order of preference for 3D: a whole GPU beats a slice of one beats sharing through the host. */
const PREFERENCE: Strategy['kind'][] = [
  'vfio-passthrough',
  'sriov-vf',
  'mdev',
  'virtio-native-context',
  'virtio-venus',
  'virtio-virgl',
  'virtio-2d',
];

const name = (g: Gpu) =>
  `${g.vendor === 'nvidia' ? 'NVIDIA' : g.vendor === 'amd' ? 'AMD' : g.vendor === 'intel' ? 'Intel' : 'GPU'} ${g.deviceId} at ${g.bdf}`;

/** The GPU that renders for virtio-gpu guests: the boot display's, else any with a render node. */
const hostRenderGpu = (r: HostReport): Gpu | undefined =>
  r.gpus.find((g) => g.renderNode && g.bootVga) ?? r.gpus.find((g) => g.renderNode);

function passthrough(r: HostReport): Strategy[] {
  if (!r.iommu.enabled) return [];
  const physical = r.gpus.filter((g) => !g.isVf);
  return (
    physical
      // Not the boot display (the host needs one), and not an SR-IOV PF whose VFs other VMs may use.
      .filter((g) => g.isolated && !g.bootVga && physical.length > 1 && !g.sriov?.numVfs)
      .map((g) => ({
        kind: 'vfio-passthrough' as const,
        devices: [g.bdf, ...g.companions],
        why: `${name(g)} is alone in IOMMU group ${g.iommuGroup} (with ${g.companions.length ? g.companions.join(', ') : 'no other function'}) and is not the host's boot display: the guest gets the whole GPU at native speed`,
        tradeoff: `The host loses ${g.bdf} while the VM runs; the guest needs its own monitor on that card${g.resetMethods.length ? '' : '; the card has no reset method, so a second start may need a host reboot'}`,
      }))
  );
}

function slices(r: HostReport): Strategy[] {
  const out: Strategy[] = [];
  for (const g of r.gpus) {
    if (g.sriov && g.sriov.vfs.length) {
      out.push({
        kind: 'sriov-vf',
        devices: [g.sriov.vfs[0]!],
        why: `${name(g)} offers SR-IOV: virtual function ${g.sriov.vfs[0]} gives the guest a hardware GPU slice with its own driver`,
        tradeoff: `Shares ${g.bdf}'s power with ${g.sriov.numVfs - 1} other VF(s); the guest needs the vendor's VF driver`,
      });
    }
    const type = g.mdevTypes.find((t) => t.available > 0);
    if (type) {
      out.push({
        kind: 'mdev',
        devices: [`${g.bdf}/${type.id}`],
        why: `${name(g)} offers mediated devices: ${type.name} (${type.available} available) gives the guest a hardware GPU slice`,
        tradeoff:
          'Slower than a whole GPU; needs a GL display for its screen; Intel GVT-g stops at 10th-generation Core',
      });
    }
  }
  return out;
}

function virgl(r: HostReport, q: QemuFeatures, guest: GuestFamily): Strategy | undefined {
  if (guest !== 'linux' || !q.virtioVgaGl || !q.displays.includes('egl-headless')) return undefined;
  const host = hostRenderGpu(r);
  const renderNode = host ? `/dev/dri/${host.renderNode}` : '/dev/null';
  return {
    kind: 'virtio-virgl',
    graphics: { device: 'virtio-vga-gl', renderNode },
    why: host
      ? `The guest's OpenGL runs on the host's ${name(host)} through virgl; the host keeps its GPU`
      : 'No host render node: virgl falls back to the host CPU (Mesa llvmpipe), which is slow but works',
    tradeoff: `${q.gpuGlProperties.includes('venus') ? 'Vulkan through venus needs Mesa 24.2+ in the guest' : 'OpenGL only: this QEMU has no venus (Vulkan)'}; ${q.gpuGlProperties.includes('blob') && (r.udmabuf || q.gpuGlProperties.includes('hostmem')) ? 'blob resources possible' : 'no blob resources (needs /dev/udmabuf)'}; a fraction of native speed`,
  };
}

/**
 * Newer virtio-gpu contexts, each only where this QEMU has the property: DRM native context runs the
 * guest's own Mesa driver on the host GPU (AMD and Intel hosts), venus gives the guest Vulkan.
 */
function modernContexts(r: HostReport, q: QemuFeatures, guest: GuestFamily): Strategy[] {
  if (guest !== 'linux' || !q.displays.includes('egl-headless')) return [];
  const out: Strategy[] = [];
  const native = r.gpus.find((g) => g.renderNode && (g.vendor === 'amd' || g.vendor === 'intel') && !g.isVf);
  if (q.gpuGlProperties.includes('drm_native_context') && native) {
    out.push({
      kind: 'virtio-native-context',
      graphics: {
        device: 'virtio-gpu-gl-pci',
        renderNode: `/dev/dri/${native.renderNode}`,
        features: ['blob', 'drm_native_context'],
      },
      why: `The guest's own ${native.vendor === 'amd' ? 'radeonsi/RADV' : 'iris/ANV'} driver runs on the host's ${name(native)}: near-native OpenGL and Vulkan while the host keeps its GPU`,
      tradeoff: 'Needs guest kernel 6.14+ and Mesa 25.0+; guest RAM is shared with the host renderer',
    });
  }
  const host = hostRenderGpu(r);
  if (q.gpuGlProperties.includes('venus') && q.gpuGlProperties.includes('blob') && host) {
    out.push({
      kind: 'virtio-venus',
      graphics: {
        device: 'virtio-gpu-gl-pci',
        renderNode: `/dev/dri/${host.renderNode}`,
        features: ['blob', 'venus'],
      },
      why: `Vulkan in the guest through venus on the host's ${name(host)}, OpenGL through virgl`,
      tradeoff: 'Needs guest kernel 5.16+ and Mesa 24.2+; guest RAM is shared with the host renderer',
    });
  }
  return out;
}

function twoD(guest: GuestFamily): Strategy {
  const reason: Record<GuestFamily, string> = {
    linux: 'Works with every Linux guest',
    windows: 'Windows has no released virtio-gpu 3D driver; virtio-win drives the 2D display',
    macos: 'macOS has no virtio-gpu driver for 3D',
    bsd: 'BSD guests drive virtio-gpu in 2D only',
  };
  return {
    kind: 'virtio-2d',
    graphics: { device: 'virtio-vga' },
    why: reason[guest],
    tradeoff: 'No 3D acceleration',
  };
}

/**
 * Ranks the graphics strategies this host allows for a guest, best first, each with its reason.
 * Pure: the host report and QEMU's features in, the plan out (golden-tested on recorded hosts).
 */
export function planGraphics(r: HostReport, q: QemuFeatures, guest: GuestFamily, intent: Intent): Strategy[] {
  const hardware = [...passthrough(r), ...slices(r)];
  const soft = virgl(r, q, guest);
  const all = [...hardware, ...modernContexts(r, q, guest), ...(soft ? [soft] : []), twoD(guest)];
  const rank = (s: Strategy) =>
    intent === 'server'
      ? s.kind === 'virtio-2d'
        ? -1
        : PREFERENCE.indexOf(s.kind)
      : PREFERENCE.indexOf(s.kind);
  return all.sort((a, b) => rank(a) - rank(b));
}

export interface Seat {
  /** The GPU and its companion functions, for the seat's screen. */
  gpu: string[];
  /** The USB controller whose ports take the seat's keyboard and mouse. */
  usb: string;
}

/**
 * One seat per VM: an isolated GPU for its screen and an isolated USB controller for its keyboard and
 * mouse (the seed's "two screens, two keyboards, two mice"). The boot GPU is used only when asked,
 * since the host then has no display of its own.
 */
export function planSeats(r: HostReport, options: { allowBootGpu?: boolean } = {}): Seat[] {
  if (!r.iommu.enabled) return [];
  const gpus = r.gpus.filter(
    (g) => !g.isVf && g.isolated && (options.allowBootGpu || !g.bootVga) && !g.sriov?.numVfs,
  );
  const onCards = new Set(r.gpus.flatMap((g) => [g.bdf, ...g.companions]));
  const usb = r.usbControllers.filter((u) => u.isolated && !onCards.has(u.bdf));
  return gpus.slice(0, usb.length).map((g, i) => ({ gpu: [g.bdf, ...g.companions], usb: usb[i]!.bdf }));
}
