import { rm, writeFile } from 'node:fs/promises';
import type { QmpClient } from '../qemu/qmp.js';

/**
 * Runs `fn` with the vCPUs stopped when they were running (a consistent instant for snapshots and
 * copies). The marker file outlives a daemon killed inside `fn`, so the next one resumes the guest
 * (resumeHeld) instead of leaving it paused for no reason anyone can see.
 */
export async function whilePaused<T>(qmp: QmpClient, marker: string, fn: () => Promise<T>): Promise<T> {
  const { running } = await qmp.execute<{ running: boolean }>('query-status');
  if (!running) return fn();
  await writeFile(marker, '');
  await qmp.execute('stop');
  try {
    return await fn();
  } finally {
    await qmp.execute('cont');
    await rm(marker, { force: true });
  }
}

/** After a crash inside whilePaused: resumes the guest it left paused. True when it did. */
export async function resumeHeld(qmp: QmpClient, marker: string, paused: boolean): Promise<boolean> {
  const held = await rm(marker).then(
    () => true,
    () => false,
  );
  if (!held || !paused) return false;
  await qmp.execute('cont');
  return true;
}
