import { describe, expect, it } from 'vitest';
import { noSuchNic, withNic, withoutNic } from '../../src/spec/nics.js';
import { parseSpecInput, SpecError, type NicSpec } from '../../src/spec/schema.js';

const user: NicSpec['net'] = { type: 'user', forwards: [], hostLoopback: false };
const e1000e: NicSpec = { model: 'e1000e', mac: '52:54:00:00:00:01', net: user };
const bridged: NicSpec = {
  model: 'virtio-net-pci',
  mac: '52:54:00:00:00:02',
  net: { type: 'bridge', bridge: 'br0' },
};
const base = { name: 'vm', memory: '64M', boot: { kernel: '/vmlinuz' } };

/** The NICs as the daemon writes them: checked by the spec's own rules, as at create. */
const checked = (nics: unknown) => parseSpecInput({ ...base, nics }).nics;

describe("a VM's NICs added and removed", () => {
  it('adds one at the end, user-mode with the first NIC’s model and a new MAC unless given', () => {
    const [, added] = checked(withNic([e1000e], {}));
    expect(added).toEqual({
      model: 'e1000e',
      net: user,
      mac: expect.stringMatching(/^52:54:00(:[0-9a-f]{2}){3}$/),
    });
    expect(added!.mac).not.toBe(e1000e.mac);
    expect(
      checked(
        withNic([e1000e], {
          model: 'rtl8139',
          mac: '52:54:00:aa:bb:cc',
          net: { type: 'network', network: 'lab' },
        }),
      ),
    ).toEqual([
      e1000e,
      { model: 'rtl8139', mac: '52:54:00:aa:bb:cc', net: { type: 'network', network: 'lab' } },
    ]);
    // A VM made with --nic none gets virtio, as create's default.
    expect(withNic([], {})).toEqual([{ model: 'virtio-net-pci', net: { type: 'user' } }]);
  });

  it('leaves the spec’s rules to refuse a bad MAC, a bad name or a ninth NIC', () => {
    const refused = (nics: unknown) => {
      try {
        checked(nics);
      } catch (e) {
        if (e instanceof SpecError) return e.message;
        throw e;
      }
      return 'accepted';
    };
    expect(refused(withNic([e1000e], { mac: '01:00:5e:00:00:01' }))).toMatch(
      /^nics\[1\]\.mac: must be a locally administered MAC/,
    );
    expect(refused(withNic([e1000e], { net: { type: 'bridge', bridge: 'br0,script=/bin/sh' } }))).toMatch(
      /^nics\[1\]\.net\.bridge: must be a network interface name/,
    );
    const eight = Array.from({ length: 8 }, () => e1000e);
    expect(refused(eight)).toBe('accepted');
    expect(refused(withNic(eight, {}))).toBe('nics: a VM has at most 8 NICs');
  });

  it('removes one, those after it moving up, or says which there are', () => {
    expect(withoutNic([e1000e, bridged], 0)).toEqual([bridged]);
    expect(withoutNic([e1000e, bridged], 1)).toEqual([e1000e]);
    expect(withoutNic([e1000e], 0)).toEqual([]);
    for (const index of [1, -1, 0.5, NaN]) expect(withoutNic([e1000e], index), String(index)).toBeUndefined();
    expect(noSuchNic('vm', 2, 5)).toBe('VM "vm" has NICs 0 to 1, not 5: see "phyllome status vm"');
    expect(noSuchNic('vm', 0, 0)).toBe('VM "vm" has no NICs, so none to remove');
  });
});
