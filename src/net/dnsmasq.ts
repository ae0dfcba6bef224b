import { readFile } from 'node:fs/promises';
import { argvOf, spawnDetached } from '../qemu/process.js';

export interface DnsmasqOptions {
  bridge: string;
  gateway: string;
  dhcpStart: string;
  dhcpEnd: string;
  netmask: string;
  leases: string;
  /** With NAT the guests get a default route and DNS through the gateway; without, neither. */
  nat: boolean;
}

/**
 * Pure: dnsmasq serving DHCP on one bridge only. No config file, hosts or resolv of the host's own
 * (`--conf-file=/dev/null`), bound to the bridge so it never answers on another interface.
 */
export function dnsmasqArgs(o: DnsmasqOptions): string[] {
  return [
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--no-hosts',
    '--bind-interfaces',
    `--interface=${o.bridge}`,
    '--except-interface=lo',
    `--listen-address=${o.gateway}`,
    `--dhcp-range=${o.dhcpStart},${o.dhcpEnd},${o.netmask},1h`,
    `--dhcp-leasefile=${o.leases}`,
    '--dhcp-authoritative',
    '--log-facility=-',
    // Runs as root: the lease file lives in the daemon's own 0750 runtime folder.
    '--user=root',
    ...(o.nat ? [] : ['--port=0', '--dhcp-option=option:router', '--dhcp-option=option:dns-server']),
  ];
}

export interface Lease {
  mac: string;
  ip: string;
  hostname?: string;
  expires: number;
}

/** Pure: dnsmasq's lease file, one `EXPIRY MAC IP HOSTNAME CLIENTID` line per lease. */
export function parseLeases(text: string): Lease[] {
  return text
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 3 && /^\d+$/.test(f[0]!))
    .map(([expires, mac, ip, hostname]) => ({
      mac: mac!.toLowerCase(),
      ip: ip!,
      expires: Number(expires),
      ...(hostname && hostname !== '*' ? { hostname } : {}),
    }));
}

export const readLeases = async (file: string): Promise<Lease[]> =>
  parseLeases(await readFile(file, 'utf8').catch(() => ''));

export const isDnsmasqFor = async (pid: number, bridge: string): Promise<boolean> =>
  (await argvOf(pid))?.includes(`--interface=${bridge}`) ?? false;

/** Starts dnsmasq detached (it outlives a daemon restart, with the network). */
export const startDnsmasq = (binary: string, o: DnsmasqOptions, log: string): number =>
  spawnDetached(binary, dnsmasqArgs(o), log);
