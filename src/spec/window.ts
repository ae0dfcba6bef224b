import type { GraphicsSpec } from './schema.js';

/** Whether the screen is drawn through GL (virgl devices, a GVT-g slice's dmabuf): it needs a GL display. */
const glScreen = (g: GraphicsSpec): boolean =>
  g.device === 'virtio-vga-gl' ||
  g.device === 'virtio-gpu-gl-pci' ||
  !!g.hostDevices?.some((d) => d.kind === 'mdev' && d.display);

/** In a window on the host's screen: GL then runs on that screen's GPU, so no render node is picked. */
export function withWindow(g: GraphicsSpec): GraphicsSpec {
  const { renderNode: _screens, ...rest } = g;
  return { ...rest, window: true };
}

/**
 * Off-screen only (the web console; no window): a GL screen gets the off-screen renderer's GPU where
 * none is named, this host's first render node, else /dev/null (Mesa's llvmpipe), as egl-headless
 * finds none by itself.
 */
export function offScreen(g: GraphicsSpec, renderNodes: string[]): GraphicsSpec {
  const { window: _shown, ...rest } = g;
  return glScreen(rest) && !rest.renderNode ? { ...rest, renderNode: renderNodes[0] ?? '/dev/null' } : rest;
}
