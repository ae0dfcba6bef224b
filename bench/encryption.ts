// Encrypted vs plain qcow2, as Phyllome makes them, sequential writes then reads of the written data,
// alternating between the images, host cache bypassed. Two kinds of encryption:
// - LUKS inside qcow2 (the default for every new disk: aes-256-xts, SHA-512 PBKDF, iter-time 10 ms),
//   done by QEMU's own crypto in user space;
// - a plain qcow2 in an fscrypt-encrypted folder (`phyllome storage encrypt`: AES-256-XTS in the
//   kernel), against a plain qcow2 in a plain folder of the same filesystem: an ext4 with the encrypt
//   feature on a loop device this bench makes (as root; skipped otherwise).
// `qemu-img bench` of QEMU 7.2 takes no --object, so it cannot open an encrypted image; qemu-io (same
// package, same block layer) can. Target: encrypted >= 70 % of plain.
// Usage: node bench/encryption.ts [MiB] [rounds]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });

type Image = { file: string; luks?: boolean };

function create(image: Image): Image {
  const luks = image.luks
    ? [
        ...secret,
        '-o',
        'encrypt.format=luks,encrypt.key-secret=k,encrypt.iter-time=10,encrypt.hash-alg=sha512',
      ]
    : [];
  run('qemu-img', ['create', '-q', ...luks, '-f', 'qcow2', image.file, `${mib}M`]);
  return image;
}

const open = (image: Image) =>
  image.luks
    ? [
        ...secret,
        '--image-opts',
        `driver=qcow2,file.filename=${image.file},encrypt.key-secret=k,cache.direct=on`,
      ]
    : ['-n', '-f', 'qcow2', image.file];

/** MiB/s of one pass over the whole image, as qemu-io reports it. */
function pass(image: Image, write: boolean): number {
  const command = write ? `write -P 0xab 0 ${mib}M` : `read -P 0xab 0 ${mib}M`;
  const out = run('qemu-io', [...open(image), '-c', command]);
  const rate = /\(([\d.]+) (KiB|MiB|GiB)\/sec/.exec(out);
  if (!rate) throw new Error(`qemu-io printed no rate: ${out}`);
  return Number(rate[1]) * { KiB: 1 / 1024, MiB: 1, GiB: 1024 }[rate[2] as 'KiB' | 'MiB' | 'GiB'];
}

/** Medians of alternating passes (drift of the machine affects both alike), printed as a ratio. */
function compare(what: string, encrypted: Image, plain: Image): void {
  const rates = {
    'enc write': [] as number[],
    'plain write': [] as number[],
    'enc read': [] as number[],
    'plain read': [] as number[],
  };
  for (let r = 0; r < rounds; r++) {
    rates['plain write'].push(pass(plain, true));
    rates['enc write'].push(pass(encrypted, true));
    rates['plain read'].push(pass(plain, false));
    rates['enc read'].push(pass(encrypted, false));
  }
  for (const op of ['write', 'read'] as const) {
    const enc = median(rates[`enc ${op}`]);
    const base = median(rates[`plain ${op}`]);
    const ratio = enc / base;
    console.log(
      `${what}, sequential ${op}: encrypted ${enc.toFixed(0)} MiB/s, plain ${base.toFixed(0)} MiB/s: ` +
        `${(ratio * 100).toFixed(0)} % of plain (target >= 70 %) ${ratio >= 0.7 ? 'met' : 'NOT met'}`,
    );
  }
}

/** An ext4 with the encrypt feature on a loop device, with one fscrypt folder; undone by the returned function. */
function fscryptFolder(): { plainDir: string; encDir: string; undo: () => void } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const made = ['/etc/fscrypt.conf', '/.fscrypt'].filter((p) => !existsSync(p));
  const image = path.join(dir, 'fs.img');
  const mnt = path.join(dir, 'mnt');
  mkdirSync(mnt);
  run('truncate', ['-s', `${2 * mib + 128}M`, image]);
  run('mkfs.ext4', ['-q', '-O', 'encrypt', image]);
  run('mount', ['-o', 'loop', image, mnt]);
  const undo = () => {
    run('umount', [mnt]);
    for (const p of made) rmSync(p, { recursive: true, force: true });
  };
  try {
    if (made.includes('/etc/fscrypt.conf')) run('fscrypt', ['setup', '--quiet', '--time=100ms']);
    run('fscrypt', ['setup', mnt, '--quiet']);
    const raw = path.join(dir, 'raw.key');
    writeFileSync(raw, randomBytes(32), { mode: 0o600 });
    const encDir = path.join(mnt, 'enc');
    const plainDir = path.join(mnt, 'plain');
    mkdirSync(encDir);
    mkdirSync(plainDir);
    run('fscrypt', ['encrypt', encDir, '--source=raw_key', '--name=bench', `--key=${raw}`, '--quiet']);
    return { plainDir, encDir, undo };
  } catch (e) {
    undo();
    throw e;
  }
}

/** The kernel's best xts(aes) implementation (aesni for AES-NI; a generic one is many times slower). */
function kernelXts(): string {
  let best = { driver: 'none', priority: -1 };
  for (const block of run('cat', ['/proc/crypto']).split('\n\n')) {
    if (!/^name\s+: xts\(aes\)$/m.test(block)) continue;
    const driver = /^driver\s+: (.+)$/m.exec(block)?.[1] ?? '?';
    const priority = Number(/^priority\s+: (\d+)$/m.exec(block)?.[1] ?? 0);
    if (priority > best.priority) best = { driver, priority };
  }
  return best.driver;
}

try {
  console.log(`kernel xts(aes): ${kernelXts()}; qemu-img: ${run('qemu-img', ['--version']).split('\n')[0]}`);
  compare(
    'LUKS in qcow2 (QEMU)',
    create({ file: path.join(dir, 'enc.qcow2'), luks: true }),
    create({ file: path.join(dir, 'plain.qcow2') }),
  );
  const fs = fscryptFolder();
  if (!fs) console.log('fscrypt folder: skipped (needs root for a loop device)');
  else {
    try {
      compare(
        'fscrypt folder (kernel)',
        create({ file: path.join(fs.encDir, 'disk.qcow2') }),
        create({ file: path.join(fs.plainDir, 'disk.qcow2') }),
      );
    } finally {
      fs.undo();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
