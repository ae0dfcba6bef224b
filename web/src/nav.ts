import { useEffect, useState, type MouseEvent } from 'react';

/** The page's path, following links made by `link` and the browser's back and forward. */
export function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const update = () => setPath(location.pathname);
    addEventListener('popstate', update);
    return () => removeEventListener('popstate', update);
  }, []);
  return path;
}

/** Shows another page of this one: no reload, the address bar and history still right. */
export function go(to: string): void {
  history.pushState(null, '', to);
  dispatchEvent(new PopStateEvent('popstate'));
}

/** href and onClick for an in-page link (a modified click still opens a new tab). */
export function link(to: string) {
  return {
    href: to,
    onClick: (e: MouseEvent) => {
      if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      go(to);
    },
  };
}

export const vmPath = (name: string) => `/vms/${encodeURIComponent(name)}`;
