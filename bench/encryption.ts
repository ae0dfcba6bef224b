// Encrypted vs plain qcow2, as Phyllome makes them (LUKS, aes-256-xts, SHA-512 PBKDF, iter-time 10 ms): sequential
// writes, then sequential reads of the written data, alternating between the two images, host cache
// bypassed. `qemu-img bench` of QEMU 7.2 takes no --object, so it cannot open an encrypted image;
// qemu-io (same package, same block layer) can. Target: encrypted >= 70 % of plain.
// Usage: node bench/encryption.ts [MiB] [rounds]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { median } from './lib.ts';

const mib = Number(process.argv[2] ?? 512);
const rounds = Number(process.argv[3] ?? 5);
const dir = mkdtempSync(path.join(os.tmpdir(), 'phb-enc-'));
const keyFile = path.join(dir, 'key');
writeFileSync(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
const secret = ['--object', `secret,id=k,file=${keyFile},format=raw`];

const plain = path.join(dir, 'plain.qcow2');
const enc = path.join(dir, 'enc.qcow2');
const img = (args: string[]) => execFileSync('qemu-img', args, { encoding: 'utf8' });
img(['create', '-q', '-f', 'qcow2', plain, `${mib}M`]);
img([
  'create',
  '-q',
  ...secret,
  '-f',
  'qcow2',
  '-o',
  'encrypt.format=luks,encrypt.key-secret=k,encrypt.iter-time=10,encrypt.hash-alg=sha512',
  enc,
  `${mib}M`,
]);

const open = (file: string) =>
  file === enc
    ? [...secret, '--image-opts', `driver=qcow2,file.filename=${file},encrypt.key-secret=k,cache.direct=on`]
    : ['-n', '-f', 'qcow2', file];

/** MB/s of one pass over the whole image, as qemu-io reports it. */
function pass(file: string, write: boolean): number {
  const command = write ? `write -P 0xab 0 ${mib}M` : `read -P 0xab 0 ${mib}M`;
  const out = execFileSync('qemu-io', [...open(file), '-c', command], { encoding: 'utf8' });
  const seconds = Number(/ops; ([\d.:]+) sec/.exec(out)?.[1]?.split(':').pop());
  return mib / seconds;
}

try {
  const results: Record<string, number[]> = {
    'plain write': [],
    'enc write': [],
    'plain read': [],
    'enc read': [],
  };
  for (let r = 0; r < rounds; r++) {
    // Alternating, so drift of the machine affects both alike.
    results['plain write']!.push(pass(plain, true));
    results['enc write']!.push(pass(enc, true));
    results['plain read']!.push(pass(plain, false));
    results['enc read']!.push(pass(enc, false));
  }
  const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]));
  for (const op of ['write', 'read']) {
    const ratio = m[`enc ${op}`]! / m[`plain ${op}`]!;
    console.log(
      `sequential ${op}: encrypted ${m[`enc ${op}`]!.toFixed(0)} MB/s, plain ${m[`plain ${op}`]!.toFixed(0)} MB/s: ` +
        `${(ratio * 100).toFixed(0)} % of plain (target >= 70 %) ${ratio >= 0.7 ? 'met' : 'NOT met'}`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
