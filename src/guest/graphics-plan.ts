import type { QemuFeatures } from '../host/qemu-features.js';
import type { Gpu, HostReport } from '../host/report.js';
import { hostDeviceAddresses, type GraphicsChoice } from '../spec/schema.js';

export type GuestFamily = 'linux' | 'windows' | 'macos' | 'bsd';
export type Intent = 'desktop' | 'gaming' | 'server';

export interface Strategy {
  kind:
    | 'vfio-passthrough'
    | 'sriov-vf'
    | 'mdev'
    | 'nvidia-vgpu'
    | 'virtio-native-context'
    | 'virtio-venus'
    | 'virtio-virgl'
    | 'virtio-2d';
  /** The VM's graphics as the spec takes it: a strategy is exactly one spec setting. */
  graphics: GraphicsChoice;
  /** The host hardware it hands over, for people: addresses, or parent/type for mediated devices. */
  devices?: string[];
  why: string;
  /** What the user gives up by choosing it. */
  tradeoff: string;
  /** What must be done around it and what can go wrong (single-GPU passthrough). */
  caveats?: string[];
}

export interface PlanOptions {
  /** Offer the host's boot or only GPU too (single-GPU passthrough), with its caveats. */
  allowBootGpu?: boolean;
  /** The host's own screen (a live fact: the daemon's WAYLAND_DISPLAY or DISPLAY), for VM windows. */
  localDisplay?: string | undefined;
}

const labels = (devices: NonNullable<GraphicsChoice['hostDevices']>) =>
  devices.flatMap((d) => (d.kind === 'mdev' ? [`${d.address}/${d.mdevType}`] : hostDeviceAddresses(d)));

/** A hardware strategy: the host devices beside a display device for the VM's console. */
const hardware = (
  kind: Strategy['kind'],
  device: GraphicsChoice['device'],
  hostDevices: NonNullable<GraphicsChoice['hostDevices']>,
  text: Pick<Strategy, 'why' | 'tradeoff' | 'caveats'>,
): Strategy => ({ kind, graphics: { device, hostDevices }, devices: labels(hostDevices), ...text });

/** Order of preference for 3D: a whole GPU beats a slice of one beats sharing through the host. */
const PREFERENCE: Strategy['kind'][] = [
  'vfio-passthrough',
  'sriov-vf',
  'mdev',
  'nvidia-vgpu',
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

/** What single-GPU passthrough costs, said before the user commits to it. */
const singleGpuCaveats = (g: Gpu): string[] => [
  `The host loses its console: ${g.bdf} drives the host's screen, and the VM takes it while it runs`,
  `Before starting the VM, stop the host's display manager (systemctl stop display-manager) and unbind ${g.bdf} from ${g.driver ?? 'its driver'} (the launch check prints the commands)`,
  'While the VM runs the host has no graphics to fix problems with: keep SSH access to the host',
  `Recovery is over SSH: stop the VM, then give ${g.bdf} back to ${g.driver ?? 'its driver'} (or reboot the host)`,
];

function passthrough(r: HostReport, options: PlanOptions): Strategy[] {
  if (!r.iommu.enabled) return [];
  const physical = r.gpus.filter((g) => !g.isVf);
  // Not a card its host driver shares among VMs (an SR-IOV PF with VFs, a parent of mediated devices);
  // the boot or only display only when asked (the host needs one).
  const single = (g: Gpu) => g.bootVga || physical.length === 1;
  return physical
    .filter(
      (g) => g.isolated && !g.sriov?.numVfs && !g.mdevTypes.length && (options.allowBootGpu || !single(g)),
    )
    .sort((a, b) => Number(single(a)) - Number(single(b)))
    .map((g) =>
      hardware(
        'vfio-passthrough',
        'virtio-vga',
        [{ kind: 'vfio', address: g.bdf, companions: g.companions }],
        {
          why: `${name(g)} is alone in IOMMU group ${g.iommuGroup} (with ${g.companions.length ? g.companions.join(', ') : 'no other function'})${single(g) ? ", and you asked for the host's own display GPU" : " and is not the host's boot display"}: the guest gets the whole GPU at native speed`,
          tradeoff: `The host loses ${g.bdf} while the VM runs; the guest needs its own monitor on that card (the virtio-vga console stays for setup)${g.resetMethods.length ? '' : '; the card has no reset method, so a second start may need a host reboot'}`,
          ...(single(g) ? { caveats: singleGpuCaveats(g) } : {}),
        },
      ),
    );
}

const isNvidiaVgpu = (g: Gpu) => g.vendor === 'nvidia';

/**
 * The slice type to offer. NVIDIA's are vGPU profiles named like "GRID T4-2Q": Q (workstation, full 3D)
 * before B (business desktops), A (application streaming) and C (compute); the first free one otherwise.
 */
const sliceType = (g: Gpu) => {
  const free = g.mdevTypes.filter((t) => t.available > 0);
  return (isNvidiaVgpu(g) && free.find((t) => /-\d+Q$/.test(t.name))) || free[0];
};

function slices(r: HostReport, guest: GuestFamily): Strategy[] {
  const out: Strategy[] = [];
  for (const g of r.gpus) {
    if (g.sriov && g.sriov.vfs.length && !isNvidiaVgpu(g)) {
      out.push(
        hardware('sriov-vf', 'virtio-vga', [{ kind: 'vf', address: g.sriov.vfs[0]! }], {
          why: `${name(g)} offers SR-IOV: virtual function ${g.sriov.vfs[0]} gives the guest a hardware GPU slice with its own driver`,
          tradeoff: `Shares ${g.bdf}'s power with ${g.sriov.numVfs - 1} other VF(s); the guest needs the vendor's VF driver`,
        }),
      );
    }
    const type = sliceType(g);
    if (!type) continue;
    if (isNvidiaVgpu(g)) {
      // NVIDIA's guest drivers exist for Windows and Linux only.
      if (guest !== 'windows' && guest !== 'linux') continue;
      out.push(
        hardware('nvidia-vgpu', 'virtio-vga', [{ kind: 'mdev', address: g.bdf, mdevType: type.id }], {
          why: `${name(g)} offers NVIDIA vGPU: ${type.name} (${type.available} more instance(s) available${type.description ? `; ${type.description}` : ''}) gives the guest a hardware GPU slice with NVIDIA's ${guest === 'windows' ? 'Windows' : 'Linux'} driver`,
          tradeoff:
            "Needs NVIDIA's vGPU manager driver on the host and its guest driver, and an NVIDIA licence server for full features (unlicensed guests are throttled); its screen is seen through a remote desktop in the guest, the virtio-vga console stays for setup",
        }),
      );
      continue;
    }
    out.push(
      hardware('mdev', 'none', [{ kind: 'mdev', address: g.bdf, mdevType: type.id, display: true }], {
        why: `${name(g)} offers mediated devices: ${type.name} (${type.available} available) gives the guest a hardware GPU slice`,
        tradeoff:
          'Slower than a whole GPU; its screen is the console, drawn through GL; Intel GVT-g stops at 10th-generation Core',
      }),
    );
  }
  return out;
}

/**
 * virgl renders off-screen for the web console (egl-headless on the host's render GPU), or, where the
 * host has a screen of its own and this QEMU draws windows, in a window there: its GL then runs on that
 * screen's GPU with no copy back, and the web console still shows it.
 */
function virgl(r: HostReport, q: QemuFeatures, guest: GuestFamily, display?: string): Strategy | undefined {
  if (guest !== 'linux' || !q.virtioVgaGl || !q.displays.includes('egl-headless')) return undefined;
  const host = hostRenderGpu(r);
  const renderNode = host ? `/dev/dri/${host.renderNode}` : '/dev/null';
  const windowed = display && q.displays.includes('gtk');
  return {
    kind: 'virtio-virgl',
    graphics: windowed ? { device: 'virtio-vga-gl', window: true } : { device: 'virtio-vga-gl', renderNode },
    why: windowed
      ? `The guest's OpenGL runs through virgl on the GPU of this host's screen (${display}), in a window there and in the web console; the host keeps its GPU`
      : host
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
export function planGraphics(
  r: HostReport,
  q: QemuFeatures,
  guest: GuestFamily,
  intent: Intent,
  options: PlanOptions = {},
): Strategy[] {
  const soft = virgl(r, q, guest, options.localDisplay);
  const all = [
    ...passthrough(r, options),
    ...slices(r, guest),
    ...modernContexts(r, q, guest),
    ...(soft ? [soft] : []),
    twoD(guest),
  ];
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
