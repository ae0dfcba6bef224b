import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  bootArgs,
  cli,
  createGuest,
  json,
  ok,
  openConsole,
  stopDaemon,
  useHome,
  waitForReady,
  waitFor,
  type TestHome,
  type Vm,
} from './helpers.js';
import { API_PORT, isRoot, useNetns, type Netns } from './netns.js';
import type { StatsSample } from '../../src/daemon/stats.js';

/** Boot flags for the test guest without its guest agent. */
const noAgent = () => {
  const args = bootArgs();
  args[args.indexOf('--append') + 1] += ' phyllome.noagent';
  return args;
};

/** The address the guest printed when udhcpc got its lease ("net: eth0 IP", see build-test-guest.sh). */
function leasedAddress(h: TestHome, name: string): Promise<string> {
  const log = path.join(h.home, 'vms', name, 'serial.log');
  return waitFor(
    `${name} to get an address by DHCP`,
    async () => /net: eth0 (\d+\.\d+\.\d+\.\d+)/.exec(await readFile(log, 'utf8').catch(() => ''))?.[1],
    90_000,
  );
}

/** Runs a shell line in the guest over its serial console; resolves with the output once `until` shows. */
async function inGuest(h: TestHome, name: string, line: string, until: RegExp): Promise<string> {
  const session = openConsole(h, name);
  try {
    await waitFor('the console to attach', () => session.output.length > 0 || undefined, 15_000).catch(
      () => true,
    );
    session.type(`${line}\n`);
    await waitFor(
      () => `${until} from "${line}" (got ${JSON.stringify(session.output.slice(-400))})`,
      () => until.test(session.output) || undefined,
      30_000,
    );
    return session.output;
  } finally {
    session.child.kill('SIGKILL');
  }
}

/** An HTTP request from the guest with busybox nc (its wget is unusable in the static build); prints NC-<exit code>. */
const httpFromGuest = (host: string, port: number, urlPath = '/') =>
  `printf 'GET ${urlPath} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${host} ${port}; echo NC-$?`;

describe.skipIf(!isRoot)('networking (in a network namespace of the test)', () => {
  const home = useHome();
  const netns = useNetns();

  it('gives a guest user-mode networking by passt: DHCP, a port forward, and no way to the host loopback', async () => {
    const h = home();
    const ns: Netns = netns();
    await ns.startDaemon(h);
    await createGuest(h, 'web', ['--forward', '18080:80']);
    const vm = await json<Vm>(h, ['start', 'web']);
    expect(vm.nics[0]).toMatchObject({ network: 'user (passt)', forwards: ['127.0.0.1:18080 -> 80/tcp'] });
    expect(vm.nics[0]!.reason).toMatch(/passt is installed/);
    expect(vm.warnings.join(' ')).not.toMatch(/loopback/);

    // passt hands the guest the namespace's own address; status reads it from the guest agent.
    expect(await leasedAddress(h, 'web')).toBe('10.99.0.2');
    await waitFor('the guest agent to report the address', async () => {
      const nic = (await json<Vm>(h, ['status', 'web'])).nics[0]!;
      return nic.ips.includes('10.99.0.2') && nic.ipsFrom === 'guest agent' ? true : undefined;
    });
    expect(await ns.fetch('http://127.0.0.1:18080/')).toBe('phyllome guest web\n');
    // Loopback only: the forward is not on the namespace's other address.
    expect(await ns.fetch('http://10.99.0.2:18080/')).toBeUndefined();

    // The daemon's API listens on the namespace's loopback; the gateway address is the guest's only way there.
    const closed = await inGuest(h, 'web', httpFromGuest('10.99.0.1', API_PORT, '/v1/vms'), /NC-\d/);
    expect(closed).not.toContain('HTTP/1.1');
    expect(closed).toMatch(/NC-1/);

    // Opting in (per VM, from the next start) opens it: the API answers, and asks for its token.
    const change = await json<{ applied: string }>(h, ['net', 'host-loopback', 'web', 'on']);
    expect(change.applied).toBe('next-start');
    await ok(h, ['restart', 'web', '--timeout', '5']);
    await leasedAddress(h, 'web');
    // Wait for the whole status line (its CR): the serial line can deliver it in pieces.
    const open = await inGuest(
      h,
      'web',
      httpFromGuest('10.99.0.1', API_PORT, '/v1/vms'),
      /HTTP\/1\.1 \d+ [A-Za-z ]+\r|NC-\d/,
    );
    expect(open).toContain('HTTP/1.1 401 Unauthorized');

    // passt lives as long as its QEMU.
    await ok(h, ['stop', 'web', '--force']);
    await waitFor(
      'passt to exit with its VM',
      async () => !(await ns.commands()).some((c) => c.startsWith('passt')) || undefined,
      10_000,
    );
  });

  it('falls back to QEMU user networking without passt, says why and warns, and changes forwards live', async () => {
    const h = home();
    const ns = netns();
    await ns.startDaemon(h, { PHYLLOME_PASST: 'none' });
    await createGuest(h, 'old');
    const vm = await json<Vm>(h, ['start', 'old']);
    expect(vm.nics[0]).toMatchObject({ network: 'user (QEMU slirp)' });
    expect(vm.nics[0]!.reason).toMatch(/passt is not installed \(apt-get install passt/);
    expect(vm.warnings.join(' ')).toMatch(/can reach services on the host’s loopback.*install passt/);
    expect(await leasedAddress(h, 'old')).toBe('10.0.2.15');

    const added = await json<{ applied: string }>(h, ['net', 'forward', 'add', 'old', '18081:80']);
    expect(added.applied).toBe('now');
    expect(await ns.fetch('http://127.0.0.1:18081/')).toBe('phyllome guest web\n');
    const listed = await json<{ forwards: unknown[] }>(h, ['net', 'forward', 'list', 'old']);
    expect(listed.forwards).toEqual([
      { nic: 0, proto: 'tcp', hostPort: 18081, guestPort: 80, public: false },
    ]);

    const removed = await json<{ applied: string }>(h, ['net', 'forward', 'remove', 'old', '18081']);
    expect(removed.applied).toBe('now');
    expect(await ns.fetch('http://127.0.0.1:18081/')).toBeUndefined();
    expect((await json<Vm>(h, ['status', 'old'])).spec.nics[0]!.net).toMatchObject({ forwards: [] });
  });

  it('links two VMs on a private network with DHCP, keeps it across daemon restarts, and removes it whole', async () => {
    const h = home();
    const ns = netns();
    await ns.startDaemon(h);
    const made = await json<{ subnet: string; gateway: string; up: boolean }>(h, [
      'network',
      'create',
      'lab',
      '--nat',
    ]);
    expect(made).toMatchObject({ subnet: '10.77.0.0/24', gateway: '10.77.0.1', up: true });
    expect(await ns.exec(['nft', 'list', 'table', 'ip', 'phyllome-lab'])).toContain('masquerade');

    // b runs no guest agent: its address comes from Phyllome's DHCP leases.
    await createGuest(h, 'a', ['--net', 'network=lab']);
    await ok(h, ['create', 'b', ...noAgent(), '-m', '256M', '--net', 'network=lab']);
    for (const name of ['a', 'b']) await ok(h, ['start', name]);
    const [ipA, ipB] = [await leasedAddress(h, 'a'), await leasedAddress(h, 'b')];
    expect(ipA).toMatch(/^10\.77\.0\.\d+$/);
    expect(ipB).toMatch(/^10\.77\.0\.\d+$/);
    expect(ipA).not.toBe(ipB);

    // status shows each address: from the guest agent where there is one, else from the leases.
    const status = await json<Vm>(h, ['status', 'b']);
    expect(status.nics[0]).toMatchObject({ network: 'network lab', ips: [ipB], ipsFrom: 'DHCP leases' });
    const line = (await ok(h, ['status', 'b'])).split('\n').find((l) => l.includes('addresses'));
    expect(line).toMatch(
      new RegExp(`^\\s+addresses\\s+${ipB.replaceAll('.', '\\.')} \\(from DHCP leases\\)$`),
    );
    await waitFor(
      'a guest agent answer',
      async () => (await json<Vm>(h, ['status', 'a'])).nics[0]!.ipsFrom === 'guest agent' || undefined,
    );
    expect((await json<Vm>(h, ['status', 'a'])).nics[0]!.ips).toEqual([ipA]);

    // A reaches B's web server across the bridge.
    const page = await inGuest(h, 'a', httpFromGuest(ipB, 80), /NC-\d/);
    expect(page).toContain('phyllome guest web');

    // Statistics count a tap NIC from the guest's side (the tap itself counts the other way round):
    // 256 KiB fetched from b are bytes b sent and a received, while b received little.
    await inGuest(
      h,
      'b',
      'dd if=/dev/zero of=/www/big bs=1024 count=256 2>/dev/null; echo MADE-$?',
      /MADE-0/,
    );
    const got = await inGuest(
      h,
      'a',
      `printf 'GET /big HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${ipB} 80 | wc -c | sed s/^/GOT-/`,
      // The line's end too: the count can arrive in pieces.
      /GOT-\d+\r?\n/,
    );
    expect(Number(/GOT-(\d+)/.exec(got)![1])).toBeGreaterThan(256 * 1024);
    const [statsA, statsB] = [
      await json<StatsSample>(h, ['stats', 'a']),
      await json<StatsSample>(h, ['stats', 'b']),
    ];
    expect(statsB.nics[0]!.txBytes).toBeGreaterThan(256 * 1024);
    expect(statsB.nics[0]!.rxBytes).toBeLessThan(128 * 1024);
    expect(statsA.nics[0]!.rxBytes).toBeGreaterThan(256 * 1024);
    expect(statsA.net.rxBytes).toBe(statsA.nics[0]!.rxBytes);

    // The network outlives the daemon, and a daemon start repairs what is missing.
    await stopDaemon(h);
    await ns.exec(['ip', 'link', 'del', 'ph-lab']);
    await ns.startDaemon(h);
    const listed = await json<{ name: string; up: boolean; vms: string[] }[]>(h, ['network', 'list']);
    expect(listed).toMatchObject([{ name: 'lab', up: true, vms: ['a', 'b'] }]);
    // The running VMs' taps are back on the new bridge.
    const again = await inGuest(h, 'b', httpFromGuest(ipA, 80), /NC-\d/);
    expect(again).toContain('phyllome guest web');

    const refused = await cli(h, ['network', 'delete', 'lab']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/in use by running VM a, b: stop it first/);
    for (const name of ['a', 'b']) await ok(h, ['stop', name, '--force']);
    expect((await ns.links()).filter((l) => l.startsWith('pht'))).toEqual([]);

    await ok(h, ['network', 'delete', 'lab']);
    expect(await ns.links()).not.toContain('ph-lab');
    expect(await ns.commands()).not.toContain('dnsmasq');
    await expect(ns.exec(['nft', 'list', 'table', 'ip', 'phyllome-lab'])).rejects.toThrow();
    expect(await json(h, ['network', 'list'])).toEqual([]);
  });

  it('gives the guests of a NAT network the outside, masqueraded behind the host', async () => {
    const h = home();
    const ns = netns();
    const outside = await ns.makeOutside();
    // A web server outside that tells who called: it has no route back to the private subnet.
    const server = await outside.serve(
      "require('http').createServer((q, r) => r.end('caller ' + q.socket.remoteAddress + '\\n')).listen(8099, '0.0.0.0')",
      8099,
      'the outside server',
    );
    try {
      await ns.startDaemon(h);
      await ok(h, ['network', 'create', 'wan', '--nat']);
      await createGuest(h, 'out', ['--net', 'network=wan']);
      await ok(h, ['start', 'out']);
      expect(await leasedAddress(h, 'out')).toMatch(/^10\.77\.0\.\d+$/);
      const page = await inGuest(h, 'out', httpFromGuest('10.99.0.1', 8099), /NC-\d/);
      expect(page, page.slice(-600)).toContain('caller 10.99.0.2');
    } finally {
      server.kill('SIGKILL');
    }
  });

  it('plugs a VM into an existing host bridge with a tap of its own, removed when it stops', async () => {
    const h = home();
    const ns = netns();
    await ns.exec(['ip', 'link', 'add', 'br0', 'type', 'bridge']);
    await ns.exec(['ip', 'link', 'set', 'br0', 'up']);
    await ns.startDaemon(h);
    await createGuest(h, 'lan', ['--net', 'bridge=br0']);
    const vm = await json<Vm>(h, ['start', 'lan']);
    expect(vm.nics[0]).toMatchObject({ network: 'bridge br0' });
    const taps = JSON.parse(await ns.exec(['ip', '-j', 'link', 'show', 'master', 'br0'])) as {
      ifname: string;
    }[];
    expect(taps.map((t) => t.ifname)).toEqual([expect.stringMatching(/^pht[0-9a-f]{8}0$/)]);
    await ok(h, ['stop', 'lan', '--force']);
    expect((await ns.links()).filter((l) => l.startsWith('pht'))).toEqual([]);
    expect(await ns.links()).toContain('br0');
    // A NIC added on a bridge that is there is taken (one that is not is refused: nics.test.ts).
    expect(await ok(h, ['net', 'add', 'lan', '--net', 'bridge=br0'])).toMatch(
      /^Added NIC 1 to "lan": .* on bridge br0\./,
    );
  });

  it('puts a VM on a host NIC’s LAN through a macvtap carrying its MAC, removed when it stops', async () => {
    const h = home();
    const ns = netns();
    // The "LAN": the far end of the namespace's veth pair, with an address the guest can ping.
    await ns.exec(['ip', 'addr', 'add', '10.98.0.1/24', 'dev', 'v1']);
    await ns.startDaemon(h);
    await createGuest(h, 'lan', ['--net', 'macvtap=v0']);
    const vm = await json<Vm>(h, ['start', 'lan']);
    expect(vm.nics[0]).toMatchObject({ network: 'macvtap on v0' });
    const links = JSON.parse(await ns.exec(['ip', '-j', 'link', 'show', 'type', 'macvtap'])) as {
      ifname: string;
      address: string;
      link: string;
    }[];
    expect(links).toEqual([
      expect.objectContaining({
        ifname: expect.stringMatching(/^phm[0-9a-f]{8}0$/),
        address: vm.nics[0]!.mac,
        link: 'v0',
      }),
    ]);
    await waitForReady(h, 'lan');
    const out = await inGuest(
      h,
      'lan',
      'kill $(cat /var/run/udhcpc.pid); ifconfig eth0 10.98.0.5 netmask 255.255.255.0 up; ping -c 1 -W 3 10.98.0.1 | grep -o "1 packets received"; echo PING-$?',
      /PING-\d/,
    );
    expect(out).toContain('1 packets received');
    // A macvtap counts from the guest's side: its DHCP requests went out unanswered (nobody serves
    // DHCP on this LAN) while little came in, the ping's reply (98 bytes) among it.
    const nic = (await json<StatsSample>(h, ['stats', 'lan'])).nics[0]!;
    expect(nic.rxBytes).toBeGreaterThanOrEqual(98);
    expect(nic.txBytes).toBeGreaterThan(2 * nic.rxBytes!);
    await ok(h, ['stop', 'lan', '--force']);
    expect(JSON.parse(await ns.exec(['ip', '-j', 'link', 'show', 'type', 'macvtap']))).toEqual([]);
  });

  it('refuses bad input clearly and leaves nothing half-made', async () => {
    const h = home();
    const ns = netns();
    await ns.startDaemon(h);
    const leftovers = async () => ({
      links: (await ns.links()).filter((l) => l.startsWith('ph')),
      macvtaps: await ns.exec(['ip', 'link', 'show', 'type', 'macvtap']),
      processes: (await ns.commands()).filter((c) => /passt|dnsmasq|qemu/.test(c)),
      tables: await ns.exec(['nft', 'list', 'tables']),
    });
    const clean = await leftovers();
    expect(clean).toEqual({ links: [], macvtaps: '', processes: [], tables: '' });

    // A forward onto a host port another program holds.
    const holder = await ns.serve(
      "require('net').createServer().listen(18090, '127.0.0.1'); setTimeout(() => {}, 120000)",
      18090,
      'the port holder',
    );
    try {
      await createGuest(h, 'busy', ['--forward', '18090:80']);
      const started = await cli(h, ['start', 'busy']);
      expect(started.code).not.toBe(0);
      expect(started.stderr).toMatch(/127\.0\.0\.1:18090 -> 80\/tcp \(port already in use\)/);
      expect((await json<Vm>(h, ['status', 'busy'])).state).toBe('stopped');
      const added = await cli(h, ['net', 'forward', 'add', 'busy', '18090:81/tcp']);
      expect(added.stderr).toMatch(/host port 18090\/tcp is already forwarded/);
    } finally {
      holder.kill('SIGKILL');
    }

    // A bridge that does not exist.
    await createGuest(h, 'lan', ['--net', 'bridge=br9']);
    const noBridge = await cli(h, ['start', 'lan']);
    expect(noBridge.stderr).toMatch(
      /there is no bridge br9 on this host: create one with "ip link add br9 type bridge/,
    );

    // A host NIC that does not exist, for a macvtap.
    await createGuest(h, 'mvt', ['--net', 'macvtap=eth9']);
    expect((await cli(h, ['start', 'mvt'])).stderr).toMatch(
      /there is no network interface eth9 on this host/,
    );

    // Names that could escape into QEMU options or paths.
    for (const net of ['bridge=br0,script=/bin/sh', 'network=lab/x', 'network=a,b']) {
      const r = await cli(h, ['create', `bad${net.length}`, '--net', net, '-m', '64M']);
      expect(r.code, net).not.toBe(0);
      expect(r.stderr, net).toMatch(/nics\.0\.net\.(bridge|network)/);
    }
    for (const name of ['a,b', 'a/b', '../x']) {
      const r = await cli(h, ['network', 'create', name]);
      expect(r.stderr, name).toMatch(/lowercase letters, digits and "-"/);
    }
    const unknown = await cli(h, ['create', 'lost', '--net', 'network=nowhere', '-m', '64M']);
    expect(unknown.stderr).toMatch(
      /no network named "nowhere": create it with "phyllome network create nowhere"/,
    );

    // Overlapping subnets: with another network, and with the namespace's own interface.
    await ok(h, ['network', 'create', 'lab', '--subnet', '10.77.0.0/24']);
    const overlap = await cli(h, ['network', 'create', 'lab2', '--subnet', '10.77.0.128/25']);
    expect(overlap.stderr).toMatch(
      /10\.77\.0\.128\/25 overlaps 10\.77\.0\.0\/24 of network "lab": pick another, like 10\.77\.1\.0\/24/,
    );
    const host = await cli(h, ['network', 'create', 'lab3', '--subnet', '10.99.0.0/16']);
    expect(host.stderr).toMatch(/overlaps 10\.99\.0\.0\/24 of host interface v0/);
    await ok(h, ['network', 'delete', 'lab']);

    // A DHCP server that cannot start: the bridge made before it is removed again.
    await stopDaemon(h);
    await ns.startDaemon(h, { PHYLLOME_DNSMASQ: '/bin/false' });
    const broken = await cli(h, ['network', 'create', 'half', '--nat']);
    expect(broken.stderr).toMatch(/cannot create network "half": dnsmasq \(DHCP\) did not start/);

    expect(await leftovers()).toEqual(clean);
    expect(await json(h, ['network', 'list'])).toEqual([]);
    expect((await json<Vm[]>(h, ['list'])).map((v) => v.state)).toEqual(['stopped', 'stopped', 'stopped']);
  });
});
