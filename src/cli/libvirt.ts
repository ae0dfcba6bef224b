import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../daemon/files.js';
import { loadOsDb } from '../guest/osinfo.js';
import { readFirmwareDescriptors } from '../host/firmware.js';
import { domainXmlToSpec, specToDomainXml, type ImportedDomain } from '../interop/libvirt.js';
import type { Accel } from '../qemu/cmdline.js';
import type { VmSpec } from '../spec/schema.js';

export interface LibvirtExportOptions {
  output?: string;
  accel?: Accel;
  serialLog?: string;
  json?: boolean;
}

/** `phyllome export-libvirt`: the domain XML on stdout or in a file (whole or not at all), the notes on stderr. */
export async function exportLibvirt(spec: VmSpec, accel: Accel, o: LibvirtExportOptions): Promise<void> {
  const out = specToDomainXml(spec, {
    accel,
    ...(o.serialLog ? { serialLog: path.resolve(o.serialLog) } : {}),
  });
  const text = o.json ? JSON.stringify(out, null, 2) + '\n' : out.xml;
  if (o.output) await writeFileAtomic(path.resolve(o.output), text);
  else process.stdout.write(text);
  if (o.json) return;
  for (const note of out.notes) process.stderr.write(`note: ${note}\n`);
  if (o.output) {
    process.stdout.write(
      `Wrote "${spec.name}" as a libvirt domain to ${o.output}. Define it with: virsh define ${o.output}\n`,
    );
  }
}

/** The domain as libvirt keeps it (`--inactive`: its definition, without what a running domain adds). */
function dumpXml(uri: string, name: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'virsh',
      ['-c', uri, 'dumpxml', '--inactive', '--', name],
      { timeout: 30_000, maxBuffer: 16 * 2 ** 20 },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          return reject(new Error('virsh is not installed: apt-get install libvirt-clients (Debian)'));
        }
        reject(new Error(`virsh -c ${uri} dumpxml ${name} failed: ${stderr.trim() || err.message}`));
      },
    );
  });
}

/**
 * A libvirt domain (a file, or `from` a libvirt connection through virsh) as a spec for `POST /v1/vms`,
 * mapped here: UEFI firmware is picked from this host's QEMU descriptors, the OS named by osinfo-db.
 */
export async function importLibvirt(
  source: string,
  o: { from?: string; name?: string },
): Promise<ImportedDomain> {
  const xml = o.from
    ? await dumpXml(o.from, source)
    : await readFile(source, 'utf8').catch((e: NodeJS.ErrnoException) => {
        throw new Error(`cannot read ${source}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
      });
  // Without osinfo-db the OS is left unrecorded, and the import says so.
  const osDb = await loadOsDb().catch(() => undefined);
  return domainXmlToSpec(xml, {
    firmware: await readFirmwareDescriptors(),
    ...(o.name ? { name: o.name } : {}),
    osShortId: (url) => osDb?.byId.get(url)?.shortId,
  });
}
