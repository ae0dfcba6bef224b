// Export: `phyllome export` of a stopped VM whose qcow2 disk has a 20 GiB virtual size and 2 GiB of
// data (real files: a tar of /usr, spread over the disk), against `qemu-img convert -c` and
// `tar --sparse | zstd` of the same image in the same run. Target: at least as fast as the faster of
// the two, and no larger. Page cache dropped before each run (as root) so each reads from disk.
// Usage: node bench/export.ts [virtual GiB] [data GiB] [rounds]
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { median, prepare, root } from './lib.ts';

const virtualGiB = Number(process.argv[2] ?? 20);
const dataGiB = Number(process.argv[3] ?? 2);
const rounds = Number(process.argv[4] ?? 1);
const GiB = 2 ** 30;
const CHUNK = 64 * 2 ** 20;
const { env, dir, cleanup } = prepare();

/** A raw image with `dataGiB` of real file data in 64 MiB runs spread evenly over its virtual size. */
function makeDisk(): string {
  const raw = path.join(dir, 'src.raw');
  const disk = path.join(dir, 'disk.qcow2');
  const fd = openSync(raw, 'w');
  writeSync(fd, Buffer.alloc(1), 0, 1, virtualGiB * GiB - 1);
  const chunks = Math.ceil((dataGiB * GiB) / CHUNK);
  const stride = Math.floor((virtualGiB * GiB) / chunks / CHUNK) * CHUNK;
  const data = execFileSync('sh', ['-c', `tar -cf - /usr 2>/dev/null | head -c ${chunks * CHUNK}`], {
    maxBuffer: chunks * CHUNK + 1,
  });
  for (let i = 0; i < chunks; i++) writeSync(fd, data, i * CHUNK, CHUNK, i * stride);
  closeSync(fd);
  execFileSync('qemu-img', ['convert', '-O', 'qcow2', raw, disk]);
  rmSync(raw);
  return disk;
}

function dropCaches(): void {
  try {
    execFileSync('sync');
    writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch {
    /* not root: runs read from the page cache alike */
  }
}

/** Wall time of a command (ms) and the size of what it wrote. */
function timed(cmd: string, args: string[], out: string): Promise<{ ms: number; bytes: number }> {
  rmSync(out, { force: true });
  dropCaches();
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`));
      else resolve({ ms: performance.now() - started, bytes: statSync(out).size });
    });
  });
}

try {
  const disk = makeDisk();
  const bundle = path.join(root, 'dist/phyllome.mjs');
  execFileSync(process.execPath, [bundle, 'create', 'big', '--disk', disk, '-m', '128M'], { env });
  const runs = {
    phyllome: [] as { ms: number; bytes: number }[],
    'qemu-img convert -c': [] as { ms: number; bytes: number }[],
    'tar --sparse | zstd': [] as { ms: number; bytes: number }[],
  };
  const out = (n: string) => path.join(dir, n);
  for (let r = 0; r < rounds; r++) {
    runs.phyllome.push(
      await timed(
        process.execPath,
        [bundle, 'export', 'big', '-o', out('big.phyllome')],
        out('big.phyllome'),
      ),
    );
    rmSync(out('big.phyllome'));
    runs['qemu-img convert -c'].push(
      await timed('qemu-img', ['convert', '-c', '-O', 'qcow2', disk, out('c.qcow2')], out('c.qcow2')),
    );
    rmSync(out('c.qcow2'));
    runs['tar --sparse | zstd'].push(
      await timed(
        'sh',
        ['-c', `tar --sparse -cf - -C "${dir}" disk.qcow2 | zstd -q -3 -o "${out('t.tar.zst')}"`],
        out('t.tar.zst'),
      ),
    );
    rmSync(out('t.tar.zst'));
  }
  const mib = (b: number) => (b / 2 ** 20).toFixed(0);
  console.log(
    `disk: ${virtualGiB} GiB virtual, ${dataGiB} GiB of data, qcow2 file ${mib(statSync(disk).size)} MiB; ${rounds} round(s), medians`,
  );
  const summary = Object.entries(runs).map(([name, rs]) => {
    const ms = median(rs.map((x) => x.ms));
    const bytes = median(rs.map((x) => x.bytes));
    console.log(
      `${name.padEnd(22)} ${(ms / 1000).toFixed(1).padStart(7)} s  ${((dataGiB * 1024 * 1000) / ms).toFixed(0).padStart(5)} MiB/s  ${mib(bytes).padStart(6)} MiB`,
    );
    return { name, ms, bytes };
  });
  const [ours, ...others] = summary;
  const fastest = Math.min(...others.map((o) => o.ms));
  const smallest = Math.min(...others.map((o) => o.bytes));
  console.log(`speed vs the faster alternative: ${(fastest / ours!.ms).toFixed(2)} (target >= 1.00)`);
  console.log(`size vs the smaller alternative: ${(ours!.bytes / smallest).toFixed(2)} (target <= 1.00)`);
} finally {
  cleanup();
}
