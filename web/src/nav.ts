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

/** href and onClick for an in-page link: no reload, the address bar and history still right. */
export function link(to: string) {
  return {
    href: to,
    onClick: (e: MouseEvent) => {
      if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      history.pushState(null, '', to);
      dispatchEvent(new PopStateEvent('popstate'));
    },
  };
}

export const vmPath = (name: string) => `/vms/${encodeURIComponent(name)}`;
