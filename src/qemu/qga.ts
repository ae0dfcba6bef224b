import net from 'node:net';

/** The virtio-serial port name the QEMU guest agent opens in the guest. */
export const QGA_PORT_NAME = 'org.qemu.guest_agent.0';
/** The chardev id behind that port; QMP's query-chardev says whether the guest has it open. */
export const QGA_CHARDEV = 'qga0';

export interface GuestInterface {
  name: string;
  mac?: string;
  ips: string[];
}

interface QgaInterface {
  name: string;
  'hardware-address'?: string;
  'ip-addresses'?: { 'ip-address': string; 'ip-address-type': 'ipv4' | 'ipv6'; prefix: number }[];
}

/** Pure: the agent's guest-network-get-interfaces answer, without loopback and IPv6 link-local addresses. */
export function parseGuestInterfaces(answer: QgaInterface[]): GuestInterface[] {
  return answer
    .filter((i) => i.name !== 'lo')
    .map((i) => ({
      name: i.name,
      ...(i['hardware-address'] ? { mac: i['hardware-address'].toLowerCase() } : {}),
      ips: (i['ip-addresses'] ?? [])
        .map((a) => a['ip-address'])
        .filter((ip) => !ip.startsWith('127.') && !/^fe80:/i.test(ip) && ip !== '::1'),
    }));
}

/**
 * Asks the guest agent for the guest's interfaces. The agent keeps no session: guest-sync-delimited
 * (answered after a 0xFF byte) first flushes whatever an earlier, abandoned client left in the
 * channel. Bounded: a guest that stops answering fails after `timeoutMs`.
 */
export function guestInterfaces(socketPath: string, timeoutMs = 3000): Promise<GuestInterface[]> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    const syncId = Math.floor(Math.random() * 2 ** 31);
    let buffer = '';
    let synced = false;
    const done = (fn: () => void) => {
      clearTimeout(timer);
      socket.destroy();
      fn();
    };
    const timer = setTimeout(
      () => done(() => reject(new Error(`the guest agent did not answer within ${timeoutMs} ms`))),
      timeoutMs,
    );
    socket.on('error', (e) => done(() => reject(e)));
    socket.on('connect', () =>
      socket.write(JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id: syncId } }) + '\n'),
    );
    socket.on('data', (chunk: Buffer) => {
      // The sync answer follows a 0xFF byte; anything before it is a stale answer.
      const at = synced ? -1 : chunk.lastIndexOf(0xff);
      if (at >= 0) buffer = '';
      buffer += chunk.subarray(at + 1).toString('utf8');
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (!line) continue;
        let msg: { return?: unknown; error?: { desc?: string } };
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          continue;
        }
        if (!synced) {
          if (msg.return === syncId) {
            synced = true;
            socket.write(JSON.stringify({ execute: 'guest-network-get-interfaces' }) + '\n');
          }
        } else if (msg.error) {
          done(() => reject(new Error(`the guest agent refused: ${msg.error!.desc ?? 'unknown error'}`)));
        } else if (Array.isArray(msg.return)) {
          const list = msg.return as QgaInterface[];
          done(() => resolve(parseGuestInterfaces(list)));
        }
      }
    });
  });
}
