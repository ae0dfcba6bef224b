import RFB from '@novnc/novnc';
import { useEffect, useRef, useState } from 'react';
import { wsUrl } from './api.js';

/**
 * The VM's screen in noVNC, through the daemon's WebSocket bridge to QEMU's VNC Unix socket. The
 * session cookie and this page's Origin authenticate the handshake; QEMU has no TCP port to reach.
 */
export default function Screen({ name }: { name: string }) {
  const host = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState('Connecting');
  useEffect(() => {
    const rfb = new RFB(host.current!, wsUrl(`/v1/vms/${encodeURIComponent(name)}/vnc`), { shared: true });
    rfb.scaleViewport = true;
    rfb.addEventListener('connect', () => setStatus('Connected'));
    rfb.addEventListener('disconnect', (e) => setStatus(e.detail.clean ? 'Disconnected' : 'Connection lost'));
    return () => rfb.disconnect();
  }, [name]);
  return (
    <>
      <p aria-live="polite">{status}</p>
      <div ref={host} role="application" aria-label={`Screen of ${name}`} style={{ height: '60vh' }} />
    </>
  );
}
