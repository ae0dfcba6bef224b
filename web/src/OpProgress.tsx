import { Progress, ProgressMeasureLocation, ProgressSize } from '@patternfly/react-core';
import type { OpProgress } from './vms.js';

/** A VM's long operation (clone, export, import, migrate) as it runs; nothing otherwise. */
export function OpProgressBar({ vm, progress }: { vm: string; progress: OpProgress | undefined }) {
  if (!progress) return null;
  return (
    <Progress
      value={progress.percent}
      title={progress.op}
      size={ProgressSize.sm}
      measureLocation={ProgressMeasureLocation.outside}
      aria-label={`${progress.op} of ${vm}`}
    />
  );
}
