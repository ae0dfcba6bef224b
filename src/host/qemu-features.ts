import { execFile } from 'node:child_process';
import { exists } from '../daemon/files.js';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** What this QEMU can do for graphics, learned by asking it (never from its version number). */
export interface QemuFeatures {
  accelerators: string[];
  machines: string[];
  displays: string[];
  /** Devices whose module loads: Debian ships the GL devices in a separate package. */
  virtioVgaGl: boolean;
  /** Properties of virtio-gpu-gl-pci: blob, hostmem, venus, drm_native_context when supported. */
  gpuGlProperties: string[];
  tools: { swtpm: boolean; ovmf: boolean; virtiofsd: boolean };
}

async function ask(binary: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await run(binary, args, { timeout: 10_000 });
    return stdout;
  } catch {
    return undefined;
  }
}

/** Names listed after a header line, one per line (`-accel help`, `-display help`). */
const listed = (text: string | undefined): string[] =>
  (text ?? '')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => /^[a-z][a-z0-9.-]*$/.test(n));

export async function introspectQemu(binary: string): Promise<QemuFeatures> {
  const [accel, machine, display, vgaGl, gpuGl, swtpm, ovmf, virtiofsd] = await Promise.all([
    ask(binary, ['-accel', 'help']),
    ask(binary, ['-machine', 'help']),
    ask(binary, ['-display', 'help']),
    ask(binary, ['-device', 'virtio-vga-gl,help']),
    ask(binary, ['-device', 'virtio-gpu-gl-pci,help']),
    exists('/usr/bin/swtpm'),
    exists('/usr/share/qemu/firmware/60-edk2-x86_64.json').then(
      async (v) => v || (await exists('/usr/share/OVMF/OVMF_CODE_4M.fd')),
    ),
    Promise.all(['/usr/libexec/virtiofsd', '/usr/lib/qemu/virtiofsd'].map(exists)).then((r) =>
      r.some(Boolean),
    ),
  ]);
  const props = (gpuGl ?? '')
    .split('\n')
    .map((l) => /^\s+([a-z_-]+)=/.exec(l)?.[1])
    .filter((p): p is string => !!p);
  return {
    accelerators: listed(accel),
    machines: listed(machine),
    displays: listed(display),
    virtioVgaGl: vgaGl !== undefined,
    gpuGlProperties: props.filter((p) =>
      ['blob', 'hostmem', 'venus', 'drm_native_context', 'context_init'].includes(p),
    ),
    tools: { swtpm, ovmf, virtiofsd },
  };
}
