import RFB from '@novnc/novnc';
import { Button, Flex } from '@patternfly/react-core';
import { useEffect, useRef, useState } from 'react';
import { wsUrl } from './api.js';

/**
 * The VM's screen in noVNC, through the daemon's WebSocket bridge to QEMU's VNC Unix socket. The
 * session cookie and this page's Origin authenticate the handshake; QEMU has no TCP port to reach.
 */
export default function Screen({ name }: { name: string }) {
  const frame = useRef<HTMLDivElement>(null);
  const host = useRef<HTMLDivElement>(null);
  const rfb = useRef<RFB>(null);
  const [status, setStatus] = useState('Connecting');
  const [fullScreen, setFullScreen] = useState(false);
  useEffect(() => {
    const r = new RFB(host.current!, wsUrl(`/v1/vms/${encodeURIComponent(name)}/vnc`), { shared: true });
    r.scaleViewport = true;
    r.addEventListener('connect', () => setStatus('Connected'));
    r.addEventListener('disconnect', (e) => setStatus(e.detail.clean ? 'Disconnected' : 'Connection lost'));
    rfb.current = r;
    return () => r.disconnect();
  }, [name]);
  useEffect(() => {
    const changed = () => setFullScreen(document.fullscreenElement === frame.current);
    document.addEventListener('fullscreenchange', changed);
    return () => document.removeEventListener('fullscreenchange', changed);
  }, []);
  const connected = status === 'Connected';
  return (
    <>
      <Flex alignItems={{ default: 'alignItemsCenter' }} spaceItems={{ default: 'spaceItemsSm' }}>
        <span aria-live="polite">{status}</span>
        <Button
          size="sm"
          variant="secondary"
          isDisabled={!connected}
          aria-label={`Send Ctrl+Alt+Del to ${name}`}
          onClick={() => rfb.current?.sendCtrlAltDel()}
        >
          Ctrl+Alt+Del
        </Button>
        <Button
          size="sm"
          variant="secondary"
          aria-label={`Show the screen of ${name} full screen`}
          onClick={() => void frame.current?.requestFullscreen()}
        >
          Full screen
        </Button>
        {/* QEMU's VNC server passes the clipboard only to a guest agent channel (qemu-vdagent), which
            Phyllome's VMs do not have: a copy or paste button here could never work. */}
        <span className="pf-v6-u-color-200">
          Clipboard: not available (QEMU shares it only with a guest clipboard agent, which this VM lacks)
        </span>
      </Flex>
      <div ref={frame} style={{ background: fullScreen ? 'black' : undefined }}>
        <div
          ref={host}
          role="application"
          aria-label={`Screen of ${name}`}
          style={{ height: fullScreen ? '100vh' : '60vh' }}
        />
      </div>
    </>
  );
}
