import { Alert, AlertActionCloseButton } from '@patternfly/react-core';
import { useCallback, useEffect, useState } from 'react';
import { call } from './api.js';

/**
 * A daemon resource read when shown and after each change made through it (and when `key` changes,
 * like the VM's state). A refused read or change keeps the daemon's message for a Problem alert.
 */
export function useResource<T>(url: string, key?: unknown) {
  const [data, setData] = useState<T | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const reload = useCallback(
    () => call<T>('GET', url).then(setData, (e: Error) => setError(e.message)),
    [url],
  );
  useEffect(() => void reload(), [reload, key]);
  /** One change; true when the daemon took it, and `took` sees its answer. */
  const change = async <A,>(
    method: string,
    path: string,
    body?: unknown,
    took?: (answer: A) => void,
  ): Promise<boolean> => {
    setBusy(true);
    setError(undefined);
    try {
      const answer = await call<A>(method, path, body);
      took?.(answer);
      return true;
    } catch (e) {
      setError((e as Error).message);
      return false;
    } finally {
      setBusy(false);
      await reload();
    }
  };
  return { data, error, clearError: () => setError(undefined), busy, change, reload };
}

/** The daemon's answer to a refused request, as it said it: its message says what to do. */
export function Problem({ error, clear }: { error: string | undefined; clear?: () => void }) {
  if (!error) return null;
  return (
    <Alert
      isInline
      variant="danger"
      title={error}
      className="pf-v6-u-mb-md"
      {...(clear ? { actionClose: <AlertActionCloseButton onClose={clear} /> } : {})}
    />
  );
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Pure: bytes as people read them, like 1.5 GiB. */
export function formatBytes(n: number): string {
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${UNITS[i]}`;
}
