import { describe, expect, it } from 'vitest';
import {
  changeNotice,
  emptyForward,
  emptyNic,
  forwardText,
  networkBody,
  networkState,
  networkWarnings,
  nicBody,
  nicRows,
  parseForwardDraft,
  type PrivateNetwork,
  type VmNetInfo,
} from '../../web/src/network.js';

/** A VM as GET /v1/vms/NAME answers: a user-mode NIC with a forward, a private-network NIC, a bridged one. */
const vm: VmNetInfo = {
  warnings: [],
  spec: {
    nics: [
      {
        net: {
          type: 'user',
          hostLoopback: false,
          forwards: [{ proto: 'tcp', hostPort: 8080, guestPort: 80, public: false }],
        },
      },
      { net: { type: 'network' } },
      { net: { type: 'bridge' } },
    ],
  },
  nics: [
    {
      index: 0,
      model: 'virtio-net-pci',
      mac: '52:54:00:00:00:01',
      network: 'user (passt)',
      reason: 'passt is installed',
      ips: [],
    },
    {
      index: 1,
      model: 'e1000e',
      mac: '52:54:00:00:00:02',
      network: 'network lab',
      ips: ['10.77.0.23'],
      ipsFrom: 'DHCP leases',
    },
    { index: 2, model: 'virtio-net-pci', mac: '52:54:00:00:00:03', network: 'bridge br0', ips: [] },
  ],
};

describe("the VM page's Network tab", () => {
  it('gives each NIC its addresses in words, and only user-mode NICs forwards and host loopback', () => {
    const [user, lab, bridge] = nicRows(vm);
    expect(user).toMatchObject({
      network: 'user (passt)',
      reason: 'passt is installed',
      user: { hostLoopback: false, forwards: [{ proto: 'tcp', hostPort: 8080, guestPort: 80 }] },
    });
    expect(user!.addresses).toMatch(/^not known: .*port forwards/);
    expect(lab).toMatchObject({ addresses: '10.77.0.23 (from DHCP leases)' });
    expect(lab!.user).toBeUndefined();
    expect(bridge!.addresses).toMatch(/^not known yet: .*guest agent/);
    expect(bridge!.user).toBeUndefined();
  });

  it('reads a user-mode NIC without forwards or host loopback in its spec as none and off', () => {
    const bare = { ...vm, spec: { nics: [{ net: { type: 'user' } }] } };
    expect(nicRows({ ...bare, nics: [vm.nics[0]!] })[0]!.user).toEqual({ forwards: [], hostLoopback: false });
  });

  it("shows the VM's warnings about its networking only", () => {
    const slirp =
      'with QEMU’s built-in user networking the guest can reach services on the host’s loopback (through 10.0.2.2); install passt to prevent it';
    const tcg =
      'KVM is not usable (/dev/kvm is missing or not accessible): VMs run under TCG software emulation';
    expect(networkWarnings({ ...vm, warnings: [tcg, slirp] })).toEqual([slirp]);
  });

  it('takes ports 1 to 65535 from the form, and says what is wrong with any other', () => {
    const draft = {
      ...emptyForward,
      hostPort: ' 8080',
      guestPort: '80',
      proto: 'udp' as const,
      public: true,
    };
    expect(parseForwardDraft(draft)).toEqual({
      forward: { proto: 'udp', hostPort: 8080, guestPort: 80, public: true },
    });
    expect(parseForwardDraft({ ...draft, hostPort: '1', guestPort: '65535' })).toHaveProperty('forward');
    for (const [hostPort, guestPort, wrong] of [
      ['0', '80', 'host port "0"'],
      ['65536', '80', 'host port "65536"'],
      ['80', '8.5', 'guest port "8.5"'],
      ['http', '80', 'host port "http"'],
      ['80', '-1', 'guest port "-1"'],
      ['', '80', 'host port ""'],
    ] as const) {
      expect(parseForwardDraft({ ...draft, hostPort, guestPort })).toEqual({
        error: `${wrong}: give a port from 1 to 65535`,
      });
    }
  });

  it('writes a forward as the CLI does, loopback-only unless public', () => {
    expect(forwardText({ proto: 'tcp', hostPort: 8080, guestPort: 80, public: false })).toBe(
      '127.0.0.1:8080 -> 80/tcp',
    );
    expect(forwardText({ proto: 'udp', hostPort: 5353, guestPort: 53, public: true })).toBe(
      '*:5353 -> 53/udp',
    );
  });

  it('says when a change applies only from the next start', () => {
    expect(changeNotice('Forwarding x to "web"', { applied: 'now' }, 'web')).toBe('Forwarding x to "web".');
    expect(changeNotice('Host loopback reachable from "web"', { applied: 'next-start' }, 'web')).toBe(
      'Host loopback reachable from "web". It applies from the next start of "web" (restart it to use it now).',
    );
  });
});

describe('the Networks page', () => {
  it('sends the name trimmed, and the subnet and NAT only when given', () => {
    expect(networkBody({ name: ' lab ', subnet: '  ', nat: false })).toEqual({ name: 'lab' });
    expect(networkBody({ name: 'lab', subnet: ' 10.77.5.0/24 ', nat: true })).toEqual({
      name: 'lab',
      subnet: '10.77.5.0/24',
      nat: true,
    });
  });

  it('says a network that is not whole is down, and how to repair it', () => {
    const n: PrivateNetwork = {
      name: 'lab',
      subnet: '10.77.0.0/24',
      gateway: '10.77.0.1',
      nat: false,
      bridge: 'phy-lab',
      up: true,
      vms: [],
      leases: [],
    };
    expect(networkState(n)).toBe('up');
    expect(networkState({ ...n, up: false })).toBe('down (restart phyllomed to repair)');
  });
});

describe('the add-NIC form', () => {
  it('sends what phyllome net add sends, or says what is missing', () => {
    expect(nicBody(emptyNic)).toEqual({ body: { net: { type: 'user' } } });
    expect(nicBody({ kind: 'user', target: 'ignored', model: 'e1000e' })).toEqual({
      body: { net: { type: 'user' }, model: 'e1000e' },
    });
    expect(nicBody({ kind: 'network', target: ' lab ', model: '' })).toEqual({
      body: { net: { type: 'network', network: 'lab' } },
    });
    expect(nicBody({ kind: 'bridge', target: 'br0', model: 'virtio-net-pci' })).toEqual({
      body: { net: { type: 'bridge', bridge: 'br0' }, model: 'virtio-net-pci' },
    });
    expect(nicBody({ kind: 'macvtap', target: 'eth0', model: '' })).toEqual({
      body: { net: { type: 'macvtap', device: 'eth0' } },
    });
    expect(nicBody({ kind: 'bridge', target: '  ', model: '' })).toEqual({
      error: 'name the host bridge, like br0',
    });
    expect(nicBody({ kind: 'network', target: '', model: '' })).toEqual({
      error: 'pick a private network (make one on the Networks page)',
    });
  });
});
