import { execFile } from 'node:child_process';
import { openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { exists } from '../daemon/files.js';

const run = promisify(execFile);

/** iproute2 failed; the message carries its own words (e.g. "Operation not permitted"). */
export class IpError extends Error {}

/** Runs a bounded `ip` command; its stderr becomes the error. */
export async function ip(args: string[]): Promise<string> {
  try {
    return (await run('ip', args, { timeout: 10_000 })).stdout;
  } catch (e) {
    const err = e as { code?: string; stderr?: string; message: string };
    if (err.code === 'ENOENT') throw new IpError('the ip command is missing: apt-get install iproute2');
    throw new IpError(`ip ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`);
  }
}

export const linkExists = (name: string): Promise<boolean> => exists(`/sys/class/net/${name}`);
export const isBridge = (name: string): Promise<boolean> => exists(`/sys/class/net/${name}/bridge`);

/** Removes a link we made; one already gone is fine. */
export async function deleteLink(name: string): Promise<void> {
  if (await linkExists(name)) await ip(['link', 'del', name]).catch(() => undefined);
}

/** A tap plugged into `bridge` and up; removed again if any step fails, so none is left half-made. */
export async function addTap(name: string, bridge: string): Promise<void> {
  await ip(['tuntap', 'add', 'dev', name, 'mode', 'tap']);
  try {
    await ip(['link', 'set', 'dev', name, 'master', bridge, 'up']);
  } catch (e) {
    await deleteLink(name);
    throw e;
  }
}

/** A bridge with `gateway/prefix` on it, up; removed again on failure. */
export async function addBridge(name: string, cidr: string): Promise<void> {
  await ip(['link', 'add', 'name', name, 'type', 'bridge']);
  try {
    await ip(['addr', 'add', cidr, 'dev', name]);
    await ip(['link', 'set', 'dev', name, 'up']);
  } catch (e) {
    await deleteLink(name);
    throw e;
  }
}

/** Every IPv4 prefix this host already uses (addresses and routes), to refuse overlapping subnets. */
export async function hostPrefixes(): Promise<{ cidr: string; dev: string }[]> {
  const addrs = JSON.parse(await ip(['-j', '-4', 'addr', 'show'])) as {
    ifname: string;
    addr_info?: { local: string; prefixlen: number }[];
  }[];
  const routes = JSON.parse(await ip(['-j', '-4', 'route', 'show'])) as { dst: string; dev?: string }[];
  return [
    ...addrs.flatMap((a) =>
      (a.addr_info ?? []).map((i) => ({ cidr: `${i.local}/${i.prefixlen}`, dev: a.ifname })),
    ),
    ...routes
      .filter((r) => r.dst !== 'default')
      .map((r) => ({ cidr: r.dst.includes('/') ? r.dst : `${r.dst}/32`, dev: r.dev ?? '?' })),
  ];
}

/**
 * A macvtap on `device` carrying the guest NIC's MAC, up, and its character device opened for QEMU;
 * removed again if any step fails. Bridge mode lets guests on the same NIC reach each other.
 */
export async function addMacvtap(name: string, device: string, mac: string): Promise<number> {
  await ip([
    'link',
    'add',
    'link',
    device,
    'name',
    name,
    'address',
    mac,
    'type',
    'macvtap',
    'mode',
    'bridge',
  ]);
  try {
    await ip(['link', 'set', 'dev', name, 'up']);
    const index = (await readFile(`/sys/class/net/${name}/ifindex`, 'utf8')).trim();
    return openSync(`/dev/tap${index}`, 'r+');
  } catch (e) {
    await deleteLink(name);
    throw e instanceof IpError ? e : new IpError(`cannot open the macvtap ${name}: ${(e as Error).message}`);
  }
}
