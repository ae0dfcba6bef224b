import type { ForwardSpec } from '../spec/schema.js';

/** A NIC's network as `create --net` takes it, before the daemon checks it. */
export type NetArg =
  | { type: 'user' }
  | { type: 'bridge'; bridge: string }
  | { type: 'network'; network: string }
  | { type: 'macvtap'; device: string };

/** `user`, `bridge=br0`, `network=NAME` or `macvtap=eth0` → the spec's net; repeatable, one NIC each. */
export function parseNet(value: string, previous: NetArg[] = []): NetArg[] {
  const [kind, arg] = value.split(/=(.*)/s);
  if (kind === 'user' && arg === undefined) return [...previous, { type: 'user' }];
  if (kind === 'bridge' && arg) return [...previous, { type: 'bridge', bridge: arg }];
  if (kind === 'network' && arg) return [...previous, { type: 'network', network: arg }];
  if (kind === 'macvtap' && arg) return [...previous, { type: 'macvtap', device: arg }];
  throw new Error(
    `--net ${JSON.stringify(value)}: write user (the default), bridge=BRIDGE (a host bridge, like bridge=br0) network=NAME (see "phyllome network list") or macvtap=NIC (the LAN of a host NIC, like macvtap=eth0)`,
  );
}

/**
 * The spec's NICs: one per --net (a user-mode NIC when none is given), each of `model`. Forwards and
 * the loopback opt-in go to the first user-mode NIC.
 */
export function nicsFor(o: {
  model: string;
  nets?: NetArg[];
  forwards?: ForwardSpec[];
  hostLoopback?: boolean;
}): { model: string; net: Record<string, unknown> }[] {
  const nets: Record<string, unknown>[] = (o.nets ?? [{ type: 'user' }]).map((n) => ({ ...n }));
  const user = nets.find((n) => n.type === 'user');
  if ((o.forwards?.length || o.hostLoopback) && !user) {
    throw new Error('--forward and --host-loopback need a user-mode NIC (--net user)');
  }
  if (user) {
    if (o.forwards?.length) user.forwards = o.forwards;
    if (o.hostLoopback) user.hostLoopback = true;
  }
  return nets.map((net) => ({ model: o.model, net }));
}
