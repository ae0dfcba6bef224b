/** IPv4 subnets for private networks: parsing, overlap, and the addresses each role gets. Pure. */

export interface Subnet {
  /** Network address as a 32-bit number. */
  base: number;
  prefix: number;
}

export class SubnetError extends Error {}

const toNumber = (ip: string): number | undefined => {
  const parts = ip.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
};

export const ipOf = (n: number): string =>
  [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');

const size = (s: Subnet) => 2 ** (32 - s.prefix);

/** `10.77.0.0/24` → a subnet; it must be the network address, with room for a gateway and DHCP (/8 to /29). */
export function parseSubnet(text: string): Subnet {
  const [ip = '', prefixText = ''] = text.split('/');
  const base = toNumber(ip);
  const prefix = /^\d{1,2}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (base === undefined || !(prefix >= 8 && prefix <= 29)) {
    throw new SubnetError(
      `bad subnet ${JSON.stringify(text)}: write an IPv4 network with a prefix from /8 to /29, like 10.77.0.0/24`,
    );
  }
  if (base % 2 ** (32 - prefix) !== 0) {
    const start = base - (base % 2 ** (32 - prefix));
    throw new SubnetError(`${text} is not a network address: did you mean ${ipOf(start)}/${prefix}?`);
  }
  return { base, prefix };
}

export const formatSubnet = (s: Subnet): string => `${ipOf(s.base)}/${s.prefix}`;

export const overlaps = (a: Subnet, b: Subnet): boolean =>
  a.base < b.base + size(b) && b.base < a.base + size(a);

/** The bridge (gateway, DNS) takes the first host address; DHCP hands out the rest but the broadcast. */
export function addressPlan(s: Subnet): {
  gateway: string;
  dhcpStart: string;
  dhcpEnd: string;
  netmask: string;
} {
  return {
    gateway: ipOf(s.base + 1),
    dhcpStart: ipOf(s.base + 2),
    dhcpEnd: ipOf(s.base + size(s) - 2),
    netmask: ipOf(2 ** 32 - size(s)),
  };
}

/** A subnet for a new network: the first free 10.77.N.0/24 that overlaps nothing in use. */
export function freeSubnet(used: Subnet[]): Subnet {
  for (let n = 0; n < 256; n++) {
    const candidate = { base: toNumber(`10.77.${n}.0`)!, prefix: 24 };
    if (!used.some((u) => overlaps(u, candidate))) return candidate;
  }
  throw new SubnetError('every 10.77.N.0/24 is in use: give one with --subnet');
}

/** An address with prefix, as `ip -j addr` reports it, to the subnet it lies in. */
export function subnetOfAddress(ip: string, prefix: number): Subnet | undefined {
  const n = toNumber(ip);
  if (n === undefined || prefix < 0 || prefix > 32) return undefined;
  const block = 2 ** (32 - prefix);
  return { base: n - (n % block), prefix };
}
