import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { isDnsmasqFor, readLeases, startDnsmasq, type Lease } from '../net/dnsmasq.js';
import { addBridge, deleteLink, hostPrefixes, IpError, isBridge, linkExists } from '../net/ip.js';
import { addNat, deleteNat, hasNat, NftError } from '../net/nft.js';
import {
  addressPlan,
  formatSubnet,
  freeSubnet,
  overlaps,
  parseSubnet,
  subnetOfAddress,
  SubnetError,
} from '../net/subnet.js';
import { networkBridge } from '../net/wiring.js';
import { findBinary, readPidfile, terminate } from '../qemu/process.js';
import { NETWORK_NAME_RE, NETWORK_NAME_RULE } from '../spec/names.js';
import { conflict, UserError } from './errors.js';
import { writeJsonAtomic } from './files.js';
import { KeyedLock } from './lock.js';
import { networkRunDir, networksDir, type Layout } from './paths.js';

export interface NetworkDef {
  name: string;
  subnet: string;
  nat: boolean;
  bridge: string;
  createdAt: string;
  /** `creating` until every part is made: a crash leaves this, and the next daemon tears it down. */
  state: 'creating' | 'ready';
}

export interface NetworkInfo extends Omit<NetworkDef, 'state'> {
  gateway: string;
  /** Bridge, DHCP server and (with NAT) rules are all in place. */
  up: boolean;
  /** VMs with a NIC on this network. */
  vms: string[];
  leases: Lease[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How long dnsmasq must stay up after start before it counts as serving (it fails fast, e.g. port 67 taken). */
const DNSMASQ_SETTLE_MS = 300;

/**
 * Phyllome's private networks: a bridge, dnsmasq for DHCP and optional NAT per network, defined by a
 * file under PHYLLOME_HOME/networks. Made whole or not at all; remade at daemon start when a part is
 * missing (after a reboot, say).
 */
export class NetworkManager {
  private readonly defs = new Map<string, NetworkDef>();
  private readonly lock = new KeyedLock();

  constructor(
    private readonly layout: Layout,
    private readonly log: Logger,
    /** The VMs with a NIC on a network, and whether any of them runs. */
    private readonly usersOf: (network: string) => { vms: string[]; running: string[] },
  ) {}

  private file = (name: string) => path.join(networksDir(this.layout), `${name}.json`);
  private leaseFile = (name: string) => path.join(networkRunDir(this.layout, name), 'leases');
  private pidfile = (name: string) => path.join(networkRunDir(this.layout, name), 'dnsmasq.pid');

  async load(): Promise<void> {
    await mkdir(networksDir(this.layout), { recursive: true, mode: 0o750 });
    for (const entry of await readdir(networksDir(this.layout))) {
      if (!entry.endsWith('.json')) continue;
      try {
        const def = JSON.parse(
          await readFile(path.join(networksDir(this.layout), entry), 'utf8'),
        ) as NetworkDef;
        if (def.state !== 'ready') {
          await this.teardown(def);
          await rm(this.file(def.name), { force: true });
          this.log.warn({ network: def.name }, 'removed a network a crash left half-made');
          continue;
        }
        this.defs.set(def.name, def);
        await this.bringUp(def);
      } catch (e) {
        this.log.error({ network: entry, err: (e as Error).message }, 'cannot bring up network');
      }
    }
  }

  has(name: string): boolean {
    return this.defs.has(name);
  }

  private get(name: string): NetworkDef {
    const def = this.defs.get(name);
    if (!def) {
      throw new UserError(
        `no network named "${name}": see "phyllome network list", or create it with "phyllome network create ${name}"`,
        404,
        'not-found',
      );
    }
    return def;
  }

  async list(): Promise<NetworkInfo[]> {
    return Promise.all([...this.defs.keys()].sort().map((n) => this.info(n)));
  }

  async info(name: string): Promise<NetworkInfo> {
    const { state: _state, ...def } = this.get(name);
    return {
      ...def,
      gateway: addressPlan(parseSubnet(def.subnet)).gateway,
      up: await this.isUp(def),
      vms: this.usersOf(name).vms,
      leases: await this.leases(name),
    };
  }

  /** The DHCP leases handed out on this network (none for an unknown one). */
  leases(name: string): Promise<Lease[]> {
    return this.defs.has(name) ? readLeases(this.leaseFile(name)) : Promise.resolve([]);
  }

  create(req: { name: string; subnet?: string; nat?: boolean }): Promise<NetworkInfo> {
    // One lock for all: two creates must not pick the same free subnet.
    return this.lock.run('networks', 'network create', 60_000, async () => {
      const { name } = req;
      if (!NETWORK_NAME_RE.test(name))
        throw new UserError(`network name ${JSON.stringify(name)}: ${NETWORK_NAME_RULE}`);
      if (this.defs.has(name)) throw conflict(`a network named "${name}" already exists: pick another name`);
      if (process.getuid?.() !== 0) {
        throw new UserError('private networks make a bridge and need root: run phyllomed as root');
      }
      const bridge = networkBridge(name);
      if (await linkExists(bridge)) {
        throw conflict(`a host interface named ${bridge} already exists: pick another network name`);
      }
      const subnet = await this.pickSubnet(req.subnet);
      const def: NetworkDef = {
        name,
        subnet: formatSubnet(subnet),
        nat: !!req.nat,
        bridge,
        createdAt: new Date().toISOString(),
        state: 'creating',
      };
      await writeJsonAtomic(this.file(name), def);
      try {
        await this.bringUp(def);
      } catch (e) {
        await this.teardown(def);
        await rm(this.file(name), { force: true });
        if (e instanceof IpError || e instanceof NftError)
          throw new UserError(`cannot create network "${name}": ${e.message}`);
        throw e;
      }
      const ready = { ...def, state: 'ready' as const };
      await writeJsonAtomic(this.file(name), ready);
      this.defs.set(name, ready);
      this.log.info({ network: name, subnet: def.subnet, nat: def.nat }, 'network created');
      return this.info(name);
    });
  }

  delete(name: string): Promise<void> {
    return this.lock.run('networks', 'network delete', 60_000, async () => {
      const def = this.get(name);
      const { running } = this.usersOf(name);
      if (running.length) {
        throw conflict(`network "${name}" is in use by running VM ${running.join(', ')}: stop it first`);
      }
      await this.teardown(def);
      await rm(this.file(name), { force: true });
      this.defs.delete(name);
      this.log.info({ network: name }, 'network deleted');
    });
  }

  /** The subnet asked for, checked against every other network and every prefix the host uses; else a free one. */
  private async pickSubnet(text?: string) {
    let wanted;
    try {
      wanted = text ? parseSubnet(text) : undefined;
    } catch (e) {
      if (e instanceof SubnetError) throw new UserError(e.message);
      throw e;
    }
    const used = [
      ...[...this.defs.values()].map((d) => ({ subnet: parseSubnet(d.subnet), by: `network "${d.name}"` })),
      ...(await hostPrefixes()).flatMap(({ cidr, dev }) => {
        const [ip = '', prefix = ''] = cidr.split('/');
        const subnet = subnetOfAddress(ip, Number(prefix));
        return subnet ? [{ subnet, by: `host interface ${dev} (${cidr})` }] : [];
      }),
    ];
    if (!wanted) {
      try {
        return freeSubnet(used.map((u) => u.subnet));
      } catch (e) {
        throw new UserError((e as Error).message);
      }
    }
    const clash = used.find((u) => overlaps(u.subnet, wanted));
    if (clash) {
      throw conflict(
        `subnet ${text} overlaps ${formatSubnet(clash.subnet)} of ${clash.by}: pick another, like ${formatSubnet(freeSubnet(used.map((u) => u.subnet)))}`,
      );
    }
    return wanted;
  }

  private async dnsmasqPid(def: Pick<NetworkDef, 'name' | 'bridge'>): Promise<number | undefined> {
    const pid = await readPidfile(this.pidfile(def.name));
    return pid && (await isDnsmasqFor(pid, def.bridge)) ? pid : undefined;
  }

  private async isUp(def: Omit<NetworkDef, 'state'>): Promise<boolean> {
    return (
      (await isBridge(def.bridge)) && !!(await this.dnsmasqPid(def)) && (!def.nat || (await hasNat(def.name)))
    );
  }

  /** Makes whatever part of the network is missing: bridge, DHCP server, NAT rules. */
  private async bringUp(def: NetworkDef): Promise<void> {
    const subnet = parseSubnet(def.subnet);
    const plan = addressPlan(subnet);
    if (!(await isBridge(def.bridge))) await addBridge(def.bridge, `${plan.gateway}/${subnet.prefix}`);
    if (!(await this.dnsmasqPid(def))) {
      const dir = networkRunDir(this.layout, def.name);
      await mkdir(dir, { recursive: true, mode: 0o750 });
      const log = path.join(dir, 'dnsmasq.log');
      const binary = await findBinary('dnsmasq', process.env.PHYLLOME_DNSMASQ);
      if (!binary) throw new IpError('dnsmasq is not installed: apt-get install dnsmasq-base');
      const pid = startDnsmasq(
        binary,
        { bridge: def.bridge, ...plan, leases: this.leaseFile(def.name), nat: def.nat },
        log,
      );
      await writeJsonAtomic(this.pidfile(def.name), pid);
      await sleep(DNSMASQ_SETTLE_MS);
      if (!(await this.dnsmasqPid(def))) {
        const why = (await readFile(log, 'utf8').catch(() => '')).trim().split('\n').pop();
        throw new IpError(`dnsmasq (DHCP) did not start: ${why || 'no message'}`);
      }
    }
    if (def.nat && !(await hasNat(def.name))) await addNat(def.name, def.bridge, def.subnet);
  }

  /** Removes every part of the network that exists; safe on a half-made one. */
  private async teardown(def: NetworkDef): Promise<void> {
    const pid = await this.dnsmasqPid(def);
    if (pid) terminate(pid);
    if (def.nat) await deleteNat(def.name);
    await deleteLink(def.bridge);
    await rm(networkRunDir(this.layout, def.name), { recursive: true, force: true });
  }
}
