import { writeFile } from 'node:fs/promises';
import { closeSync } from 'node:fs';
import { addMacvtap, addTap, deleteLink, ip, IpError, isBridge, linkExists } from '../net/ip.js';
import { findPasst, isPasstFor, PasstError, startPasst } from '../net/passt.js';
import { checkPortsFree, PortInUseError } from '../net/ports.js';
import { macvtapName, tapName, wireNics, type NicWiring } from '../net/wiring.js';
import { readPidfile, reapHelper } from '../qemu/process.js';
import type { ForwardSpec, NetSpec, VmSpec } from '../spec/schema.js';
import { conflict, UserError } from './errors.js';
import type { runtimeFiles } from './paths.js';

type Files = ReturnType<typeof runtimeFiles>;

/** A NIC's bridge must be there; the error says how to make it (a private network's: how to see it). */
async function checkBridge(bridge: string, network?: string): Promise<void> {
  if (await isBridge(bridge)) return;
  throw new UserError(
    network
      ? `private network "${network}" is not up (no bridge ${bridge}): see "phyllome network list", or create it with "phyllome network create ${network}"`
      : `there is no bridge ${bridge} on this host: create one with "ip link add ${bridge} type bridge && ip link set ${bridge} up" (and add your LAN NIC to it), or with nmcli or systemd-networkd`,
  );
}

async function checkHostNic(device: string): Promise<void> {
  if (!(await linkExists(device))) {
    throw new UserError(`there is no network interface ${device} on this host: see "ip link" for the NICs`);
  }
}

/**
 * The host bridge or host NIC a NIC plugs into must exist, as its start will check; refused with the
 * start's words. A private network's bridge is the network's, checked by the networks themselves.
 */
export async function checkHostSide(net: NetSpec): Promise<void> {
  if (net.type === 'bridge') await checkBridge(net.bridge);
  if (net.type === 'macvtap') await checkHostNic(net.device);
}

/**
 * Makes the host side of every NIC before QEMU starts: checks forwarded ports are free, starts passt
 * per user-mode NIC, makes taps on bridges. Anything made is undone if a later step fails.
 */
export async function plugNics(spec: VmSpec, files: Files): Promise<{ nets: NicWiring[]; fds: number[] }> {
  const passt = await findPasst();
  const nets = wireNics(spec, !!passt, files.passtSocket);
  // The macvtaps' open files, in the order of their fd numbers in QEMU.
  const fds: number[] = [];
  await checkForwardsFree(nets.flatMap((w) => (w.kind === 'slirp' || w.kind === 'passt' ? w.forwards : [])));
  try {
    for (const [i, w] of nets.entries()) {
      if (w.kind === 'passt') {
        const pid = await startPasst(passt, {
          socket: w.socket,
          log: files.passtLog(i),
          forwards: w.forwards,
          hostLoopback: w.hostLoopback,
          uid: process.getuid?.() ?? 0,
          gid: process.getgid?.() ?? 0,
        });
        await writeFile(files.passtPidfile(i), `${pid}\n`);
      } else if (w.kind === 'macvtap') {
        if (process.getuid?.() !== 0) {
          throw new UserError(`NIC ${i} is a macvtap on ${w.device}: that needs phyllomed to run as root`);
        }
        await checkHostNic(w.device);
        await deleteLink(w.ifname); // a crash's leftover
        fds.push(await addMacvtap(w.ifname, w.device, w.mac));
      } else if (w.kind === 'tap') {
        const nic = spec.nics[i]!.net;
        if (process.getuid?.() !== 0) {
          throw new UserError(`NIC ${i} joins bridge ${w.bridge}: that needs phyllomed to run as root`);
        }
        await checkBridge(w.bridge, nic.type === 'network' ? nic.network : undefined);
        await deleteLink(w.ifname); // a crash's leftover tap of this very NIC
        await addTap(w.ifname, w.bridge);
      }
    }
  } catch (e) {
    closeFds(fds);
    await unplugNics(spec, files);
    if (e instanceof PasstError || e instanceof IpError) throw new UserError(e.message);
    throw e;
  }
  return { nets, fds };
}

/** Forwards' host ports must be free: one another program holds is a conflict the user resolves. */
export async function checkForwardsFree(forwards: ForwardSpec[]): Promise<void> {
  try {
    await checkPortsFree(forwards);
  } catch (e) {
    if (e instanceof PortInUseError) throw conflict(e.message);
    throw e;
  }
}

/** The daemon's copies of the macvtaps' files, once QEMU has its own (or will never get them). */
export const closeFds = (fds: number[]): void => fds.forEach((fd) => closeSync(fd));

/**
 * Removes the host side of the VM's NICs once its QEMU is gone. passt leaves by itself when QEMU
 * disconnects (--one-off); one that never saw QEMU is stopped. Taps (ours by name) are deleted.
 */
export async function unplugNics(spec: VmSpec, files: Files): Promise<void> {
  for (const [i, nic] of spec.nics.entries()) {
    if (nic.net.type === 'user') {
      const pid = await readPidfile(files.passtPidfile(i));
      const socket = files.passtSocket(i);
      if (pid) await reapHelper(pid, () => isPasstFor(pid, socket), 500);
    } else {
      await deleteLink(nic.net.type === 'macvtap' ? macvtapName(spec.uuid, i) : tapName(spec.uuid, i));
    }
  }
}

/** A bridge remade while its VMs ran (a daemon start repairing a network) has lost their taps: plug them back. */
export async function replugTaps(nets: NicWiring[]): Promise<void> {
  for (const w of nets) {
    if (w.kind === 'tap' && (await isBridge(w.bridge))) {
      await ip(['link', 'set', 'dev', w.ifname, 'master', w.bridge, 'up']);
    }
  }
}
