import type { NetSpec, NicSpec, VmSpecInput } from './schema.js';

/**
 * The NIC models a VM may have: virtio for guests with its drivers, the others for those without. Here,
 * away from the schema, so the CLI offers them without loading zod.
 */
export const NIC_MODELS = ['virtio-net-pci', 'e1000e', 'e1000', 'rtl8139'] as const;

/** A NIC as `phyllome net add` and POST /v1/vms/NAME/nics ask for it; what is left out is chosen. */
export interface NicRequest {
  model?: NicSpec['model'] | undefined;
  mac?: string | undefined;
  net?: NetSpec | undefined;
}

/**
 * Pure: the NICs with one more at the end, for the spec's checks (the 8 at most, names, MAC rules).
 * It plugs into user-mode networking unless told otherwise and takes the first NIC's model, which the
 * planner picked for the guest's drivers; with no MAC given, the schema makes a new one as at create.
 */
export function withNic(nics: readonly NicSpec[], nic: NicRequest): NonNullable<VmSpecInput['nics']> {
  return [
    ...nics,
    {
      model: nic.model ?? nics[0]?.model ?? 'virtio-net-pci',
      net: nic.net ?? { type: 'user' },
      ...(nic.mac ? { mac: nic.mac } : {}),
    },
  ];
}

/** Pure: the NICs without NIC `index`, those after it moving up one; undefined when it has none such. */
export function withoutNic(nics: readonly NicSpec[], index: number): NicSpec[] | undefined {
  return Number.isInteger(index) && index >= 0 && index < nics.length
    ? nics.filter((_, i) => i !== index)
    : undefined;
}

/** Why VM `name` has no NIC `index`: the numbers it does have, and where they are listed. */
export const noSuchNic = (name: string, count: number, index: number): string =>
  count
    ? `VM "${name}" has NICs 0 to ${count - 1}, not ${index}: see "phyllome status ${name}"`
    : `VM "${name}" has no NICs, so none to remove`;
