import dgram from 'node:dgram';
import net from 'node:net';
import type { ForwardSpec } from '../spec/schema.js';
import { formatForward } from './wiring.js';

export class PortInUseError extends Error {}

/** Binds and releases the host side of a forward: a port taken by another program fails here, clearly. */
async function probe(f: ForwardSpec): Promise<void> {
  const host = f.public ? '0.0.0.0' : '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    if (f.proto === 'tcp') {
      const server = net.createServer();
      server.once('error', reject);
      server.listen({ port: f.hostPort, host, exclusive: true }, () => server.close(() => resolve()));
    } else {
      const socket = dgram.createSocket('udp4');
      socket.once('error', reject);
      socket.bind({ port: f.hostPort, address: host, exclusive: true }, () => socket.close(() => resolve()));
    }
  });
}

/** Every forward's host port must be free; the error names each one that is not. */
export async function checkPortsFree(forwards: ForwardSpec[]): Promise<void> {
  const taken: string[] = [];
  for (const f of forwards) {
    try {
      await probe(f);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      taken.push(
        `${formatForward(f)} (${code === 'EADDRINUSE' ? 'port already in use' : code === 'EACCES' ? 'ports below 1024 need root' : (e as Error).message})`,
      );
    }
  }
  if (taken.length) {
    throw new PortInUseError(
      `cannot forward ${taken.join(', ')}: pick another host port ("phyllome net forward remove" then "add")`,
    );
  }
}
