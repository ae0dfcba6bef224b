import { readdir } from 'node:fs/promises';

/**
 * The graphical session on this host's own screen that QEMU's windows would open on, from the
 * daemon's environment (QEMU inherits it); undefined on a headless host.
 */
export function localDisplay(env: Record<string, string | undefined>): string | undefined {
  if (env.WAYLAND_DISPLAY) return `Wayland ${env.WAYLAND_DISPLAY}`;
  if (env.DISPLAY) return `X11 ${env.DISPLAY}`;
  return undefined;
}

/** This host's GPU render nodes (/dev/dri/renderD*), in the kernel's order; none without a GPU. */
export async function renderNodes(): Promise<string[]> {
  const names = await readdir('/dev/dri').catch(() => [] as string[]);
  return names
    .filter((n) => n.startsWith('renderD'))
    .sort()
    .map((n) => `/dev/dri/${n}`);
}
