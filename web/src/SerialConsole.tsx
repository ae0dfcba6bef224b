import '@xterm/xterm/css/xterm.css';
import { Terminal } from '@xterm/xterm';
import { useEffect, useRef } from 'react';
import { wsUrl } from './api.js';

/**
 * The VM's serial console through the daemon's WebSocket (binary frames both ways; the daemon sends
 * recent output first). The session cookie and this page's Origin authenticate the handshake.
 */
export default function SerialConsole({ name }: { name: string }) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const term = new Terminal({ cols: 100, rows: 30, convertEol: false, screenReaderMode: true });
    term.open(host.current!);
    const ws = new WebSocket(wsUrl(`/v1/vms/${encodeURIComponent(name)}/console`));
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (m: MessageEvent<ArrayBuffer>) => term.write(new Uint8Array(m.data));
    ws.onclose = (e) => term.write(`\r\n[console closed${e.reason ? `: ${e.reason}` : ''}]\r\n`);
    const encoder = new TextEncoder();
    const input = term.onData((d) => ws.readyState === WebSocket.OPEN && ws.send(encoder.encode(d)));
    term.focus();
    return () => {
      input.dispose();
      ws.onclose = null;
      ws.close();
      term.dispose();
    };
  }, [name]);
  return <div ref={host} role="region" aria-label={`Serial console of ${name}`} />;
}
