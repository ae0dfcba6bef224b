import { useCallback, useEffect, useState } from 'react';
import { ApiError, call, wsUrl, type Vm, type VmEvent } from './api.js';

export type Action = 'start' | 'pause' | 'resume' | 'stop' | 'force-stop';

/** The actions a VM in this state takes, as the CLI names them. */
export function actionsFor(state: Vm['state']): Action[] {
  switch (state) {
    case 'stopped':
      return ['start'];
    case 'running':
      return ['pause', 'stop', 'force-stop'];
    case 'paused':
      return ['resume', 'stop', 'force-stop'];
    default:
      return ['force-stop'];
  }
}

export const actionLabel: Record<Action, string> = {
  start: 'Start',
  pause: 'Pause',
  resume: 'Resume',
  stop: 'Stop',
  'force-stop': 'Force off',
};

const RECONNECT_MS = 2000;
/** A long operation that stops reporting (it failed, or the stream dropped) stops showing after this. */
const PROGRESS_STALE_MS = 30_000;

/** How far a VM's long operation (clone, export, import, migrate) is. */
export interface OpProgress {
  op: string;
  percent: number;
}

/** Pure: the progress map after one progress event; a finished operation leaves it. */
export function nextProgress(
  progress: ReadonlyMap<string, OpProgress>,
  e: { vm: string; op?: string; percent?: number },
): Map<string, OpProgress> {
  const next = new Map(progress);
  if (e.percent === undefined || e.percent >= 100) next.delete(e.vm);
  else next.set(e.vm, { op: e.op ?? 'operation', percent: e.percent });
  return next;
}

/**
 * The VMs, kept current by the daemon's event stream: a state event updates its VM, a VM created
 * or deleted elsewhere reloads the list. Nothing polls.
 */
export function useVms() {
  const [vms, setVms] = useState<Vm[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [loggedOut, setLoggedOut] = useState<string | undefined>();
  const [connected, setConnected] = useState(true);
  const [busy, setBusy] = useState<Set<string>>(new Set());
  const [progress, setProgress] = useState<ReadonlyMap<string, OpProgress>>(new Map());

  const fail = useCallback((e: unknown) => {
    if (e instanceof ApiError && e.status === 401) setLoggedOut(e.message);
    else setError((e as Error).message);
  }, []);

  const reload = useCallback(() => call<Vm[]>('GET', '/v1/vms').then(setVms), []);

  useEffect(() => {
    let ws: WebSocket | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let closed = false;
    const stale = new Map<string, ReturnType<typeof setTimeout>>();
    const onProgress = (e: VmEvent) => {
      setProgress((p) => nextProgress(p, e));
      clearTimeout(stale.get(e.vm));
      stale.set(
        e.vm,
        setTimeout(() => setProgress((p) => nextProgress(p, { vm: e.vm })), PROGRESS_STALE_MS),
      );
    };
    // The list is read while the stream opens (not after: a page shows sooner); a change the stream
    // reports before that read is in may be missing from it, so the list is read again then.
    let reading = false;
    let missed = false;
    const read = () => {
      reading = true;
      missed = false;
      return reload().finally(() => {
        reading = false;
        if (missed && !closed) void read().catch(fail);
      });
    };
    const connect = () => {
      ws = new WebSocket(wsUrl('/v1/events'));
      void read().catch(fail);
      ws.onopen = () => setConnected(true);
      ws.onmessage = (m: MessageEvent<string>) => {
        const e = JSON.parse(m.data) as VmEvent;
        if (reading && e.type !== 'progress') missed = true;
        if (e.type === 'state' && e.state) {
          const { state, reason } = e;
          setVms((list) => list?.map((vm) => (vm.name === e.vm ? { ...vm, state, reason } : vm)));
        } else if (e.type === 'progress') onProgress(e);
        else if (e.type === 'created' || e.type === 'deleted') reload().catch(fail);
      };
      ws.onclose = () => {
        if (closed) return;
        setConnected(false);
        // A handshake refused for want of a login closes the same way: the list read tells which,
        // and only a logged-in page tries again.
        void reload()
          .then(
            () => true,
            (e: unknown) => {
              fail(e);
              return !(e instanceof ApiError && e.status === 401);
            },
          )
          .then((again) => {
            if (again && !closed) retry = setTimeout(connect, RECONNECT_MS);
          });
      };
    };
    connect();
    return () => {
      closed = true;
      clearTimeout(retry);
      stale.forEach((t) => clearTimeout(t));
      ws?.close();
    };
  }, [fail, reload]);

  const act = async (vm: Vm, action: Action) => {
    setBusy((b) => new Set(b).add(vm.name));
    const verb = action === 'force-stop' ? 'stop' : action;
    try {
      await call(
        'POST',
        `/v1/vms/${encodeURIComponent(vm.name)}/${verb}`,
        action === 'force-stop' ? { force: true } : {},
      );
    } catch (e) {
      fail(e);
    } finally {
      setBusy((b) => {
        const next = new Set(b);
        next.delete(vm.name);
        return next;
      });
    }
  };

  return {
    vms,
    error,
    clearError: () => setError(undefined),
    loggedOut,
    connected,
    busy,
    progress,
    act,
    /** After a change the event stream does not report (a VM's settings). */
    reload: () => void reload().catch(fail),
  };
}
