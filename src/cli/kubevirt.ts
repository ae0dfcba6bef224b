import path from 'node:path';
import type { VmInfo } from '../daemon/vms.js';
import { writeFileAtomic } from '../daemon/files.js';
import { specToKubevirt, toYaml, type ImageFacts } from '../interop/kubevirt.js';
import { readImageFacts } from '../storage/format.js';

export interface KubevirtExportOptions {
  output?: string;
  namespace?: string;
  kernelImage?: string;
  start?: boolean;
  json?: boolean;
}

/**
 * `phyllome export-kubevirt`: the manifest on stdout or in a file (whole or not at all), the notes on
 * stderr. Image sizes come from the images' headers, read here: uploading them next needs this user to
 * read them anyway. One that cannot be read is left out, and the export says which.
 */
export async function exportKubevirt(vm: VmInfo, o: KubevirtExportOptions): Promise<void> {
  const { spec } = vm;
  const files = [
    ...spec.disks.map((d) => [d.path, d.format] as const),
    ...spec.cdroms.flatMap((c) => (c.path ? [[c.path, 'raw'] as const] : [])),
  ];
  const images: Record<string, ImageFacts> = {};
  for (const [file, format] of files) {
    const facts = await readImageFacts(file, format).catch(() => undefined);
    if (facts) images[file] = facts;
  }
  const out = specToKubevirt(spec, {
    images,
    ...(o.namespace ? { namespace: o.namespace } : {}),
    ...(o.kernelImage ? { kernelImage: o.kernelImage } : {}),
    runStrategy: o.start ? 'Always' : 'Halted',
    // QEMU kept a local-time guest clock in the host's zone, which this is.
    timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
  });
  const text = o.json ? JSON.stringify(out, null, 2) + '\n' : toYaml(out.documents);
  if (o.output) await writeFileAtomic(path.resolve(o.output), text);
  else process.stdout.write(text);
  if (o.json) return;
  for (const note of out.notes) process.stderr.write(`note: ${note}\n`);
  if (o.output) process.stdout.write(`Wrote "${spec.name}" for KubeVirt to ${o.output}.\n`);
}
