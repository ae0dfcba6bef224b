/** A port forward as a VM's spec holds it (src/spec/schema.ts forwardSpec). */
export interface Forward {
  proto: 'tcp' | 'udp';
  hostPort: number;
  guestPort: number;
  public: boolean;
}

/** A NIC as GET /v1/vms/NAME describes it (src/daemon/vms.ts NicInfo). */
export interface NicInfo {
  index: number;
  /** Like `user (passt)`, `bridge br0`, `network lab`; on user-mode NICs `reason` says why that backend. */
  network: string;
  reason?: string;
  model: string;
  mac: string;
  /** The guest's addresses where known, and whence: its agent, or the private network's DHCP leases. */
  ips: string[];
  ipsFrom?: string;
}

/** What the Network tab reads of GET /v1/vms/NAME (its spec's NICs say what a change changes). */
export interface VmNetInfo {
  warnings: string[];
  nics: NicInfo[];
  spec: { nics: { net: { type: string; hostLoopback?: boolean; forwards?: Forward[] } }[] };
}

/** The answer to a forward or host-loopback change: live now, or from the VM's next start. */
export interface NetChange {
  applied: 'now' | 'next-start';
}

export interface NicRow extends NicInfo {
  addresses: string;
  /** A user-mode NIC's forwards and host-loopback setting; absent for the others. */
  user?: { forwards: Forward[]; hostLoopback: boolean };
}

/** Pure: each NIC with its addresses in words and, on user-mode networking, what the tab changes. */
export function nicRows(vm: VmNetInfo): NicRow[] {
  return vm.nics.map((nic) => {
    const net = vm.spec.nics[nic.index]?.net;
    const user = net?.type === 'user';
    return {
      ...nic,
      addresses: nic.ips.length
        ? `${nic.ips.join(', ')} (from ${nic.ipsFrom ?? 'the guest'})`
        : user
          ? 'not known: on user-mode networking the host reaches the guest through port forwards'
          : 'not known yet: they come from the guest agent or, on a private network, its DHCP leases',
      ...(user ? { user: { forwards: net.forwards ?? [], hostLoopback: !!net.hostLoopback } } : {}),
    };
  });
}

/** Pure: the VM's warnings about its networking (like QEMU's user networking opening host loopback). */
export const networkWarnings = (vm: VmNetInfo) => vm.warnings.filter((w) => /network/i.test(w));

/** Pure: a forward as the CLI prints it, like `127.0.0.1:8080 -> 80/tcp` (`*` binds every address). */
export const forwardText = (f: Forward) =>
  `${f.public ? '*' : '127.0.0.1'}:${f.hostPort} -> ${f.guestPort}/${f.proto}`;

/** What the add-forward form holds: text as typed. */
export interface ForwardDraft {
  hostPort: string;
  guestPort: string;
  proto: 'tcp' | 'udp';
  public: boolean;
}

export const emptyForward: ForwardDraft = { hostPort: '', guestPort: '', proto: 'tcp', public: false };

/** Pure: the form as a forward, or what is wrong with it in words that say what to type. */
export function parseForwardDraft(d: ForwardDraft): { forward: Forward } | { error: string } {
  const port = (text: string, what: string): number | string => {
    const n = /^\d{1,5}$/.test(text.trim()) ? Number(text) : NaN;
    return n >= 1 && n <= 65535 ? n : `${what} ${JSON.stringify(text)}: give a port from 1 to 65535`;
  };
  const hostPort = port(d.hostPort, 'host port');
  const guestPort = port(d.guestPort, 'guest port');
  if (typeof hostPort === 'string') return { error: hostPort };
  if (typeof guestPort === 'string') return { error: guestPort };
  return { forward: { proto: d.proto, hostPort, guestPort, public: d.public } };
}

/**
 * Pure: what a change did, as the CLI says it; passt reads forwards and host loopback at start, so a
 * running VM gets them from its next start, and the words say so.
 */
export const changeNotice = (done: string, change: NetChange, vm: string) =>
  change.applied === 'now'
    ? `${done}.`
    : `${done}. It applies from the next start of "${vm}" (restart it to use it now).`;

/** A private network as GET /v1/networks lists it (src/daemon/networks.ts NetworkInfo). */
export interface PrivateNetwork {
  name: string;
  subnet: string;
  gateway: string;
  nat: boolean;
  bridge: string;
  up: boolean;
  vms: string[];
  leases: { ip: string; mac: string }[];
}

/** Pure: the network's state in words, like `phyllome network list`. */
export const networkState = (n: PrivateNetwork) => (n.up ? 'up' : 'down (restart phyllomed to repair)');

/**
 * Pure: the create form as POST /v1/networks takes it. The daemon checks the name and subnet (and
 * overlaps with the host's own), so its refusal is the one shown.
 */
export function networkBody(d: { name: string; subnet: string; nat: boolean }) {
  const subnet = d.subnet.trim();
  return { name: d.name.trim(), ...(subnet ? { subnet } : {}), ...(d.nat ? { nat: true } : {}) };
}

/** The NIC models a VM may have (src/spec/nics.ts NIC_MODELS). */
export const NIC_MODELS = ['virtio-net-pci', 'e1000e', 'e1000', 'rtl8139'];

/** What a new NIC plugs into, as the add-NIC form offers it (the CLI's --net). */
export type NicKind = 'user' | 'network' | 'bridge' | 'macvtap';

/** The add-NIC form: text as typed; an empty model means the VM's first NIC's. */
export interface NicDraft {
  kind: NicKind;
  /** The private network, host bridge or host NIC, by kind; unused for user-mode. */
  target: string;
  model: string;
}

export const emptyNic: NicDraft = { kind: 'user', target: '', model: '' };

/** What the form asks for each kind's target, in words that say what to type. */
export const NIC_TARGETS: Record<Exclude<NicKind, 'user'>, { label: string; missing: string }> = {
  network: { label: 'Private network', missing: 'pick a private network (make one on the Networks page)' },
  bridge: { label: 'Host bridge', missing: 'name the host bridge, like br0' },
  macvtap: { label: 'Host NIC', missing: 'name the host NIC whose LAN it joins, like eth0' },
};

/**
 * Pure: the form as POST /v1/vms/NAME/nics takes it, or what is missing. The daemon checks names and
 * that a network exists, so its refusal is the one shown for those.
 */
export function nicBody(d: NicDraft): { body: Record<string, unknown> } | { error: string } {
  const model = d.model ? { model: d.model } : {};
  if (d.kind === 'user') return { body: { net: { type: 'user' }, ...model } };
  const target = d.target.trim();
  if (!target) return { error: NIC_TARGETS[d.kind].missing };
  const key = d.kind === 'macvtap' ? 'device' : d.kind;
  return { body: { net: { type: d.kind, [key]: target }, ...model } };
}
