import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';

/** nftables failed; the message carries nft's words. */
export class NftError extends Error {}

/** One nftables table per NAT network, so deleting the network drops exactly its rules. */
export const natTable = (network: string): string => `phyllome-${network}`;

/**
 * Pure: the ruleset that gives a private network NAT to the outside, as libvirt's NAT mode does:
 * masquerade what leaves the subnet, let the bridge's traffic be forwarded out and the replies back in.
 */
export function natRuleset(network: string, bridge: string, subnet: string): string {
  return `table ip ${natTable(network)} {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr ${subnet} ip daddr != ${subnet} masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "${bridge}" accept
    oifname "${bridge}" ct state established,related accept
  }
}
`;
}

function nft(args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile('nft', args, { timeout: 10_000 }, (e, _out, stderr) => {
      if (!e) return resolve();
      const code = (e as NodeJS.ErrnoException).code;
      reject(
        new NftError(
          code === 'ENOENT'
            ? 'nft is missing: apt-get install nftables'
            : `nft: ${stderr.trim() || e.message}`,
        ),
      );
    });
    child.stdin?.end(input ?? '');
  });
}

/** Loads the table atomically (nft -f applies a whole file or nothing) and turns on IPv4 forwarding. */
export async function addNat(network: string, bridge: string, subnet: string): Promise<void> {
  await nft(['-f', '-'], natRuleset(network, bridge, subnet));
  await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
}

/** Drops the network's table; one already gone is fine. */
export const deleteNat = (network: string): Promise<void> =>
  nft(['delete', 'table', 'ip', natTable(network)]).catch(() => undefined);

export const hasNat = (network: string): Promise<boolean> =>
  nft(['list', 'table', 'ip', natTable(network)]).then(
    () => true,
    () => false,
  );
