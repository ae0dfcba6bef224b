import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { daemonLog, daemonSocket, resolveLayout, type Layout } from '../daemon/paths.js';
import { sameFingerprint } from '../daemon/tls.js';

// Loaded through require: an ESM import of node:http evaluates all its exports, and the getters for
// fetch/WebSocket pull in undici, a fifth of this command's start-up time.
const require = createRequire(import.meta.url);
const http = require('node:http') as typeof import('node:http');

/** An error the daemon answered with; its message already says what to do. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
    super(message);
  }
}

export interface Response<T> {
  status: number;
  body: T;
}

/**
 * Where a daemon answers: its Unix socket, or TCP with its bearer token; over HTTPS, beyond
 * loopback, with its certificate's fingerprint to pin (parseFingerprint's form).
 */
export type DaemonAddress =
  { socketPath: string } | { host: string; port: number; token: string; fingerprint?: string | undefined };

/**
 * A TLS connection to a daemon whose certificate has `fingerprint`, checked before anything is sent:
 * daemons' certificates are self-signed, so the fingerprint is the trust, not a CA.
 */
function pinnedTls(host: string, port: number, fingerprint: string, timeoutMs = 30_000): Promise<Socket> {
  const tls = require('node:tls') as typeof import('node:tls');
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port, rejectUnauthorized: false, timeout: timeoutMs }, () => {
      const presented = socket.getPeerCertificate().fingerprint256 ?? 'none';
      socket.setTimeout(0);
      if (sameFingerprint(presented, fingerprint)) return resolve(socket);
      socket.destroy();
      reject(
        new Error(
          `${host}:${port} presented a certificate with SHA-256 fingerprint ${presented}, not the expected ${fingerprint}: nothing was sent; check the fingerprint with "phyllome host tls-fingerprint" on that host`,
        ),
      );
    });
    socket.on('error', reject);
    socket.on('timeout', () =>
      socket.destroy(new Error(`no TLS answer from ${host}:${port} within ${timeoutMs} ms`)),
    );
  });
}

async function request<T>(
  to: DaemonAddress,
  method: string,
  url: string,
  body?: unknown,
  timeoutMs?: number,
): Promise<Response<T>> {
  // HTTP inside a pinned TLS connection, opened and checked before the request writes a byte.
  const pinned =
    'fingerprint' in to && to.fingerprint
      ? await pinnedTls(to.host, to.port, to.fingerprint, timeoutMs)
      : undefined;
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        ...('socketPath' in to ? { socketPath: to.socketPath } : { host: to.host, port: to.port }),
        ...(pinned ? { createConnection: () => pinned } : {}),
        method,
        path: url,
        headers: {
          ...(payload
            ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
            : {}),
          ...('token' in to ? { authorization: `Bearer ${to.token}` } : {}),
        },
        ...(timeoutMs ? { timeout: timeoutMs } : {}),
      },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (data += d));
        res.on('end', () => {
          const parsed = data ? (JSON.parse(data) as T) : (undefined as T);
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('error', reject);
    // Only our own bound: Node's default agent also times idle sockets out, which must not end a long call.
    if (timeoutMs) req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    if (payload) req.write(payload);
    req.end();
  });
}

/**
 * The daemon waits on sockets and moves small JSON: V8's lite mode (no optimizing compiler, lazy
 * feedback) and a small young generation cut its resident memory by a fifth at no visible cost
 * (bench/scale.ts). CPU-heavy work belongs in child processes. bin/phyllome passes the same flags
 * when it runs `phyllome daemon` in the foreground.
 */
export const DAEMON_NODE_FLAGS = ['--lite-mode', '--max-semi-space-size=1'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Talks to phyllomed over its Unix socket, starting one in the background if none runs. */
export class Client {
  readonly layout: Layout = resolveLayout();
  readonly socket = daemonSocket(this.layout);
  private ready: Promise<void> | undefined;

  private async ensureDaemon(): Promise<void> {
    try {
      await request({ socketPath: this.socket }, 'GET', '/v1/vms');
      return;
    } catch {
      /* none answering: start one */
    }
    mkdirSync(this.layout.home, { recursive: true, mode: 0o750 });
    const log = openSync(daemonLog(this.layout), 'a', 0o640);
    const script = process.argv[1];
    if (!script) throw new Error('cannot find the phyllome program to start phyllomed');
    const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, script, 'daemon'], {
      detached: true,
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    // Ours may exit because another CLI started a daemon first: give that one a moment to answer.
    let exitedAt: number | undefined;
    child.on('exit', () => (exitedAt = Date.now()));
    child.unref();
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        await request({ socketPath: this.socket }, 'GET', '/v1/vms');
        return;
      } catch {
        if ((exitedAt !== undefined && Date.now() > exitedAt + 3000) || Date.now() > deadline) {
          throw new Error(`phyllomed did not start: see ${daemonLog(this.layout)}`);
        }
        await sleep(50);
      }
    }
  }

  async call<T>(method: string, url: string, body?: unknown): Promise<T> {
    this.ready ??= this.ensureDaemon();
    await this.ready;
    return callDaemon<T>({ socketPath: this.socket }, method, url, body);
  }

  /**
   * A request whose body or answer is a stream (bundles), never held in memory. An error answer
   * (JSON) becomes an ApiError.
   */
  async stream(
    method: string,
    url: string,
    o: { json?: unknown; body?: NodeJS.ReadableStream; headers?: Record<string, string> } = {},
  ): Promise<import('node:http').IncomingMessage> {
    this.ready ??= this.ensureDaemon();
    await this.ready;
    const payload = o.json === undefined ? undefined : JSON.stringify(o.json);
    const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      const req = http.request({
        socketPath: this.socket,
        method,
        path: url,
        headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...o.headers },
      });
      req.on('response', resolve).on('error', reject);
      if (o.body) o.body.on('error', (e) => req.destroy(e)).pipe(req);
      else req.end(payload);
    });
    if ((res.statusCode ?? 0) < 400) return res;
    let text = '';
    for await (const c of res) text += String(c);
    throw apiError(res.statusCode ?? 0, JSON.parse(text || '{}') as ErrorBody);
  }

  /** ws+unix URL of a daemon WebSocket endpoint. */
  async wsUrl(path: string): Promise<string> {
    this.ready ??= this.ensureDaemon();
    await this.ready;
    return `ws+unix://${this.socket}:${path}`;
  }
}

type ErrorBody = { error?: { message: string; code: string } } | undefined;

/** The daemon's error answer as an ApiError with its message. */
const apiError = (status: number, body: ErrorBody): ApiError =>
  new ApiError(body?.error?.message ?? `phyllomed answered ${status}`, status, body?.error?.code ?? 'error');

/** One API call (bounded by `timeoutMs` when given); an error answer becomes an ApiError with its message. */
export async function callDaemon<T>(
  to: DaemonAddress,
  method: string,
  url: string,
  body?: unknown,
  timeoutMs?: number,
): Promise<T> {
  const res = await request<T & ErrorBody>(to, method, url, body, timeoutMs);
  if (res.status >= 400) throw apiError(res.status, res.body);
  return res.body;
}
