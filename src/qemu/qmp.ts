import { EventEmitter } from 'node:events';
import net from 'node:net';

/** A QMP event as QEMU sends it. */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export class QmpError extends Error {
  constructor(
    message: string,
    readonly qmpClass?: string,
  ) {
    super(message);
  }
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export interface QmpOptions {
  /** Bound on connecting plus the greeting and capability negotiation. */
  connectTimeoutMs?: number;
  /** Default bound on every command. */
  commandTimeoutMs?: number;
}

/**
 * A small QMP client: one socket, commands correlated by id, events emitted as 'event'.
 * Every call has a timeout, and a socket that closes fails every pending call at once.
 */
export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [] }> {
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private buffer = '';
  private closedError: Error | undefined;
  version: unknown;

  private constructor(
    private readonly socket: net.Socket,
    private readonly commandTimeoutMs: number,
  ) {
    super();
  }

  static async connect(path: string, options: QmpOptions = {}): Promise<QmpClient> {
    const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    const socket = net.createConnection(path);
    const client = new QmpClient(socket, options.commandTimeoutMs ?? 10_000);
    const greeting = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new QmpError(`QMP at ${path}: no greeting within ${connectTimeoutMs} ms`));
        socket.destroy();
      }, connectTimeoutMs);
      client.onGreeting = (msg) => {
        clearTimeout(timer);
        client.version = msg;
        resolve();
      };
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new QmpError(`cannot connect to QMP at ${path}: ${err.message}`));
      });
      socket.once('close', () => {
        clearTimeout(timer);
        reject(new QmpError(`QMP at ${path} closed before its greeting`));
      });
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => client.onData(chunk));
    socket.on('error', () => {
      /* reported through 'close' */
    });
    socket.on('close', () => client.onClose());
    await greeting;
    await client.execute('qmp_capabilities', undefined, { timeoutMs: connectTimeoutMs });
    return client;
  }

  private onGreeting: ((msg: unknown) => void) | undefined;

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // QEMU only sends JSON; a torn line is not worth failing the session over
    }
    if ('QMP' in msg) {
      this.onGreeting?.(msg.QMP);
      this.onGreeting = undefined;
      return;
    }
    if ('event' in msg) {
      this.emit('event', msg as unknown as QmpEvent);
      return;
    }
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    const pending = id ? this.pending.get(id) : undefined;
    if (!pending || !id) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if ('error' in msg) {
      const error = msg.error as { class?: string; desc?: string };
      pending.reject(
        new QmpError(`QEMU refused ${pending.command}: ${error.desc ?? 'unknown error'}`, error.class),
      );
    } else {
      pending.resolve(msg.return);
    }
  }

  private onClose(): void {
    this.closedError ??= new QmpError(
      'QEMU closed its monitor connection (the VM process exited or was killed)',
    );
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(new QmpError(`${pending.command} failed: ${this.closedError.message}`, 'Disconnected'));
      this.pending.delete(id);
    }
    this.emit('close');
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.closedError) {
      return Promise.reject(new QmpError(`${command} failed: ${this.closedError.message}`, 'Disconnected'));
    }
    const id = `p${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpError(`${command}: QEMU did not answer within ${timeoutMs} ms`, 'Timeout'));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket.write(
        JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }) + '\n',
      );
    });
  }

  /** Resolves with the first event of that name (optionally matching), or rejects on timeout/close. */
  waitForEvent(name: string, timeoutMs: number, match?: (e: QmpEvent) => boolean): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
      };
      const onEvent = (e: QmpEvent) => {
        if (e.event === name && (!match || match(e))) {
          cleanup();
          resolve(e);
        }
      };
      const onClose = () => {
        cleanup();
        reject(new QmpError(`QEMU exited while waiting for ${name}`, 'Disconnected'));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new QmpError(`no ${name} event within ${timeoutMs} ms`, 'Timeout'));
      }, timeoutMs);
      this.on('event', onEvent);
      this.on('close', onClose);
    });
  }

  close(): void {
    this.closedError ??= new QmpError('QMP connection closed by the manager');
    this.socket.destroy();
  }
}
