import { describe, expect, it } from 'vitest';
import { nicsFor, parseNet } from '../../src/cli/net-args.js';
import { dnsmasqArgs, parseLeases } from '../../src/net/dnsmasq.js';
import { natRuleset } from '../../src/net/nft.js';
import { passtArgs } from '../../src/net/passt.js';
import {
  addressPlan,
  formatSubnet,
  freeSubnet,
  overlaps,
  parseSubnet,
  subnetOfAddress,
  SubnetError,
} from '../../src/net/subnet.js';
import { chooseUserBackend, formatForward, parseForward, tapName, wireNics } from '../../src/net/wiring.js';
import { buildQemuArgs } from '../../src/qemu/cmdline.js';
import { parseGuestInterfaces } from '../../src/qemu/qga.js';
import { parseSpec, SpecError } from '../../src/spec/schema.js';

const identity = {
  schemaVersion: 1,
  uuid: '6f1c0c42-8d43-4a7e-9b1e-2d6c5f0a9b11',
  createdAt: '2026-11-22T10:00:00.000Z',
};
const mac = '52:54:00:12:34:56';

describe('port forwards', () => {
  it('reads HOSTPORT:GUESTPORT[/udp] and refuses anything else with the form to use', () => {
    expect(parseForward('8080:80')).toEqual({ proto: 'tcp', hostPort: 8080, guestPort: 80, public: false });
    expect(parseForward('5353:53/udp', true)).toEqual({
      proto: 'udp',
      hostPort: 5353,
      guestPort: 53,
      public: true,
    });
    for (const bad of ['80', '0:80', '8080:70000', '8080:80/sctp', 'a:b', '8080:80,hostfwd=tcp::22-:22']) {
      expect(() => parseForward(bad), bad).toThrow(/HOSTPORT:GUESTPORT/);
    }
    expect(formatForward(parseForward('8080:80'))).toBe('127.0.0.1:8080 -> 80/tcp');
  });

  it('refuses the same host port twice on one NIC', () => {
    const f = { hostPort: 8080, guestPort: 80 };
    expect(() =>
      parseSpec({
        ...identity,
        name: 'x',
        nics: [{ model: 'e1000e', mac, net: { type: 'user', forwards: [f, f] } }],
      }),
    ).toThrow(/forwarded twice/);
  });
});

describe('NIC wiring', () => {
  const spec = parseSpec({
    ...identity,
    name: 'net',
    nics: [
      { model: 'virtio-net-pci', mac, net: { type: 'user', forwards: [{ hostPort: 8080, guestPort: 80 }] } },
      {
        model: 'e1000e',
        mac: '52:54:00:00:00:02',
        net: {
          type: 'user',
          backend: 'slirp',
          forwards: [{ proto: 'udp', hostPort: 5353, guestPort: 53, public: true }],
        },
      },
      { model: 'virtio-net-pci', mac: '52:54:00:00:00:03', net: { type: 'bridge', bridge: 'br0' } },
      { model: 'virtio-net-pci', mac: '52:54:00:00:00:04', net: { type: 'network', network: 'lab' } },
      { model: 'virtio-net-pci', mac: '52:54:00:00:00:05', net: { type: 'macvtap', device: 'eth0' } },
    ],
  });

  it('gives a plain NIC user-mode networking', () => {
    const nic = parseSpec({ ...identity, name: 'x', nics: [{ model: 'e1000e' }] }).nics[0]!;
    expect(nic.net).toEqual({ type: 'user', forwards: [], hostLoopback: false });
    expect(nic.mac).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
  });

  it('prefers passt, falls back to slirp with a loopback warning, and says why', () => {
    const user = { type: 'user' as const, forwards: [], hostLoopback: false };
    expect(chooseUserBackend(user, true)).toMatchObject({ backend: 'passt' });
    expect(chooseUserBackend(user, true).warning).toBeUndefined();
    const slirp = chooseUserBackend(user, false);
    expect(slirp.backend).toBe('slirp');
    expect(slirp.reason).toMatch(/passt is not installed.*apt-get install passt/);
    expect(slirp.warning).toMatch(/loopback/);
    expect(chooseUserBackend({ ...user, hostLoopback: true }, false).warning).toBeUndefined();
  });

  it('builds passt, slirp and tap netdevs (golden)', async () => {
    const nets = wireNics(spec, true, (i) => `/run/phyllome/vms/net/passt-${i}.sock`);
    expect(nets.map((n) => n.kind)).toEqual(['passt', 'slirp', 'tap', 'tap', 'macvtap']);
    // QEMU gets the macvtap as an open file, carrying the NIC's MAC.
    expect(nets[4]).toMatchObject({ fd: 3, device: 'eth0', mac: '52:54:00:00:00:05' });
    expect(nets[3]).toMatchObject({ bridge: 'ph-lab', ifname: tapName(spec.uuid, 3) });
    expect(tapName(spec.uuid, 3).length).toBeLessThanOrEqual(15);
    const args = buildQemuArgs({
      spec,
      files: {
        qmp: '/r/qmp.sock',
        serial: '/r/serial.sock',
        pidfile: '/r/qemu.pid',
        vnc: '/r/vnc.sock',
        tpm: '/r/swtpm.sock',
        key: '/r/key',
        qga: '/r/qga.sock',
      },
      state: { nvram: '/s/nvram.qcow2' },
      accel: 'tcg',
      caps: { sandbox: true },
      nets,
    });
    const netArgs = args.flatMap((a, i) => (args[i - 1] === '-netdev' || a.includes('netdev=') ? [a] : []));
    await expect(netArgs.join('\n') + '\n').toMatchFileSnapshot('../golden/netdevs.txt');
  });

  it('takes slirp when passt is missing', () => {
    expect(wireNics(spec, false, () => '/x').map((n) => n.kind)).toEqual([
      'slirp',
      'slirp',
      'tap',
      'tap',
      'macvtap',
    ]);
  });

  it('refuses bridge and network names that could escape into QEMU or ip arguments', () => {
    for (const net of [
      { type: 'bridge', bridge: 'br0,script=/x' },
      { type: 'bridge', bridge: '../br0' },
      { type: 'bridge', bridge: 'a-very-long-bridge-name' },
      { type: 'network', network: 'lab,x' },
      { type: 'network', network: 'a/b' },
      { type: 'network', network: 'Lab' },
      { type: 'macvtap', device: 'eth0,fd=0' },
    ]) {
      expect(
        () => parseSpec({ ...identity, name: 'x', nics: [{ model: 'e1000e', mac, net }] }),
        JSON.stringify(net),
      ).toThrow(SpecError);
    }
  });
});

describe('passt arguments', () => {
  const base = { socket: '/r/p.sock', log: '/s/p.log', forwards: [], uid: 0, gid: 0 };
  it('keeps the guest off host loopback unless opted in, and binds forwards to loopback unless public', () => {
    const args = passtArgs({
      ...base,
      hostLoopback: false,
      forwards: [parseForward('8080:80'), parseForward('5353:53/udp', true)],
    });
    expect(args).toContain('--no-map-gw');
    expect(args).toContain('--one-off');
    expect(args.join(' ')).toContain('--tcp-ports 127.0.0.1/8080:80');
    expect(args.join(' ')).toContain('--udp-ports 5353:53');
    expect(passtArgs({ ...base, hostLoopback: true })).not.toContain('--no-map-gw');
  });
});

describe('subnets', () => {
  it('parses networks and refuses hosts, bad prefixes and junk with a suggestion', () => {
    expect(formatSubnet(parseSubnet('10.77.0.0/24'))).toBe('10.77.0.0/24');
    expect(() => parseSubnet('10.77.0.5/24')).toThrow(/did you mean 10.77.0.0\/24/);
    for (const bad of ['10.77.0.0', '10.77.0.0/30', '10.77.0.0/7', '300.1.1.0/24', 'x/24']) {
      expect(() => parseSubnet(bad), bad).toThrow(SubnetError);
    }
  });

  it('finds overlaps and a free subnet around what is used', () => {
    const a = parseSubnet('10.77.0.0/24');
    expect(overlaps(a, parseSubnet('10.77.0.128/25'))).toBe(true);
    expect(overlaps(a, parseSubnet('10.0.0.0/8'))).toBe(true);
    expect(overlaps(a, parseSubnet('10.77.1.0/24'))).toBe(false);
    expect(formatSubnet(freeSubnet([a, subnetOfAddress('10.77.1.9', 24)!]))).toBe('10.77.2.0/24');
  });

  it('gives the gateway the first address and DHCP the rest', () => {
    expect(addressPlan(parseSubnet('10.77.3.0/24'))).toEqual({
      gateway: '10.77.3.1',
      dhcpStart: '10.77.3.2',
      dhcpEnd: '10.77.3.254',
      netmask: '255.255.255.0',
    });
  });
});

describe('dnsmasq and nftables', () => {
  const o = {
    bridge: 'ph-lab',
    gateway: '10.77.3.1',
    dhcpStart: '10.77.3.2',
    dhcpEnd: '10.77.3.254',
    netmask: '255.255.255.0',
    leases: '/run/phyllome/networks/lab/leases',
  };
  it('serves DHCP on the bridge only, with no route or DNS without NAT', () => {
    const args = dnsmasqArgs({ ...o, nat: false });
    expect(args).toEqual(
      expect.arrayContaining([
        '--conf-file=/dev/null',
        '--bind-interfaces',
        '--interface=ph-lab',
        '--port=0',
      ]),
    );
    expect(args).toContain('--dhcp-range=10.77.3.2,10.77.3.254,255.255.255.0,1h');
    expect(args).toContain('--dhcp-option=option:router');
    expect(dnsmasqArgs({ ...o, nat: true })).not.toContain('--port=0');
  });

  it('reads leases', () => {
    expect(
      parseLeases(
        '1764633600 52:54:00:AA:bb:01 10.77.3.20 guest *\n1764633601 52:54:00:aa:bb:02 10.77.3.21 * 01:52\ngarbage\n',
      ),
    ).toEqual([
      { mac: '52:54:00:aa:bb:01', ip: '10.77.3.20', hostname: 'guest', expires: 1764633600 },
      { mac: '52:54:00:aa:bb:02', ip: '10.77.3.21', expires: 1764633601 },
    ]);
  });

  it('masquerades only what leaves the subnet (golden)', async () => {
    await expect(natRuleset('lab', 'ph-lab', '10.77.3.0/24')).toMatchFileSnapshot('../golden/nat-lab.nft');
  });
});

describe('create --net', () => {
  it('makes one NIC per --net, a user-mode one by default, forwards on the first user NIC', () => {
    expect(nicsFor({ model: 'virtio-net-pci' })).toEqual([
      { model: 'virtio-net-pci', net: { type: 'user' } },
    ]);
    const nets = parseNet('user', parseNet('network=lab', parseNet('bridge=br0')));
    expect(
      nicsFor({ model: 'e1000e', nets, forwards: [parseForward('2222:22')], hostLoopback: true }),
    ).toEqual([
      { model: 'e1000e', net: { type: 'bridge', bridge: 'br0' } },
      { model: 'e1000e', net: { type: 'network', network: 'lab' } },
      { model: 'e1000e', net: { type: 'user', forwards: [parseForward('2222:22')], hostLoopback: true } },
    ]);
    expect(parseNet('macvtap=eth0')).toEqual([{ type: 'macvtap', device: 'eth0' }]);
    expect(() => parseNet('bridge')).toThrow(/bridge=BRIDGE/);
    expect(() =>
      nicsFor({ model: 'e1000e', nets: parseNet('bridge=br0'), forwards: [parseForward('1:2')] }),
    ).toThrow(/user-mode NIC/);
  });
});

describe('guest agent answers', () => {
  it('keeps each interface’s MAC and routable addresses, not loopback or link-local', () => {
    expect(
      parseGuestInterfaces([
        { name: 'lo', 'ip-addresses': [{ 'ip-address': '127.0.0.1', 'ip-address-type': 'ipv4', prefix: 8 }] },
        {
          name: 'eth0',
          'hardware-address': '52:54:00:AB:cd:01',
          'ip-addresses': [
            { 'ip-address': '10.77.0.20', 'ip-address-type': 'ipv4', prefix: 24 },
            { 'ip-address': 'fe80::5054:ff:feab:cd01', 'ip-address-type': 'ipv6', prefix: 64 },
            { 'ip-address': 'fd00::20', 'ip-address-type': 'ipv6', prefix: 64 },
          ],
        },
        { name: 'eth1', 'hardware-address': '52:54:00:00:00:02' },
      ]),
    ).toEqual([
      { name: 'eth0', mac: '52:54:00:ab:cd:01', ips: ['10.77.0.20', 'fd00::20'] },
      { name: 'eth1', mac: '52:54:00:00:00:02', ips: [] },
    ]);
  });
});
