import path from 'node:path';
import { z } from 'zod';
import { VM_NAME_RE, vmNameProblem } from './names.js';
import { SizeError, formatSize, parseSize } from './size.js';

export const SCHEMA_VERSION = 1;

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** An absolute, normalised path without control characters (they would corrupt argv, logs and JSON lines). */
export const absPath = z
  .string()
  .min(1)
  .refine((p) => !CONTROL_CHARS.test(p), 'must not contain control characters (newline, tab, NUL)')
  .refine((p) => path.isAbsolute(p), 'must be an absolute path, like /var/lib/images/disk.qcow2')
  .transform((p) => path.normalize(p).replace(/(.)\/+$/, '$1'));

const size = (what: string, min: number) =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    try {
      const bytes = parseSize(v);
      if (bytes < min) {
        ctx.addIssue({ code: 'custom', message: `${what} must be at least ${formatSize(min)}` });
        return z.NEVER;
      }
      return formatSize(bytes);
    } catch (e) {
      if (!(e instanceof SizeError)) throw e;
      ctx.addIssue({ code: 'custom', message: e.message });
      return z.NEVER;
    }
  });

export const vmName = z.string().superRefine((n, ctx) => {
  const problem = vmNameProblem(n);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

export const diskSpec = z.strictObject({
  path: absPath,
  format: z.enum(['raw', 'qcow2']),
  readOnly: z.boolean().default(false),
});

export const bootSpec = z.strictObject({
  kernel: absPath,
  initrd: absPath.optional(),
  append: z
    .string()
    .max(4096)
    .refine((s) => !CONTROL_CHARS.test(s), 'must be one line without control characters')
    .optional(),
});

/**
 * The guest's display device. `virtio-vga-gl` is virgl 3D: QEMU renders the guest's OpenGL on a host
 * render node (`/dev/null` makes Mesa fall back to its llvmpipe software renderer: no GPU needed).
 */
export const graphicsSpec = z
  .strictObject({
    device: z.enum(['none', 'virtio-vga', 'virtio-vga-gl', 'virtio-gpu-gl-pci']),
    renderNode: absPath.optional(),
    /**
     * virtio-gpu-gl-pci contexts beyond OpenGL (QEMU 9.2+): blob resources, venus (Vulkan), DRM native
     * context. Each needs guest RAM shared with the host renderer (a memfd backend).
     */
    features: z.array(z.enum(['blob', 'venus', 'drm_native_context'])).optional(),
  })
  .refine((g) => !g.features?.length || g.device === 'virtio-gpu-gl-pci', {
    message: 'features need device virtio-gpu-gl-pci',
    path: ['features'],
  });

/** What a user chooses; the daemon adds identity (uuid, createdAt) to make a VmSpec. */
export const vmSpecInput = z.strictObject({
  name: vmName,
  memory: size('memory', 16 * 2 ** 20).default('512M'),
  cpus: z.number().int().min(1).max(256).default(1),
  boot: bootSpec.optional(),
  disks: z.array(diskSpec).max(16).default([]),
  graphics: graphicsSpec.default({ device: 'none' }),
});

export const vmSpec = vmSpecInput.extend({
  schemaVersion: z.literal(SCHEMA_VERSION),
  uuid: z.uuid(),
  createdAt: z.iso.datetime(),
});

export type VmSpecInput = z.input<typeof vmSpecInput>;
export type VmSpec = z.output<typeof vmSpec>;
export type DiskSpec = z.output<typeof diskSpec>;
export type GraphicsSpec = z.output<typeof graphicsSpec>;

export { VM_NAME_RE };

export class SpecError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
  }
}

/** `disks[0].path: must be an absolute path` — each problem names where it is. */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const where = issue.path.reduce<string>(
      (acc, key) =>
        typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key),
      '',
    );
    const message =
      issue.code === 'unrecognized_keys'
        ? `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`
        : issue.message;
    return where ? `${where}: ${message}` : message;
  });
}

function parseWith<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const result = schema.safeParse(input);
  if (!result.success) throw new SpecError(describeIssues(result.error));
  return result.data;
}

export const parseSpecInput = (input: unknown): z.output<typeof vmSpecInput> => parseWith(vmSpecInput, input);
export const parseSpec = (input: unknown): VmSpec => parseWith(vmSpec, input);

export const memoryBytes = (spec: Pick<VmSpec, 'memory'>): number => parseSize(spec.memory);
