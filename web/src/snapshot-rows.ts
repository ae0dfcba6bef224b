export interface Snapshot {
  name: string;
  parent?: string;
  createdAt: string;
  live: boolean;
}

/** Pure: snapshots in tree order (each after its parent), with their depth for indenting. */
export function snapshotRows(snapshots: Snapshot[]): { snap: Snapshot; depth: number }[] {
  const names = new Set(snapshots.map((s) => s.name));
  const rows: { snap: Snapshot; depth: number }[] = [];
  const walk = (parent: string | undefined, depth: number) => {
    for (const snap of snapshots) {
      // A parent since deleted makes its children roots.
      const p = snap.parent && names.has(snap.parent) ? snap.parent : undefined;
      if (p !== parent) continue;
      rows.push({ snap, depth });
      walk(snap.name, depth + 1);
    }
  };
  walk(undefined, 0);
  return rows;
}
