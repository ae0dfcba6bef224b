import { localDisplay } from '../host/display.js';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino, { type Logger } from 'pino';
import { Keystore } from '../storage/keystore.js';
import { decideAccel } from '../host/accel.js';
import { inspectQemu } from '../host/qemu-binary.js';
import { introspectQemu, type QemuFeatures } from '../host/qemu-features.js';
import { buildApi } from './api.js';
import { GuestPlanner } from './planning.js';
import { writeFileAtomic } from './files.js';
import { checkSocketPath, daemonPidfile, daemonSocket, resolveLayout } from './paths.js';
import { VmManager } from './vms.js';
import { isLoopback, parseApiAddress } from './migrate-plan.js';
import { ensureCertificate } from './tls.js';
import { NetworkManager } from './networks.js';

// Through require: an ESM import of node:http evaluates its fetch/WebSocket getters, which load
// undici and cost the daemon several MB of resident memory it never uses.
const require = createRequire(import.meta.url);
const http = require('node:http') as typeof import('node:http');

export interface DaemonOptions {
  /**
   * TCP address (host:port) served beside the Unix socket, bearer-token protected: plain HTTP on
   * loopback, HTTPS anywhere else.
   */
  listen?: string;
  tokenFile?: string;
}

/**
 * One daemon per PHYLLOME_HOME. The mutex is an abstract Unix socket named after the home: binding it
 * is atomic, and the kernel releases it when the process dies, even by SIGKILL, so there is no stale
 * lock to clean up (and no race between two daemons cleaning one up).
 */
async function holdInstanceLock(home: string, pidfile: string): Promise<void> {
  const name = `\0phyllomed-${createHash('sha256').update(home).digest('hex').slice(0, 32)}`;
  const server = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(name, resolve);
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    const pid = (await readFile(pidfile, 'utf8').catch(() => '?')).trim();
    throw new Error(`phyllomed already runs for this PHYLLOME_HOME (pid ${pid})`, { cause: e });
  }
  server.unref();
}

/** Reads or makes the API token (0600) for TCP clients. */
async function loadToken(file: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    const token = randomBytes(24).toString('base64url');
    await writeFile(file, token + '\n', { mode: 0o600, flag: 'wx' });
    return token;
  }
}

/** For services: PHYLLOME_PASSPHRASE_FILE unlocks the keystore at start. A wrong one leaves it locked. */
async function unlockFromFile(keystore: Keystore, logger: Logger): Promise<void> {
  const file = process.env.PHYLLOME_PASSPHRASE_FILE;
  if (!file) return;
  try {
    const passphrase = (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
    logger.info(`keystore ${await keystore.unlock(passphrase)} from PHYLLOME_PASSPHRASE_FILE`);
  } catch (e) {
    logger.error({ err: (e as Error).message }, 'cannot unlock the keystore from PHYLLOME_PASSPHRASE_FILE');
  }
}

/** phyllomed: serve the API until SIGTERM/SIGINT; VMs keep running when it exits. */
export async function runDaemon(options: DaemonOptions = {}): Promise<void> {
  const layout = resolveLayout();
  const logger = pino({ name: 'phyllomed', level: process.env.PHYLLOME_LOG_LEVEL ?? 'info' });
  await mkdir(layout.home, { recursive: true, mode: 0o750 });
  await mkdir(layout.run, { recursive: true, mode: 0o750 });
  const socketPath = daemonSocket(layout);
  checkSocketPath(socketPath);
  const pidfile = daemonPidfile(layout);
  await holdInstanceLock(layout.home, pidfile);
  await writeFileAtomic(pidfile, `${process.pid}\n`);

  const qemu = await inspectQemu();
  const accel = decideAccel(qemu.binary);
  void accel.then((d) =>
    d.warning ? logger.warn(d.warning) : logger.info('KVM works: VMs use hardware acceleration'),
  );
  const keystore = new Keystore(path.join(layout.home, 'keystore.json'));
  await unlockFromFile(keystore, logger);
  let features: Promise<QemuFeatures> | undefined;
  // Asked once, when first needed (a plan, a host check, an import), never at start-up.
  const host = {
    qemu,
    accel,
    features: () => (features ??= introspectQemu(qemu.binary)),
    localDisplay: localDisplay(process.env),
  };
  const manager = new VmManager(layout, host, logger, keystore);
  const networks = new NetworkManager(layout, logger, (name) => manager.usersOfNetwork(name));
  // Networks first: VMs that outlived the daemon keep their taps on the bridges.
  await networks.load();
  manager.networks = networks;
  await manager.load();

  let token: string | undefined;
  if (options.listen) token = await loadToken(options.tokenFile ?? path.join(layout.home, 'api-token'));
  const address = options.listen ? parseApiAddress(options.listen, '--listen') : undefined;
  const listener = address && { ...address, tls: !isLoopback(address.host) };
  const planner = new GuestPlanner(accel, host);
  const app = await buildApi({
    manager,
    networks,
    planner,
    qemu,
    accel,
    logger,
    ...(token ? { token } : {}),
    listener,
    // The web UI's build sits beside the daemon bundle (scripts/build.mjs).
    webRoot: fileURLToPath(new URL('./web/', import.meta.url)),
  });

  await rm(socketPath, { force: true });
  await app.listen({ path: socketPath });
  await chmod(socketPath, 0o660);
  logger.info({ socket: socketPath, home: layout.home }, 'phyllomed ready');

  let tcp: Server | undefined;
  if (listener) {
    const { host, port } = listener;
    // One Fastify instance serves both listeners: TCP requests go through the same routes and hooks.
    const serve: Parameters<typeof http.createServer>[1] = (req, res) => app.routing(req, res);
    // Beyond loopback, HTTPS only: the token and a migration's PSK never cross a network in clear.
    let fingerprint: string | undefined;
    if (listener.tls) {
      const { cert, key } = await ensureCertificate(layout.home, host);
      fingerprint = new X509Certificate(cert).fingerprint256;
      tcp = (require('node:https') as typeof import('node:https')).createServer({ cert, key }, serve);
    } else {
      tcp = http.createServer(serve);
    }
    tcp.on('upgrade', (req, socket, head) => app.server.emit('upgrade', req, socket, head));
    await new Promise<void>((resolve, reject) => {
      tcp!.once('error', reject);
      tcp!.listen(port, host, resolve);
    });
    logger.info(
      { listen: options.listen, ...(fingerprint ? { fingerprint } : {}) },
      fingerprint
        ? `also listening on HTTPS (bearer token or browser login required); certificate SHA-256 fingerprint ${fingerprint}`
        : 'also listening on loopback TCP (bearer token or browser login required)',
    );
  }

  const shutdown = async (signal: string) => {
    logger.info({ signal }, 'phyllomed stopping; VMs keep running');
    manager.detachAll();
    tcp?.close();
    await app.close();
    await rm(socketPath, { force: true });
    await rm(pidfile, { force: true });
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}
