// Start-to-ready: `phyllome start` until the guest's ready line, against the same QEMU command line
// run by hand. Target: overhead <= 5 % of the raw time. Usage: node bench/start-to-ready.ts [rounds]
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { cli, createGuest, median, ms, prepare } from './lib.ts';

const READY = 'PHYLLOME-GUEST-READY';
const rounds = Number(process.argv[2] ?? 5);
const { guest, env, dir, cleanup } = prepare();
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));

async function waitForFile(file: string, text: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (readFileSync(file, 'utf8').includes(text)) return;
    } catch {
      /* not there yet */
    }
    if (Date.now() > deadline) throw new Error(`no ${text} in ${file}`);
    await sleep(20);
  }
}

/** Runs QEMU as a person would, reading the serial socket until the ready line; returns ms. */
async function rawRound(args: string[]): Promise<number> {
  const serialAt = args.findIndex((a) => a.startsWith('socket,id=serial0,'));
  const serialPath = /path=([^,]+)/.exec(args[serialAt]!)![1]!;
  const started = performance.now();
  const child = spawn('qemu-system-x86_64', args, { stdio: 'ignore' });
  let socket: net.Socket | undefined;
  for (let i = 0; i < 2000 && !socket; i++) {
    socket = await new Promise<net.Socket | undefined>((resolve) => {
      const s = net.createConnection(serialPath);
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (!socket) await sleep(5);
  }
  let seen = '';
  await new Promise<void>((resolve) =>
    socket!.on('data', (d) => {
      seen += d.toString();
      if (seen.includes(READY)) resolve();
    }),
  );
  const elapsed = performance.now() - started;
  socket!.destroy();
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  return elapsed;
}

try {
  await createGuest(env, guest, 'bench', ['--disk', `${guest}/disk.ext4:ro`]);
  await cli(env, ['list']); // the daemon is up and its KVM probe done before timing
  await cli(env, ['host']);
  const log = path.join(env.PHYLLOME_HOME!, 'vms/bench/serial.log');
  const managed: number[] = [];
  const raw: number[] = [];
  let rawArgs: string[] = [];
  const managedRound = async () => {
    const t0 = performance.now();
    await cli(env, ['start', 'bench']);
    await waitForFile(log, READY);
    const elapsed = performance.now() - t0;
    const { pid } = JSON.parse(await cli(env, ['status', 'bench', '--json'])) as { pid: number };
    // The same command line, without -S (nobody would be there to continue it) and with its own sockets.
    rawArgs = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .slice(1, -1)
      .filter((a) => a !== '-S')
      .map((a) => a.replaceAll(path.join(dir, 'run/vms/bench'), path.join(dir, 'raw')));
    await cli(env, ['stop', 'bench', '--force']);
    return elapsed;
  };
  const rawRoundFresh = async () => {
    rmSync(path.join(dir, 'raw'), { recursive: true, force: true });
    mkdirSync(path.join(dir, 'raw'));
    return rawRound(rawArgs);
  };
  managed.push(await managedRound()); // also records the command line to replay
  raw.push(await rawRoundFresh());
  // Alternate which goes first, so drift in the machine's speed hits both alike.
  for (let round = 1; round < rounds; round++) {
    if (round % 2) {
      raw.push(await rawRoundFresh());
      managed.push(await managedRound());
    } else {
      managed.push(await managedRound());
      raw.push(await rawRoundFresh());
    }
  }
  const overhead = (median(managed) - median(raw)) / median(raw);
  console.log(
    `start-to-ready over ${rounds} rounds (medians): phyllome ${ms(median(managed))}, raw QEMU ${ms(median(raw))}`,
  );
  console.log(
    `ratio phyllome/raw = ${(median(managed) / median(raw)).toFixed(3)}; overhead ${(overhead * 100).toFixed(1)} % (target <= 5 %)`,
  );
} finally {
  cleanup();
}
