/** Sizes as users write them: `512M`, `4G`, `1.5G`, `1024` (MiB when unit-less, like QEMU's -m). */
const UNITS: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

export class SizeError extends Error {}

/** Parses a size to bytes; `defaultUnit` applies when no suffix is given. */
export function parseSize(input: string | number, defaultUnit: keyof typeof UNITS = 'M'): number {
  const text = String(input).trim();
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT])?(?:i?B)?$/i.exec(text);
  if (!m) {
    throw new SizeError(`"${text}" is not a size: write a number with an optional unit, like 512M or 4G`);
  }
  const unit = (m[2] ?? defaultUnit).toUpperCase();
  const bytes = Math.round(Number(m[1]) * (UNITS[unit] ?? 1));
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new SizeError(`"${text}" must be greater than zero, like 512M or 4G`);
  }
  return bytes;
}

/** Bytes to the shortest exact human form (`512M`, `4G`), or bytes with `B` when not a whole unit. */
export function formatSize(bytes: number): string {
  for (const unit of ['T', 'G', 'M', 'K'] as const) {
    const per = UNITS[unit]!;
    if (bytes >= per && bytes % per === 0) return `${bytes / per}${unit}`;
  }
  return `${bytes}B`;
}
