import { createHash } from 'node:crypto';
import type { ForwardSpec, NetSpec, VmSpec } from '../spec/schema.js';

export type UserBackend = 'passt' | 'slirp';

/** How one NIC reaches its network, decided at start from the spec and what this host has. */
export type NicWiring =
  /** QEMU's built-in user networking (libslirp). */
  | { kind: 'slirp'; forwards: ForwardSpec[] }
  /** passt, over a Unix stream socket (QEMU 7.2+ `-netdev stream`). */
  | { kind: 'passt'; socket: string; forwards: ForwardSpec[]; hostLoopback: boolean }
  /** A tap device the daemon made and plugged into a bridge. */
  | { kind: 'tap'; ifname: string; bridge: string }
  /**
   * A macvtap on a host NIC, which QEMU gets as an open file: `fd` is its number in QEMU (the daemon
   * passes the macvtap's /dev/tapN there), `mac` the guest NIC's, which the macvtap must carry.
   */
  | { kind: 'macvtap'; ifname: string; device: string; mac: string; fd: number };

export interface UserNetChoice {
  backend: UserBackend;
  reason: string;
  /** Shown with the VM: a weaker setup than the user would expect. */
  warning?: string;
}

export const PASST_HINT = 'apt-get install passt (Debian) or dnf install passt (Fedora)';

/** passt when installed (or asked for), QEMU's own user networking otherwise; each with why. */
export function chooseUserBackend(
  net: Extract<NetSpec, { type: 'user' }>,
  passtInstalled: boolean,
): UserNetChoice {
  const backend = net.backend ?? (passtInstalled ? 'passt' : 'slirp');
  if (backend === 'passt') {
    return {
      backend,
      reason: net.backend
        ? 'passt, as chosen'
        : 'passt is installed: user-mode networking without root, faster than QEMU’s own, and the guest sees the host’s address',
    };
  }
  const why = net.backend
    ? 'QEMU’s built-in user networking, as chosen'
    : `passt is not installed (${PASST_HINT}): QEMU’s built-in user networking`;
  return {
    backend,
    reason: why,
    // libslirp maps every address of its virtual network to the host's loopback and QEMU 7.2 has no
    // option to turn that off: only passt (--no-map-gw) keeps the guest away from loopback services.
    ...(net.hostLoopback
      ? {}
      : {
          warning:
            'with QEMU’s built-in user networking the guest can reach services on the host’s loopback (through 10.0.2.2); install passt to prevent it',
        }),
  };
}

const nicTag = (uuid: string, index: number) =>
  `${createHash('sha256').update(uuid).digest('hex').slice(0, 8)}${index}`;

/** A tap's name: 15 bytes at most, stable for the VM's NIC so a crash's leftover can be found and removed. */
export const tapName = (uuid: string, index: number): string => `pht${nicTag(uuid, index)}`;
/** The same for a macvtap. */
export const macvtapName = (uuid: string, index: number): string => `phm${nicTag(uuid, index)}`;

/** The first file descriptor number QEMU gets macvtaps on (0-2 are its stdio). */
export const FIRST_NIC_FD = 3;

/** The Linux bridge behind a Phyllome private network (names are at most 12 bytes: this fits 15). */
export const networkBridge = (network: string): string => `ph-${network}`;

/** Pure: each NIC's wiring. `passtSocket(i)` names the socket of NIC i's passt. */
export function wireNics(
  spec: Pick<VmSpec, 'uuid' | 'nics'>,
  passtInstalled: boolean,
  passtSocket: (index: number) => string,
): NicWiring[] {
  let fd = FIRST_NIC_FD;
  return spec.nics.map((nic, i): NicWiring => {
    const net = nic.net;
    switch (net.type) {
      case 'user':
        return chooseUserBackend(net, passtInstalled).backend === 'passt'
          ? { kind: 'passt', socket: passtSocket(i), forwards: net.forwards, hostLoopback: net.hostLoopback }
          : { kind: 'slirp', forwards: net.forwards };
      case 'bridge':
        return { kind: 'tap', ifname: tapName(spec.uuid, i), bridge: net.bridge };
      case 'network':
        return { kind: 'tap', ifname: tapName(spec.uuid, i), bridge: networkBridge(net.network) };
      case 'macvtap':
        return {
          kind: 'macvtap',
          ifname: macvtapName(spec.uuid, i),
          device: net.device,
          mac: nic.mac,
          fd: fd++,
        };
    }
  });
}

/** QEMU's hostfwd rule: `tcp:127.0.0.1:8080-:80` (an empty host address binds every interface). */
export const slirpHostfwd = (f: ForwardSpec): string =>
  `${f.proto}:${f.public ? '' : '127.0.0.1'}:${f.hostPort}-:${f.guestPort}`;

/** `8080:80/udp` → a forward; the text users type and `phyllome net forward list` prints. */
export function parseForward(text: string, isPublic = false): ForwardSpec {
  const m = /^(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?$/.exec(text.trim());
  const hostPort = Number(m?.[1]);
  const guestPort = Number(m?.[2]);
  const ok = (p: number) => Number.isInteger(p) && p >= 1 && p <= 65535;
  if (!m || !ok(hostPort) || !ok(guestPort)) {
    throw new Error(
      `bad forward ${JSON.stringify(text)}: write HOSTPORT:GUESTPORT, optionally /udp, like 8080:80 or 5353:53/udp (ports 1-65535)`,
    );
  }
  return { proto: (m[3] as 'tcp' | 'udp' | undefined) ?? 'tcp', hostPort, guestPort, public: isPublic };
}

export const formatForward = (f: ForwardSpec): string =>
  `${f.public ? '*' : '127.0.0.1'}:${f.hostPort} -> ${f.guestPort}/${f.proto}`;
