import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import type { VmInfo } from '../daemon/vms.js';
import type { StatsSample } from '../daemon/stats.js';
import { VERSION } from '../version.js';
import { ApiError, Client } from './client.js';
import { DEFAULT_UI_PORT } from '../daemon/ui-auth.js';
import { nicsFor, parseNet, type NetArg } from './net-args.js';
import { formatForward, parseForward } from '../net/wiring.js';
import type { ForwardSpec, GraphicsSpec } from '../spec/schema.js';
import { withWindow } from '../spec/window.js';
import { NIC_MODELS } from '../spec/nics.js';

const client = new Client();
const vmPath = (name: string) => `/v1/vms/${encodeURIComponent(name)}`;

async function print(json: boolean | undefined, value: unknown, human: () => string | Promise<string>) {
  process.stdout.write((json ? JSON.stringify(value, null, 2) : await human()) + '\n');
}

// Table rendering is loaded only for human output: --json callers skip its start-up cost.
const format = () => import('./format.js');

const warn = (vm: { warnings?: string[] }) =>
  vm.warnings?.forEach((w) => process.stderr.write(`warning: ${w}\n`));

const abs = (p: string | undefined) => (p === undefined ? undefined : path.resolve(p));

type DiskArg = { path: string; readOnly: boolean } | { size: string };

/** `PATH`, `PATH:ro` for a read-only disk, or a size like `64G` for a new disk. */
function parseDisk(value: string, previous: DiskArg[] = []): DiskArg[] {
  if (/^\d+(\.\d+)?\s*([KMGT]i?B?)?$/i.test(value)) return [...previous, { size: value }];
  const readOnly = value.endsWith(':ro');
  return [...previous, { path: path.resolve(readOnly ? value.slice(0, -3) : value), readOnly }];
}

/** create's network options, for nicsFor. */
const netOptions = (o: Record<string, unknown>) => ({
  nets: o.net as NetArg[] | undefined,
  forwards: o.forward as ForwardSpec[] | undefined,
  hostLoopback: o.hostLoopback as boolean | undefined,
});

const choiceOf =
  (what: string, allowed: readonly string[]) =>
  (value: string): string => {
    if (!allowed.includes(value))
      throw new Error(`${what} must be one of ${allowed.join(', ')}, not "${value}"`);
    return value;
  };

/** An SSH key given inline or as a file (~/.ssh/id_ed25519.pub). */
async function sshKey(value: string): Promise<string> {
  if (/^(ssh-|ecdsa-|sk-)/.test(value)) return value;
  const { readFile } = await import('node:fs/promises');
  try {
    return (await readFile(value, 'utf8')).trim();
  } catch {
    throw new Error(`--ssh-key: ${value} is neither an SSH public key nor a readable file`);
  }
}

const program = new Command('phyllome')
  .description('Phyllome: run and manage virtual machines')
  .version(VERSION)
  .showHelpAfterError('(run "phyllome help" for the list of commands)')
  // Before the subcommands, so they inherit it: usage errors exit 2, not from inside commander.
  .exitOverride();

const jsonOption = new Option('--json', 'print machine-readable JSON');

program
  .command('list')
  .alias('ls')
  .description('list VMs')
  .addOption(jsonOption)
  .action(async (o: { json?: boolean }) => {
    const vms = await client.call<VmInfo[]>('GET', '/v1/vms');
    await print(o.json, vms, async () => (await format()).vmTable(vms));
  });

program
  .command('create')
  .description('define a new VM: planned for an OS (--os) or installer (--iso), or built by hand')
  .argument('<name>', 'lowercase letters, digits and "-"')
  .option('--os <id>', 'plan the VM for this OS (see "phyllome os list")')
  .option('--iso <file>', 'installer ISO: attached as a CD-ROM, and its OS identified for the plan')
  .option(
    '--intent <intent>',
    'desktop, gaming or server: guides the plan',
    choiceOf('--intent', ['desktop', 'gaming', 'server']),
  )
  .option('--dry-run', 'print the plan (or spec) and its reasons; create nothing')
  .option('-m, --memory <size>', 'guest memory, like 512M or 2G')
  .option('-c, --cpus <n>', 'virtual CPUs', (v) => Number(v))
  .option(
    '--disk <file[:ro]|size>',
    'attach a disk image, or make a new one of this size (64G); repeatable',
    parseDisk,
  )
  .option('--no-encrypt', 'make new disks without encryption (they are LUKS-encrypted by default)')
  .option('--kernel <file>', 'boot this Linux kernel directly')
  .option('--initrd <file>', 'initramfs for --kernel')
  .option('--append <cmdline>', 'kernel command line for --kernel')
  .option(
    '--graphics <device>',
    'display device: none, vga, virtio-vga (2D), virtio-vga-gl (virgl 3D) or virtio-gpu-gl-pci',
  )
  .option('--render-node <file>', 'host render node for virtio-vga-gl (/dev/null: software rendering)')
  .option(
    '--window',
    "also show the screen in a window on the host's own display, 3D drawn there (the daemon needs a graphical session)",
  )
  .option(
    '--gpu <address>',
    'hand this host GPU to the guest (a PCI address from "phyllome host check"): passthrough, a VF or a mediated slice',
  )
  .option(
    '--firmware <type>',
    'bios, uefi or uefi-secure',
    choiceOf('--firmware', ['bios', 'uefi', 'uefi-secure']),
  )
  .option('--tpm', 'add a TPM 2.0 (swtpm)')
  .option('--no-tpm', 'no TPM, even where the plan would add one')
  .option('--machine <type>', 'q35 or pc', choiceOf('--machine', ['q35', 'pc']))
  .option('--disk-bus <bus>', 'virtio, sata or ide', choiceOf('--disk-bus', ['virtio', 'sata', 'ide']))
  .option('--nic <model>', `${NIC_MODELS.join(', ')} or none`, choiceOf('--nic', [...NIC_MODELS, 'none']))
  .option(
    '--net <network>',
    'user (default: passt, else QEMU user networking), bridge=BRIDGE, network=NAME or macvtap=NIC; repeatable, one NIC each',
    parseNet,
  )
  .option(
    '--forward <host:guest>',
    'forward a loopback host port to the guest, like 8080:80 or 5353:53/udp; repeatable',
    (v: string, p: ForwardSpec[] = []) => [...p, parseForward(v)],
  )
  .option('--host-loopback', "let the guest reach services on the host's loopback (off: safer)")
  .option(
    '--input <device>',
    'ps2, usb-tablet or virtio-tablet',
    choiceOf('--input', ['ps2', 'usb-tablet', 'virtio-tablet']),
  )
  .option(
    '--sound <device>',
    'none, ich9-intel-hda or ac97',
    choiceOf('--sound', ['none', 'ich9-intel-hda', 'ac97']),
  )
  .option('--cloud-init <user>', 'make a cloud-init seed for a Linux cloud image, with this user')
  .option(
    '--ssh-key <key|file>',
    'an SSH public key for the cloud-init user; repeatable',
    (v: string, p: string[] = []) => [...p, v],
  )
  .option('--password-hash <hash>', "the cloud-init user's password as a crypt hash (openssl passwd -6)")
  .option('--hostname <name>', "the guest's host name, set by cloud-init")
  .addOption(jsonOption)
  .action(async (name: string, o: Record<string, unknown>) => {
    const kernel = abs(o.kernel as string | undefined);
    if (!kernel && (o.initrd || o.append)) throw new Error('--initrd and --append need --kernel');
    const boot = kernel
      ? {
          kernel,
          ...(o.initrd ? { initrd: abs(o.initrd as string) } : {}),
          ...(o.append ? { append: o.append } : {}),
        }
      : undefined;
    const disks = (o.disk as DiskArg[] | undefined) ?? [];
    const graphics = o.graphics
      ? { device: o.graphics, ...(o.renderNode ? { renderNode: abs(o.renderNode as string) } : {}) }
      : undefined;
    const cloudInit = o.cloudInit
      ? {
          user: o.cloudInit,
          ...(o.passwordHash ? { passwordHash: o.passwordHash } : {}),
          ...(o.sshKey ? { sshKeys: await Promise.all((o.sshKey as string[]).map(sshKey)) } : {}),
          ...(o.hostname ? { hostname: o.hostname } : {}),
        }
      : undefined;
    if (!cloudInit && (o.sshKey || o.passwordHash || o.hostname)) {
      throw new Error('--ssh-key, --password-hash and --hostname need --cloud-init USER');
    }

    let spec: Record<string, unknown>;
    let plan: import('./format.js').PlanView | undefined;
    if (o.os || o.iso) {
      const sized = disks.filter((d): d is { size: string } => 'size' in d);
      const existing = disks.filter((d): d is { path: string; readOnly: boolean } => 'path' in d);
      if (sized.length > 1 || (sized.length && existing.length)) {
        throw new Error(
          'a planned VM gets one new disk (--disk SIZE) or existing disks (--disk FILE), not both',
        );
      }
      const overrides = Object.fromEntries(
        Object.entries({
          memory: o.memory,
          cpus: o.cpus,
          diskSize: sized[0]?.size,
          machine: o.machine,
          firmware: o.firmware,
          tpm: o.tpm,
          diskBus: o.diskBus,
          nic: o.nic,
          input: o.input,
          sound: o.sound,
          graphics: o.graphics,
          gpu: o.gpu,
        }).filter(([, v]) => v !== undefined),
      );
      const answer = await client.call<import('./format.js').PlanView & { spec: Record<string, unknown> }>(
        'POST',
        '/v1/plan',
        {
          name,
          ...(o.os ? { os: o.os } : {}),
          ...(o.iso ? { iso: abs(o.iso as string) } : {}),
          ...(o.intent ? { intent: o.intent } : {}),
          ...(existing.length ? { disks: existing } : {}),
          ...(boot ? { boot } : {}),
          ...(cloudInit ? { cloudInit: true } : {}),
          overrides,
        },
      );
      plan = answer;
      spec = { ...answer.spec, ...(graphics ? { graphics } : {}) };
      const planned = (answer.spec.nics as { model: string }[] | undefined)?.[0]?.model;
      if (planned) spec.nics = nicsFor({ model: planned, ...netOptions(o) });
    } else {
      if (o.intent || o.gpu) throw new Error('--intent and --gpu need --os or --iso to plan for');
      spec = {
        name,
        memory: o.memory ?? '512M',
        cpus: o.cpus ?? 1,
        ...(boot ? { boot } : {}),
        disks,
        graphics: graphics ?? { device: 'none' },
        nics:
          o.nic === 'none'
            ? []
            : nicsFor({ model: (o.nic as string | undefined) ?? 'virtio-net-pci', ...netOptions(o) }),
        ...Object.fromEntries(
          Object.entries({ machine: o.machine, tpm: o.tpm, input: o.input, sound: o.sound }).filter(
            ([, v]) => v !== undefined,
          ),
        ),
      };
      if (o.firmware && o.firmware !== 'bios') {
        throw new Error('UEFI firmware is picked by the planner: add --os ID (or --iso) to use --firmware');
      }
    }
    if (o.window) spec.graphics = withWindow(spec.graphics as GraphicsSpec);
    if (o.encrypt === false && Array.isArray(spec.disks)) {
      spec.disks = (spec.disks as Record<string, unknown>[]).map((d) =>
        'size' in d ? { ...d, encrypt: false } : d,
      );
    }
    const body = { ...spec, ...(cloudInit ? { cloudInit } : {}) };
    if (o.dryRun) {
      await print(o.json as boolean, plan ? { ...plan, spec } : { spec }, async () =>
        plan ? (await format()).planText(plan) : JSON.stringify(spec, null, 2),
      );
      return;
    }
    const vm = await client.call<VmInfo>('POST', '/v1/vms', body);
    await print(o.json as boolean, plan ? { ...vm, plan } : vm, async () =>
      [
        ...(plan ? [(await format()).planText(plan), ''] : []),
        `Created VM "${vm.name}". Start it with: phyllome start ${vm.name}`,
      ].join('\n'),
    );
  });

/** The passphrase from a file, the terminal (hidden) or standard input; never from argv. */
async function readPassphrase(file?: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  if (file) return (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
  if (process.stdin.isTTY) {
    const { password, isCancel } = await import('@clack/prompts');
    const value = await password({ message: 'Keystore passphrase' });
    if (isCancel(value)) throw new Error('cancelled');
    return value;
  }
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  return text.replace(/\r?\n$/, '');
}

program
  .command('unlock')
  .description('unlock the disk keystore (the first unlock creates it with this passphrase)')
  .option('--passphrase-file <file>', 'read the passphrase from this file instead of the terminal')
  .addOption(jsonOption)
  .action(async (o: { passphraseFile?: string; json?: boolean }) => {
    const passphrase = await readPassphrase(o.passphraseFile);
    const r = await client.call<{ state: string }>('POST', '/v1/keystore/unlock', { passphrase });
    await print(o.json, r, () =>
      r.state === 'created' ? 'Created the keystore; it is unlocked.' : 'The keystore is unlocked.',
    );
  });

program
  .command('lock')
  .description('lock the disk keystore: running VMs keep running, encrypted ones cannot start')
  .addOption(jsonOption)
  .action(async (o: { json?: boolean }) => {
    const r = await client.call<{ state: string }>('POST', '/v1/keystore/lock');
    await print(o.json, r, () => 'The keystore is locked.');
  });

type StorageState = {
  path: string;
  fsType?: string;
  kernelSupport: boolean;
  fscrypt: boolean;
  locked: boolean;
};
const storage = program
  .command('storage')
  .description('where VM state lives, and its filesystem encryption (fscrypt)');
storage
  .command('status', { isDefault: true })
  .description('whether the VM folder is fscrypt-encrypted, and unlocked')
  .addOption(jsonOption)
  .action(async (o: { json?: boolean }) => {
    const s = await client.call<StorageState>('GET', '/v1/storage');
    await print(o.json, s, () =>
      s.fscrypt
        ? `${s.path} is fscrypt-encrypted${s.locked ? ' and locked: run "phyllome unlock"' : ' and unlocked'}.`
        : `${s.path} (${s.fsType ?? 'unknown filesystem'}) is not fscrypt-encrypted: "phyllome storage encrypt" does it.`,
    );
  });
storage
  .command('encrypt')
  .description(
    'put the VM folder under fscrypt, its key kept in the keystore: VM names, specs, disks, variables, TPM state and logs encrypted at rest (every VM stopped; ext4 with the encrypt feature)',
  )
  .addOption(jsonOption)
  .action(async (o: { json?: boolean }) => {
    const r = await client.call<{ path: string; moved: string[] }>('POST', '/v1/storage/encrypt');
    await print(
      o.json,
      r,
      () =>
        `${r.path} is fscrypt-encrypted now (${r.moved.length} VM${r.moved.length === 1 ? '' : 's'} moved into it). The keystore unlocks it: "phyllome unlock" after a reboot.`,
    );
  });

program
  .command('os')
  .description('the operating systems Phyllome can plan for (from osinfo-db)')
  .command('list', { isDefault: true })
  .description('list known operating systems')
  .option('-s, --search <text>', 'only those whose id, name or vendor contains this')
  .addOption(jsonOption)
  .action(async (o: { search?: string; json?: boolean }) => {
    const query = o.search ? `?${new URLSearchParams({ search: o.search })}` : '';
    const answer = await client.call<{ version: string; entries: import('./format.js').OsRow[] }>(
      'GET',
      `/v1/os${query}`,
    );
    await print(
      o.json,
      answer,
      async () => `${(await format()).osTable(answer.entries)}\n(osinfo-db ${answer.version})`,
    );
  });

const disk = program
  .command('disk')
  .description("a VM's disks: list, add, remove, resize (live while it runs)");
disk
  .command('list', { isDefault: true })
  .description('show the disks and their sizes')
  .argument('<name>')
  .addOption(jsonOption)
  .action(async (name: string, o: { json?: boolean }) => {
    const answer = await client.call<{ disks: import('./format.js').DiskRow[] }>(
      'GET',
      `${vmPath(name)}/disks`,
    );
    await print(o.json, answer, async () => (await format()).diskTable(answer.disks));
  });
disk
  .command('add')
  .description('add a new disk (--size) or an existing image (--path); hot-plugged while running')
  .argument('<name>')
  .option('--size <size>', 'a new qcow2 disk of this size, like 10G')
  .option('--path <file>', 'an existing raw or qcow2 image')
  .option('--bus <bus>', 'virtio, sata or ide', choiceOf('--bus', ['virtio', 'sata', 'ide']))
  .option('--no-encrypt', 'make the new disk without encryption')
  .option('--ro', 'attach read-only')
  .addOption(jsonOption)
  .action(
    async (
      name: string,
      o: { size?: string; path?: string; bus?: string; encrypt: boolean; ro?: boolean; json?: boolean },
    ) => {
      const vm = await client.call<VmInfo>('POST', `${vmPath(name)}/disks`, {
        ...(o.size ? { size: o.size } : {}),
        ...(o.path ? { path: path.resolve(o.path) } : {}),
        ...(o.bus ? { bus: o.bus } : {}),
        ...(o.encrypt === false ? { encrypt: false } : {}),
        ...(o.ro ? { readOnly: true } : {}),
      });
      const added = vm.spec.disks.at(-1)!;
      await print(o.json, vm, () => `Added ${added.id} (${added.path}) to "${name}".`);
    },
  );
disk
  .command('remove')
  .description('detach a disk; its image file stays')
  .argument('<name>')
  .argument('<id>', 'the disk id, like disk1 (see "phyllome disk list")')
  .addOption(jsonOption)
  .action(async (name: string, id: string, o: { json?: boolean }) => {
    const vm = await client.call<VmInfo>('DELETE', `${vmPath(name)}/disks/${encodeURIComponent(id)}`);
    await print(o.json, vm, () => `Removed ${id} from "${name}".`);
  });
disk
  .command('resize')
  .description("grow a disk (shrinking is refused: it would cut the guest's data)")
  .argument('<name>')
  .argument('<id>')
  .argument('<size>', 'the new size, like 20G')
  .addOption(jsonOption)
  .action(async (name: string, id: string, size: string, o: { json?: boolean }) => {
    const vm = await client.call<VmInfo>('POST', `${vmPath(name)}/disks/${encodeURIComponent(id)}/resize`, {
      size,
    });
    await print(o.json, vm, () => `Resized ${id} of "${name}" to ${size}.`);
  });

const net = program
  .command('net')
  .description("a VM's networking: its NICs, and user-mode port forwards and host loopback");
net
  .command('add')
  .description('add a NIC to a stopped VM (user-mode by default; its NICs are listed by "phyllome status")')
  .argument('<name>')
  .option(
    '--net <network>',
    'user, bridge=BRIDGE, network=NAME or macvtap=NIC',
    (v: string) => parseNet(v)[0]!,
  )
  .option(
    '--model <model>',
    `${NIC_MODELS.join(', ')} (default: the model of the VM's first NIC)`,
    choiceOf('--model', NIC_MODELS),
  )
  .option('--mac <mac>', 'its MAC address (default: a new one in 52:54:00)')
  .addOption(jsonOption)
  .action(async (name: string, o: { net?: NetArg; model?: string; mac?: string; json?: boolean }) => {
    const vm = await client.call<VmInfo>('POST', `${vmPath(name)}/nics`, {
      ...(o.net ? { net: o.net } : {}),
      ...(o.model ? { model: o.model } : {}),
      ...(o.mac ? { mac: o.mac } : {}),
    });
    const n = vm.nics.at(-1)!;
    await print(o.json, vm, () => `Added NIC ${n.index} to "${name}": ${n.model} ${n.mac} on ${n.network}.`);
  });
net
  .command('remove')
  .description('remove NIC INDEX of a stopped VM (the NICs after it move up one)')
  .argument('<name>')
  .argument('<index>', 'the NIC, as "phyllome status" numbers it', (v) => Number(v))
  .addOption(jsonOption)
  .action(async (name: string, index: number, o: { json?: boolean }) => {
    const vm = await client.call<VmInfo>('DELETE', `${vmPath(name)}/nics/${index}`);
    await print(o.json, vm, () => `Removed NIC ${index} from "${name}".`);
  });
const forward = net.command('forward').description('forward host ports to the guest');
const nicOption = new Option('--nic <index>', 'the NIC (default: the first user-mode one)').argParser(Number);
const nicQuery = (nic?: number) => (nic === undefined ? '' : `?nic=${nic}`);
/** How a forward change reads: live now, or from the next start (passt reads forwards at start). */
const applied = (change: { applied: string }, name: string) =>
  change.applied === 'now' ? '' : ` It applies from the next start of "${name}" (restart it to use it now).`;
forward
  .command('add')
  .description('forward HOSTPORT on the host (loopback unless --public) to GUESTPORT in the guest')
  .argument('<name>')
  .argument('<forward>', 'HOSTPORT:GUESTPORT, optionally /udp, like 8080:80')
  .option('--public', 'bind every host address, not only loopback (reachable from the LAN)')
  .addOption(nicOption)
  .addOption(jsonOption)
  .action(async (name: string, spec: string, o: { public?: boolean; nic?: number; json?: boolean }) => {
    const f = parseForward(spec, !!o.public);
    const change = await client.call<{ applied: string; vm: VmInfo }>(
      'POST',
      `${vmPath(name)}/forwards${nicQuery(o.nic)}`,
      f,
    );
    await print(o.json, change, () => `Forwarding ${formatForward(f)} to "${name}".${applied(change, name)}`);
  });
forward
  .command('remove')
  .alias('rm')
  .description('stop forwarding a host port')
  .argument('<name>')
  .argument('<forward>', 'HOSTPORT[/udp], or the HOSTPORT:GUESTPORT it was added with')
  .addOption(nicOption)
  .addOption(jsonOption)
  .action(async (name: string, spec: string, o: { nic?: number; json?: boolean }) => {
    const f = /^\d+(\/(tcp|udp))?$/.test(spec)
      ? parseForward(spec.replace(/^(\d+)/, '$1:$1'))
      : parseForward(spec);
    const change = await client.call<{ applied: string }>(
      'DELETE',
      `${vmPath(name)}/forwards/${f.proto}/${f.hostPort}${nicQuery(o.nic)}`,
    );
    await print(
      o.json,
      change,
      () => `Removed the forward of host port ${f.hostPort}/${f.proto}.${applied(change, name)}`,
    );
  });
forward
  .command('list', { isDefault: true })
  .description("the VM's port forwards")
  .argument('<name>')
  .addOption(jsonOption)
  .action(async (name: string, o: { json?: boolean }) => {
    const answer = await client.call<{ forwards: (ForwardSpec & { nic: number })[] }>(
      'GET',
      `${vmPath(name)}/forwards`,
    );
    await print(o.json, answer, async () => (await format()).forwardTable(answer.forwards));
  });
net
  .command('host-loopback')
  .description("let the guest reach services on the host's loopback (on) or not (off, the default)")
  .argument('<name>')
  .argument('<on|off>', 'on or off', choiceOf('the setting', ['on', 'off']))
  .addOption(nicOption)
  .addOption(jsonOption)
  .action(async (name: string, setting: string, o: { nic?: number; json?: boolean }) => {
    const change = await client.call<{ applied: string }>(
      'POST',
      `${vmPath(name)}/host-loopback${nicQuery(o.nic)}`,
      {
        enabled: setting === 'on',
      },
    );
    await print(
      o.json,
      change,
      () =>
        `Host loopback ${setting === 'on' ? 'reachable from' : 'closed to'} "${name}".${applied(change, name)}`,
    );
  });

const network = program
  .command('network')
  .description('private networks: a bridge with DHCP and optional NAT that VMs join with --net network=NAME');
network
  .command('list', { isDefault: true })
  .alias('ls')
  .description('show the private networks')
  .addOption(jsonOption)
  .action(async (o: { json?: boolean }) => {
    const nets = await client.call<import('./format.js').NetworkRow[]>('GET', '/v1/networks');
    await print(o.json, nets, async () => (await format()).networkTable(nets));
  });
network
  .command('create')
  .description('make a private network (needs a root daemon)')
  .argument('<name>', 'lowercase letters, digits and "-", up to 12')
  .option('--subnet <cidr>', 'IPv4 network, like 10.77.0.0/24 (default: a free 10.77.N.0/24)')
  .option('--nat', 'give the VMs NAT to the outside through the host')
  .addOption(jsonOption)
  .action(async (name: string, o: { subnet?: string; nat?: boolean; json?: boolean }) => {
    const n = await client.call<import('./format.js').NetworkRow>('POST', '/v1/networks', {
      name,
      ...(o.subnet ? { subnet: o.subnet } : {}),
      ...(o.nat ? { nat: true } : {}),
    });
    await print(
      o.json,
      n,
      () =>
        `Created network "${n.name}" (${n.subnet}, gateway ${n.gateway}${n.nat ? ', NAT' : ''}). Join it with: phyllome create VM --net network=${n.name}`,
    );
  });
network
  .command('delete')
  .alias('rm')
  .description('remove a private network: its bridge, DHCP server and NAT rules')
  .argument('<name>')
  .action(async (name: string) => {
    await client.call('DELETE', `/v1/networks/${encodeURIComponent(name)}`);
    process.stdout.write(`Deleted network "${name}".\n`);
  });

program
  .command('clone')
  .description('copy a stopped VM under a new name (new uuid and MACs; encrypted stays encrypted)')
  .argument('<source>')
  .argument('<name>', 'the new VM')
  .option(
    '--linked',
    'share the disks read-only and keep only the differences (an encrypted clone shares the key)',
  )
  .addOption(jsonOption)
  .action(async (source: string, name: string, o: { linked?: boolean; json?: boolean }) => {
    const { withProgress } = await import('./progress.js');
    const vm = await withProgress(
      await client.wsUrl('/v1/events'),
      { vm: name, op: 'clone' },
      `Cloning "${source}" to "${name}"`,
      () =>
        client.call<VmInfo>('POST', `${vmPath(source)}/clone`, {
          name,
          ...(o.linked ? { linked: true } : {}),
        }),
    );
    await print(o.json, vm, () => `Cloned "${source}" to "${name}". Start it with: phyllome start ${name}`);
  });

type MigrateOptions = {
  to: string;
  tokenFile: string;
  fingerprint?: string;
  bandwidth?: string;
  json?: boolean;
};

program
  .command('migrate')
  .description(
    'live-migrate a running VM, disks included, to another phyllomed (its --listen address, on this host or another)',
  )
  .argument('<name>')
  .requiredOption(
    '--to <host:port>',
    "the destination daemon's API address, like 127.0.0.1:8470 or 192.168.1.20:8470",
  )
  .requiredOption('--token-file <file>', "the destination's API token (its PHYLLOME_HOME/api-token)")
  .option(
    '--fingerprint <sha256>',
    "on another host: the destination's certificate fingerprint (phyllome host tls-fingerprint there)",
  )
  .option('--bandwidth <size>', 'at most this many bytes per second for each disk and the RAM, like 50M')
  .addOption(jsonOption)
  .action(async (name: string, o: MigrateOptions) => {
    const [{ readFile }, { parseSize }, { withProgress }] = await Promise.all([
      import('node:fs/promises'),
      import('../spec/size.js'),
      import('./progress.js'),
    ]);
    const token = (
      await readFile(o.tokenFile, 'utf8').catch(() => {
        throw new Error(`--token-file: cannot read ${o.tokenFile}`);
      })
    ).trim();
    const vm = await withProgress(
      await client.wsUrl('/v1/events'),
      { vm: name, op: 'migrate' },
      `Migrating "${name}" to ${o.to}`,
      () =>
        client.call<VmInfo>('POST', `${vmPath(name)}/migrate`, {
          to: o.to,
          token,
          ...(o.fingerprint ? { fingerprint: o.fingerprint } : {}),
          ...(o.bandwidth ? { bandwidth: parseSize(o.bandwidth, 'B') } : {}),
        }),
    );
    await print(
      o.json,
      vm,
      () => `Migrated "${name}": it is ${vm.state} at ${o.to} now, and gone from here.`,
    );
  });

const passphraseOption = new Option(
  '--passphrase-file <file>',
  'the bundle passphrase (at least 8 characters), from this file',
);

program
  .command('export')
  .description('write a stopped VM as one .phyllome file: spec, disks, UEFI variables, TPM state')
  .argument('<name>')
  .option('-o, --output <file>', 'the bundle to write; "-" streams to standard output', '<name>.phyllome')
  .addOption(passphraseOption)
  .addOption(jsonOption)
  .action(async (name: string, o: { output: string; passphraseFile?: string; json?: boolean }) => {
    const { withProgress } = await import('./progress.js');
    const file = o.output === '<name>.phyllome' ? `${name}.phyllome` : o.output;
    const passphrase = o.passphraseFile ? await readPassphrase(o.passphraseFile) : undefined;
    const pass = passphrase === undefined ? {} : { passphrase };
    const events = await client.wsUrl('/v1/events');
    const exporting = (run: () => Promise<void>) =>
      withProgress(events, { vm: name, op: 'export' }, `Exporting "${name}"`, run);
    if (file === '-') {
      await exporting(async () => {
        const { pipeline } = await import('node:stream/promises');
        const res = await client.stream('POST', `${vmPath(name)}/export`, { json: pass });
        await pipeline(res, process.stdout);
        if (!res.complete)
          throw new Error('phyllomed stopped sending the bundle: the export failed (see its log)');
      });
      return;
    }
    // The daemon shares this host: it writes the file itself (as FILE.part-*, renamed when whole), so
    // the bundle is not relayed through this process; Ctrl-C closes the call, which stops it.
    const target = path.resolve(file);
    let bytes = 0;
    process.once('SIGINT', () => process.exit(130));
    await exporting(async () => {
      ({ bytes } = await client.call<{ bytes: number }>('POST', `${vmPath(name)}/export`, {
        ...pass,
        file: target,
      }));
    });
    await print(
      o.json,
      { vm: name, file: target, bytes },
      () => `Exported "${name}" to ${file} (${bytes} bytes).`,
    );
  });

program
  .command('import')
  .description('register a VM from a .phyllome file, fitted to this host; every checksum is verified first')
  .argument('<file>', 'the bundle; "-" reads standard input')
  .option('--name <name>', 'register it under this name (needed when its own is taken)')
  .addOption(passphraseOption)
  .addOption(jsonOption)
  .action(async (file: string, o: { name?: string; passphraseFile?: string; json?: boolean }) => {
    const { createReadStream } = await import('node:fs');
    const { stat } = await import('node:fs/promises');
    const { withProgress } = await import('./progress.js');
    const { BUNDLE_TYPE, PASSPHRASE_HEADER } = await import('../bundle/manifest.js');
    const fromStdin = file === '-';
    const size = fromStdin ? undefined : (await stat(file)).size;
    const passphrase = o.passphraseFile ? await readPassphrase(o.passphraseFile) : undefined;
    const query = o.name ? `?name=${encodeURIComponent(o.name)}` : '';
    const label = `Importing ${fromStdin ? 'a bundle' : path.basename(file)}`;
    const result = await withProgress(
      await client.wsUrl('/v1/events'),
      { vm: o.name ?? '', op: 'import' },
      label,
      async () => {
        const res = await client.stream('POST', `/v1/import${query}`, {
          body: fromStdin ? process.stdin : createReadStream(file),
          headers: {
            'content-type': BUNDLE_TYPE,
            ...(size !== undefined ? { 'content-length': String(size) } : { 'transfer-encoding': 'chunked' }),
            ...(passphrase !== undefined
              ? { [PASSPHRASE_HEADER]: Buffer.from(passphrase).toString('base64') }
              : {}),
          },
        });
        let text = '';
        for await (const c of res) text += String(c);
        return JSON.parse(text) as { vm: VmInfo; changes: { what: string; why: string }[] };
      },
    );
    await print(o.json, result, () =>
      [
        ...result.changes.map((c) => `changed: ${c.what}: ${c.why}`),
        `Imported "${result.vm.name}". Start it with: phyllome start ${result.vm.name}`,
      ].join('\n'),
    );
  });

const snapshot = program
  .command('snapshot')
  .description('snapshots: all disks, the UEFI variables and the TPM state, taken and restored as one');
snapshot
  .command('create')
  .description('take a snapshot (also while the VM runs: it pauses for a moment; RAM is not kept)')
  .argument('<name>')
  .argument('[snapshot]', 'its name (default: the date and time)')
  .addOption(jsonOption)
  .action(async (name: string, snap: string | undefined, o: { json?: boolean }) => {
    const taken = await client.call<{ name: string }>('POST', `${vmPath(name)}/snapshots`, {
      name: snap ?? new Date().toISOString().slice(0, 19).replaceAll(':', '-'),
    });
    await print(o.json, taken, () => `Took snapshot "${taken.name}" of "${name}".`);
  });
snapshot
  .command('list', { isDefault: true })
  .description('the snapshots as a tree, the current one marked')
  .argument('<name>')
  .addOption(jsonOption)
  .action(async (name: string, o: { json?: boolean }) => {
    const list = await client.call<{ tree: string }>('GET', `${vmPath(name)}/snapshots`);
    await print(o.json, list, () => list.tree);
  });
snapshot
  .command('revert')
  .description('put the disks, UEFI variables and TPM state back as they were (the VM must be stopped)')
  .argument('<name>')
  .argument('<snapshot>')
  .addOption(jsonOption)
  .action(async (name: string, snap: string, o: { json?: boolean }) => {
    const vm = await client.call<VmInfo>(
      'POST',
      `${vmPath(name)}/snapshots/${encodeURIComponent(snap)}/revert`,
    );
    await print(o.json, vm, () => `Reverted "${name}" to "${snap}".`);
  });
snapshot
  .command('delete')
  .description('delete a snapshot (its children move up to its parent)')
  .argument('<name>')
  .argument('<snapshot>')
  .action(async (name: string, snap: string) => {
    await client.call('DELETE', `${vmPath(name)}/snapshots/${encodeURIComponent(snap)}`);
    process.stdout.write(`Deleted snapshot "${snap}" of "${name}".\n`);
  });

const media = program
  .command('media')
  .description("a VM's CD-ROM media: insert and eject, also while it runs");
const driveOption = new Option('--drive <n>', 'which CD-ROM drive, from 0').argParser((v) => Number(v));
media
  .command('list', { isDefault: true })
  .description('show the CD-ROM drives and what is in them')
  .argument('<name>')
  .addOption(jsonOption)
  .action(async (name: string, o: { json?: boolean }) => {
    const answer = await client.call<{ drives: { drive: number; role: string; path?: string }[] }>(
      'GET',
      `${vmPath(name)}/media`,
    );
    await print(o.json, answer, () =>
      answer.drives.length
        ? answer.drives.map((d) => `${d.drive}  ${d.path ?? '(empty)'}  (${d.role})`).join('\n')
        : `"${name}" has no CD-ROM drive.`,
    );
  });
media
  .command('eject')
  .description('eject the medium')
  .argument('<name>')
  .addOption(driveOption)
  .addOption(jsonOption)
  .action(async (name: string, o: { drive?: number; json?: boolean }) => {
    const vm = await client.call<VmInfo>(
      'POST',
      `${vmPath(name)}/media`,
      o.drive !== undefined ? { drive: o.drive } : {},
    );
    await print(o.json, vm, () => `Ejected the medium of "${name}".`);
  });
media
  .command('insert')
  .description('insert an ISO (a stopped VM without a drive gets one)')
  .argument('<name>')
  .argument('<file>')
  .addOption(driveOption)
  .addOption(jsonOption)
  .action(async (name: string, file: string, o: { drive?: number; json?: boolean }) => {
    const vm = await client.call<VmInfo>('POST', `${vmPath(name)}/media`, {
      path: path.resolve(file),
      ...(o.drive !== undefined ? { drive: o.drive } : {}),
    });
    await print(o.json, vm, () => `Inserted ${path.resolve(file)} into "${name}".`);
  });

const simple = (
  verb: string,
  description: string,
  done: (vm: VmInfo) => string,
  extra?: (c: Command) => Command,
) => {
  let cmd = program.command(verb).description(description).argument('<name>').addOption(jsonOption);
  if (extra) cmd = extra(cmd);
  cmd.action(async (name: string, o: { json?: boolean; force?: boolean; timeout?: number }) => {
    const body = {
      ...(o.force ? { force: true } : {}),
      ...(o.timeout !== undefined ? { timeout: o.timeout } : {}),
    };
    const vm = await client.call<VmInfo>('POST', `${vmPath(name)}/${verb}`, body);
    warn(vm);
    await print(o.json, vm, () => done(vm));
  });
};

const timeoutOption = (c: Command) =>
  c.option(
    '-t, --timeout <seconds>',
    'how long the guest gets to shut down before it is forced off',
    (v) => Number(v),
    60,
  );

simple(
  'start',
  'start a VM',
  (vm) => `Started "${vm.name}" (${vm.accel}). Attach with: phyllome console ${vm.name}`,
);
simple(
  'stop',
  'shut a VM down with the ACPI power button, forcing it off after --timeout',
  (vm) => `Stopped "${vm.name}"${(vm as VmInfo & { forced?: boolean }).forced ? ' (forced off)' : ''}.`,
  (c) => timeoutOption(c).option('-f, --force', 'power off at once, like pulling the plug'),
);
simple('pause', 'pause a running VM', (vm) => `Paused "${vm.name}".`);
simple('resume', 'resume a paused VM', (vm) => `Resumed "${vm.name}".`);
simple(
  'restart',
  'stop a VM (ACPI, then forced) and start it again',
  (vm) => `Restarted "${vm.name}".`,
  timeoutOption,
);

program
  .command('status')
  .description('show one VM')
  .argument('<name>')
  .addOption(jsonOption)
  .action(async (name: string, o: { json?: boolean }) => {
    const vm = await client.call<VmInfo>('GET', vmPath(name));
    warn(vm);
    await print(o.json, vm, async () => (await format()).vmDetails(vm));
  });

program
  .command('set')
  .description("change a stopped VM's CPUs, memory, or window on the host's screen")
  .argument('<name>')
  .option('-c, --cpus <n>', 'virtual CPUs', (v) => Number(v))
  .option('-m, --memory <size>', 'guest memory, like 512M or 2G')
  .option(
    '--window <on|off>',
    "also show the screen in a window on the host's own display (off: the web console only)",
    choiceOf('--window', ['on', 'off']),
  )
  .addOption(jsonOption)
  .action(async (name: string, o: { cpus?: number; memory?: string; window?: string; json?: boolean }) => {
    const body = {
      ...(o.cpus !== undefined ? { cpus: o.cpus } : {}),
      ...(o.memory ? { memory: o.memory } : {}),
      ...(o.window ? { window: o.window === 'on' } : {}),
    };
    if (!Object.keys(body).length) throw new Error('say what to change: --cpus, --memory or --window');
    const vm = await client.call<VmInfo>('PATCH', vmPath(name), body);
    await print(o.json, vm, async () => `Changed "${name}".\n${(await format()).vmDetails(vm)}`);
  });

program
  .command('stats')
  .description("a running VM's CPU, memory, disk and network use (over one second)")
  .argument('<name>')
  .addOption(jsonOption)
  .action(async (name: string, o: { json?: boolean }) => {
    const s = await client.call<StatsSample>('GET', `${vmPath(name)}/stats`);
    await print(o.json, s, async () => (await format()).statsText(s));
  });

program
  .command('delete')
  .alias('rm')
  .description('delete a VM definition (refused while it runs, unless --force)')
  .argument('<name>')
  .option('-f, --force', 'power the VM off first if it runs')
  .action(async (name: string, o: { force?: boolean }) => {
    await client.call('DELETE', `${vmPath(name)}${o.force ? '?force=true' : ''}`);
    process.stdout.write(`Deleted "${name}".\n`);
  });

program
  .command('console')
  .description('attach to the serial console (detach with Ctrl-])')
  .argument('<name>')
  .action(async (name: string) => {
    await client.call('GET', vmPath(name));
    const { attachConsole } = await import('./console.js');
    await attachConsole(await client.wsUrl(`${vmPath(name)}/console`), name);
  });

program
  .command('export-kubevirt')
  .description('write a KubeVirt VirtualMachine manifest, with a CDI DataVolume to upload each image into')
  .argument('<name>')
  .option('-o, --output <file>', 'write it to this file instead of standard output')
  .option('-n, --namespace <namespace>', 'the Kubernetes namespace')
  .option('--kernel-image <image>', 'a container image with the kernel and initrd under /boot (direct boot)')
  .option('--start', 'let the cluster start the VM once its images are uploaded (runStrategy Always)')
  .addOption(jsonOption)
  .action(async (name: string, o: import('./kubevirt.js').KubevirtExportOptions) => {
    const vm = await client.call<VmInfo>('GET', vmPath(name));
    await (await import('./kubevirt.js')).exportKubevirt(vm, o);
  });

program
  .command('export-libvirt')
  .description('write a libvirt domain (for virsh define) that runs this VM; refused for encrypted disks')
  .argument('<name>')
  .option('-o, --output <file>', 'write it to this file instead of standard output')
  .option(
    '--accel <accel>',
    'kvm or tcg (default: what phyllomed uses here)',
    choiceOf('--accel', ['kvm', 'tcg']),
  )
  .option('--serial-log <file>', 'send the serial console (ttyS0) to this file instead of a pty')
  .addOption(jsonOption)
  .action(async (name: string, o: import('./libvirt.js').LibvirtExportOptions) => {
    const vm = await client.call<VmInfo>('GET', vmPath(name));
    const accel = o.accel ?? (await client.call<{ accel: 'kvm' | 'tcg' }>('GET', '/v1/host')).accel;
    await (await import('./libvirt.js')).exportLibvirt(vm.spec, accel, o);
  });

program
  .command('import-libvirt')
  .description(
    'define a VM from a libvirt domain (virt-manager, GNOME Boxes, Cockpit), saying what it left out',
  )
  .argument('<file|domain>', 'a domain XML file, or with --from the domain name')
  .option('--from <uri>', 'read the domain from this libvirt connection, like qemu:///system (through virsh)')
  .option('--name <name>', 'the VM name (default: the domain name)')
  .option('--dry-run', 'print the spec and what was not mapped; create nothing')
  .addOption(jsonOption)
  .action(async (source: string, o: { from?: string; name?: string; dryRun?: boolean; json?: boolean }) => {
    const { spec, unmapped } = await (await import('./libvirt.js')).importLibvirt(source, o);
    const left = unmapped.length ? `\nNot carried over:\n${unmapped.map((u) => `  - ${u}`).join('\n')}` : '';
    if (o.dryRun) {
      await print(o.json, { spec, unmapped }, () => JSON.stringify(spec, null, 2) + left);
      return;
    }
    const vm = await client.call<VmInfo>('POST', '/v1/vms', spec);
    await print(
      o.json,
      { ...vm, unmapped },
      () => `Created VM "${vm.name}". Start it with: phyllome start ${vm.name}${left}`,
    );
  });

const host = program
  .command('host')
  .description('the host: QEMU, the accelerator, and what it can do for VMs');

host
  .command('info', { isDefault: true })
  .description('show QEMU and the accelerator phyllomed uses')
  .addOption(jsonOption)
  .action(async (o: { json?: boolean }) => {
    const host = await client.call<{
      version: string;
      qemu: { binary: string; version: string };
      accel: string;
      warnings: string[];
    }>('GET', '/v1/host');
    warn(host);
    await print(
      o.json,
      host,
      () =>
        `phyllomed ${host.version}\nQEMU ${host.qemu.version} (${host.qemu.binary})\nAccelerator ${host.accel}`,
    );
  });

host
  .command('tls-fingerprint')
  .description(
    "print the SHA-256 fingerprint of phyllomed's HTTPS certificate, which migrations from other hosts pin (--fingerprint)",
  )
  .action(async () => {
    const { certificateFingerprint } = await import('../daemon/tls.js');
    process.stdout.write(`${await certificateFingerprint(client.layout.home)}\n`);
  });

const LEVEL_MARK = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;

host
  .command('check')
  .description('check what this host can do for VMs: KVM, IOMMU, GPUs, and the best graphics for each guest')
  .option('--root <dir>', "read a recorded host's /proc, /sys and /dev under this folder instead of /")
  .option('--intent <intent>', 'desktop, gaming or server: ranks the graphics plans', 'desktop')
  .option(
    '--allow-boot-gpu',
    "offer the host's boot or only GPU to guests too (single-GPU passthrough), with what it costs",
  )
  .addOption(jsonOption)
  .action(async (o: { root?: string; json?: boolean; intent: string; allowBootGpu?: boolean }) => {
    const query = new URLSearchParams({
      intent: o.intent,
      ...(o.allowBootGpu ? { allowBootGpu: 'true' } : {}),
      ...(o.root ? { root: path.resolve(o.root) } : {}),
    });
    const check = await client.call<{
      findings: { level: 'ok' | 'warn' | 'fail'; title: string; fix?: string }[];
      plans: Record<
        string,
        { kind: string; why: string; tradeoff: string; devices?: string[]; caveats?: string[] }[]
      >;
      seats: { gpu: string[]; usb: string }[];
    }>('GET', `/v1/host/check?${query}`);
    await print(o.json, check, () => {
      const lines = check.findings.map(
        (f) => `${LEVEL_MARK[f.level]}  ${f.title}${f.fix ? `\n      → ${f.fix}` : ''}`,
      );
      lines.push('', `Best graphics for each guest (${o.intent}):`);
      for (const [os, plans] of Object.entries(check.plans)) {
        const best = plans[0]!;
        lines.push(
          `  ${os.padEnd(8)} ${best.kind}${best.devices ? ` (${best.devices.join(', ')})` : ''}: ${best.why}`,
          ...(best.caveats ?? []).map((c) => `           ! ${c}`),
        );
      }
      check.seats.forEach((seat, i) =>
        lines.push(
          `Seat ${i + 1}: screen on ${seat.gpu.join(' + ')}, keyboard and mouse on USB controller ${seat.usb}`,
        ),
      );
      return lines.join('\n');
    });
    if (check.findings.some((f) => f.level === 'fail')) process.exitCode = 3;
  });

program
  .command('ui')
  .description('print a one-time URL that logs a browser into the web UI (valid 5 minutes, once)')
  .addOption(jsonOption)
  .action(async (o: { json?: boolean }) => {
    const login = await client.call<{ url: string; expiresAt: string }>('POST', '/v1/ui/login-code');
    await print(o.json, login, () => `Open ${login.url}\n(one login, until ${login.expiresAt})`);
  });

program
  .command('daemon')
  .description('run phyllomed in the foreground (for systemd)')
  .option(
    '--listen [host:port]',
    `also serve the API and the web UI on TCP (alone: 127.0.0.1:${DEFAULT_UI_PORT}); beyond loopback over HTTPS only, with a self-signed certificate made on first use`,
  )
  .option('--token-file <file>', 'the bearer token file for --listen (made if missing)')
  .action(async (o: { listen?: string | true; tokenFile?: string }) => {
    // The daemon bundle sits beside this one in dist/ (see scripts/build.mjs).
    const daemonBundle = './phyllomed.mjs';
    const { runDaemon } = (await import(daemonBundle)) as typeof import('../daemon/entry.js');
    await runDaemon({ ...o, listen: o.listen === true ? `127.0.0.1:${DEFAULT_UI_PORT}` : o.listen });
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? 0 : 2;
  } else {
    const message = e instanceof ApiError || e instanceof Error ? e.message : String(e);
    process.stderr.write(`error: ${message}\n`);
    process.exitCode = e instanceof ApiError && e.status === 404 ? 4 : 1;
  }
}
