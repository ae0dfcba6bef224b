/**
 * The create wizard's review page as data: the planner's answer (POST /v1/plan) and an expert's
 * overrides become the rows shown, so the page itself only renders. The planner re-plans with the
 * overrides; until its answer comes, an overridden row already shows what was chosen.
 */
import { NIC_MODELS } from './network.js';

export interface Choice {
  item: string;
  value: string;
  reason: string;
}

/** One way to give the guest graphics on this host (src/guest/graphics-plan.ts). */
export interface Strategy {
  kind: string;
  /** The spec's graphics it stands for; host devices make it a hardware strategy (a GPU handed over). */
  graphics: { device: string; hostDevices?: { address: string }[] };
  devices?: string[];
  why: string;
  tradeoff: string;
  /** What single-GPU passthrough costs. */
  caveats?: string[];
}

export interface Plan {
  spec: Record<string, unknown>;
  choices: Choice[];
  notes: string[];
  os: { shortId: string; name: string; note?: string; identifiedFrom?: string };
  /** Best first. */
  graphics: Strategy[];
}

/** What an expert may force (the plan route's overrides), as the selects hold them. */
export interface Overrides {
  memory?: string;
  cpus?: number;
  diskSize?: string;
  machine?: string;
  firmware?: string;
  tpm?: boolean;
  diskBus?: string;
  nic?: string;
  input?: string;
  sound?: string;
  graphics?: string;
  /** A host GPU to hand over (a hardware strategy's first address); the planner then picks the graphics. */
  gpu?: string;
}

type Pick = 'machine' | 'firmware' | 'tpm' | 'diskBus' | 'nic' | 'input' | 'sound' | 'graphics';

/** The plan's items an expert can change, the override each sets, and its values (the API's enums). */
const overridable: Record<string, { key: Pick; options: string[] }> = {
  machine: { key: 'machine', options: ['q35', 'pc'] },
  firmware: { key: 'firmware', options: ['bios', 'uefi', 'uefi-secure'] },
  tpm: { key: 'tpm', options: ['on', 'off'] },
  'disk bus': { key: 'diskBus', options: ['virtio', 'sata', 'ide'] },
  network: { key: 'nic', options: [...NIC_MODELS, 'none'] },
  input: { key: 'input', options: ['ps2', 'usb-tablet', 'virtio-tablet'] },
  sound: { key: 'sound', options: ['none', 'ich9-intel-hda', 'ac97'] },
  graphics: { key: 'graphics', options: ['none', 'vga', 'virtio-vga', 'virtio-vga-gl', 'virtio-gpu-gl-pci'] },
};

/** The planner's words for a choice the user made. */
export const CHOSEN = 'chosen by you';

export interface ReviewRow extends Choice {
  /** Set for items an expert can change: the values, and the one forced ('' while planned). */
  override?: { key: Pick; options: string[]; selected: string };
}

const shown = (o: Overrides, key: Pick): string | undefined => {
  const v = o[key];
  return v === undefined ? undefined : typeof v === 'boolean' ? (v ? 'on' : 'off') : v;
};

/** Pure: every choice of the plan with its reason; an override shows as the user's choice. */
export function reviewRows(plan: Plan, overrides: Overrides): ReviewRow[] {
  return plan.choices.map((c) => {
    const o = overridable[c.item];
    if (!o) return c;
    const selected = shown(overrides, o.key);
    // The planner words a forced value its own way (a firmware's file, a NIC's MAC): its answer is
    // kept once it has planned with the override.
    const planned = selected === undefined || c.reason.startsWith(CHOSEN);
    return {
      ...c,
      ...(planned ? {} : { value: selected, reason: CHOSEN }),
      override: { key: o.key, options: o.options, selected: selected ?? '' },
    };
  });
}

/** Pure: the overrides after an expert picks `value` for `key` ('' hands the item back to the planner). */
export function withOverride(overrides: Overrides, key: Pick, value: string): Overrides {
  // A display device chosen by hand ends a GPU choice (the planner takes one or the other).
  const { [key]: _dropped, ...rest } = key === 'graphics' ? withoutGpu(overrides) : overrides;
  if (value === '') return rest;
  return { ...rest, [key]: key === 'tpm' ? value === 'on' : value };
}

const withoutGpu = ({ gpu: _gpu, ...rest }: Overrides): Overrides => rest;

/** The GPU a strategy hands over, if it is a hardware one. */
const gpuOf = (s: Strategy) => s.graphics.hostDevices?.[0]?.address;

export interface GraphicsOption extends Strategy {
  rank: number;
  chosen: boolean;
}

/** Pure: the host's graphics strategies in the planner's order, the one the VM gets marked. */
export function graphicsOptions(plan: Plan, overrides: Overrides): GraphicsOption[] {
  const planned = plan.spec.graphics as Strategy['graphics'] | undefined;
  const gpu = overrides.graphics ? undefined : (overrides.gpu ?? planned?.hostDevices?.[0]?.address);
  const device = overrides.graphics ?? planned?.device;
  let marked = false;
  return plan.graphics.map((s, i) => {
    const chosen = !marked && (gpu ? gpuOf(s) === gpu : !gpuOf(s) && s.graphics.device === device);
    marked ||= chosen;
    return { ...s, rank: i + 1, chosen };
  });
}

/** Pure: the overrides after an expert picks a ranked strategy: its GPU, or its display device. */
export function chooseGraphics(overrides: Overrides, s: Strategy): Overrides {
  const gpu = gpuOf(s);
  if (!gpu) return withOverride(overrides, 'graphics', s.graphics.device);
  const { graphics: _device, ...rest } = overrides;
  return { ...rest, gpu };
}
