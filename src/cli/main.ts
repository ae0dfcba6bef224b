import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import type { VmInfo } from '../daemon/vms.js';
import { VERSION } from '../version.js';
import { ApiError, Client } from './client.js';

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

/** `PATH` or `PATH:ro` for a read-only disk. */
function parseDisk(value: string, previous: { path: string; readOnly: boolean }[] = []) {
  const readOnly = value.endsWith(':ro');
  return [...previous, { path: path.resolve(readOnly ? value.slice(0, -3) : value), readOnly }];
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
  .description('define a new VM')
  .argument('<name>', 'lowercase letters, digits and "-"')
  .option('-m, --memory <size>', 'guest memory, like 512M or 2G', '512M')
  .option('-c, --cpus <n>', 'virtual CPUs', (v) => Number(v), 1)
  .option('--kernel <file>', 'boot this Linux kernel directly')
  .option('--initrd <file>', 'initramfs for --kernel')
  .option('--append <cmdline>', 'kernel command line for --kernel')
  .option(
    '--disk <file[:ro]>',
    'attach a disk image (raw or qcow2); repeatable; ":ro" for read-only',
    parseDisk,
  )
  .option(
    '--graphics <device>',
    'display device: none, virtio-vga (2D), virtio-vga-gl (virgl 3D) or virtio-gpu-gl-pci',
    'none',
  )
  .option('--render-node <file>', 'host render node for virtio-vga-gl (/dev/null: software rendering)')
  .addOption(jsonOption)
  .action(async (name: string, o: Record<string, unknown>) => {
    const kernel = abs(o.kernel as string | undefined);
    if (!kernel && (o.initrd || o.append)) throw new Error('--initrd and --append need --kernel');
    const body = {
      name,
      memory: o.memory,
      cpus: o.cpus,
      ...(kernel
        ? {
            boot: {
              kernel,
              ...(o.initrd ? { initrd: abs(o.initrd as string) } : {}),
              ...(o.append ? { append: o.append } : {}),
            },
          }
        : {}),
      disks: o.disk ?? [],
      graphics: { device: o.graphics, ...(o.renderNode ? { renderNode: abs(o.renderNode as string) } : {}) },
    };
    const vm = await client.call<VmInfo>('POST', '/v1/vms', body);
    await print(
      o.json as boolean,
      vm,
      () => `Created VM "${vm.name}". Start it with: phyllome start ${vm.name}`,
    );
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

const LEVEL_MARK = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;

host
  .command('check')
  .description('check what this host can do for VMs: KVM, IOMMU, GPUs, and the best graphics for each guest')
  .option('--root <dir>', "read a recorded host's /proc, /sys and /dev under this folder instead of /")
  .option('--intent <intent>', 'desktop, gaming or server: ranks the graphics plans', 'desktop')
  .addOption(jsonOption)
  .action(async (o: { root?: string; json?: boolean; intent: string }) => {
    const query = new URLSearchParams({
      intent: o.intent,
      ...(o.root ? { root: path.resolve(o.root) } : {}),
    });
    const check = await client.call<{
      findings: { level: 'ok' | 'warn' | 'fail'; title: string; fix?: string }[];
      plans: Record<string, { kind: string; why: string; tradeoff: string; devices?: string[] }[]>;
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
  .command('daemon')
  .description('run phyllomed in the foreground (for systemd)')
  .option('--listen <host:port>', 'also serve the API on a loopback TCP address, with a bearer token')
  .option('--token-file <file>', 'the bearer token file for --listen (made if missing)')
  .action(async (o: { listen?: string; tokenFile?: string }) => {
    // The daemon bundle sits beside this one in dist/ (see scripts/build.mjs).
    const daemonBundle = './phyllomed.mjs';
    const { runDaemon } = (await import(daemonBundle)) as typeof import('../daemon/entry.js');
    await runDaemon(o);
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
