import { EventEmitter } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import net from 'node:net';

/** How much recent output a newly attached console is shown, like a terminal's screen on re-attach. */
const SCROLLBACK_BYTES = 16 * 1024;

/**
 * Holds the one connection QEMU's serial socket allows and fans it out: to the serial log file and to
 * any number of attached consoles. QEMU drops (and does not log) output while no client is connected,
 * so the daemon stays connected for the VM's whole life.
 */
export class SerialHub extends EventEmitter<{ data: [Buffer]; close: [] }> {
  private readonly log: WriteStream;

  private constructor(
    private readonly socket: net.Socket,
    logFile: string,
    private scrollback: Buffer,
  ) {
    super();
    this.setMaxListeners(0);
    this.log = createWriteStream(logFile, { flags: 'a', mode: 0o640 });
    this.log.on('error', () => {
      /* a full disk must not take the console down */
    });
    socket.on('data', (chunk: Buffer) => {
      this.log.write(chunk);
      const joined = Buffer.concat([this.scrollback, chunk]);
      this.scrollback = joined.subarray(Math.max(0, joined.length - SCROLLBACK_BYTES));
      this.emit('data', chunk);
    });
    socket.on('error', () => {
      /* reported through 'close' */
    });
    socket.on('close', () => {
      this.log.end();
      this.emit('close');
    });
  }

  /** Connects; the scrollback starts from the log's tail, so a re-adopted VM's console is not blank. */
  static async connect(socketPath: string, logFile: string, timeoutMs = 5000): Promise<SerialHub> {
    const scrollback = await readTail(logFile, SCROLLBACK_BYTES);
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(socketPath);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`serial console at ${socketPath} did not accept within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot connect to the serial console at ${socketPath}: ${err.message}`));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new SerialHub(socket, logFile, scrollback));
      });
    });
  }

  get recent(): Buffer {
    return this.scrollback;
  }

  get closed(): boolean {
    return this.socket.destroyed;
  }

  write(data: Buffer): void {
    this.socket.write(data);
  }

  close(): void {
    this.socket.destroy();
  }
}

async function readTail(file: string, bytes: number): Promise<Buffer> {
  try {
    const handle = await open(file, 'r');
    try {
      const { size } = await handle.stat();
      const length = Math.min(size, bytes);
      const buffer = Buffer.alloc(length);
      await handle.read(buffer, 0, length, size - length);
      return buffer;
    } finally {
      await handle.close();
    }
  } catch {
    return Buffer.alloc(0);
  }
}
