/** What the UI shows of a VM (the daemon's VmInfo has more). */
export interface Vm {
  name: string;
  state: 'stopped' | 'starting' | 'running' | 'paused' | 'stopping';
  reason?: string;
  spec: {
    memory: string;
    cpus: number;
    os?: string;
    machine: string;
    firmware: { type: string; secureBoot?: boolean };
    graphics: { device: string; window?: boolean };
    nics: {
      model: string;
      net: { type: string; hostLoopback?: boolean; bridge?: string; network?: string; device?: string };
    }[];
    disks?: { encrypted?: boolean }[];
    tpmEncrypted?: boolean;
  };
}

/** A daemon event from /v1/events (src/daemon/vms.ts VmEvent). */
export interface VmEvent {
  type: 'state' | 'created' | 'deleted' | 'qemu-event' | 'progress';
  vm: string;
  state?: Vm['state'];
  reason?: string;
  /** For progress: what runs (clone, export, import, migrate) and how far it is. */
  op?: string;
  percent?: number;
}

/** An answer the daemon refused; its message says what to do. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** One call to the daemon; the session cookie rides along (same origin), JSON both ways. */
export async function call<T>(method: string, url: string, body?: unknown): Promise<T> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const text = await res.text();
  const parsed: unknown = text ? JSON.parse(text) : undefined;
  if (!res.ok) {
    const message = (parsed as { error?: { message?: string } } | undefined)?.error?.message;
    throw new ApiError(message ?? `phyllomed answered ${res.status}`, res.status);
  }
  return parsed as T;
}

/** A daemon WebSocket's URL on this page's own origin (the daemon checks Origin on the handshake). */
export const wsUrl = (path: string) =>
  `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
