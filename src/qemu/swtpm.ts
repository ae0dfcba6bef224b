import { execFile } from 'node:child_process';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { argvOf, findBinary, reapHelper, startSocketHelper } from './process.js';

export class SwtpmError extends Error {}

const SWTPM_INSTALL_HINT =
  'apt-get install swtpm swtpm-tools (Debian) or dnf install swtpm swtpm-tools (Fedora)';

export interface SwtpmFiles {
  /** The TPM's persistent state (keys, NV): lives in the VM's folder and survives restarts. */
  stateDir: string;
  socket: string;
  pidfile: string;
  log: string;
  /** A 0600 file with the state's AES key (hex); swtpm removes it once read. */
  keyFile?: string;
}

/** swtpm splits its options on `,` with no escape: a path holding one would be misread, so refuse it. */
function plain(p: string): string {
  if (p.includes(',')) {
    throw new SwtpmError(
      `swtpm cannot take a path with a comma (${p}): use a PHYLLOME_HOME and runtime folder without one`,
    );
  }
  return p;
}

/** Pure: swtpm's arguments. `--terminate` makes it exit when QEMU closes the control channel. */
export function swtpmArgs(f: SwtpmFiles): string[] {
  return [
    'socket',
    '--tpm2',
    '--tpmstate',
    `dir=${plain(f.stateDir)},mode=0600`,
    '--ctrl',
    `type=unixio,path=${plain(f.socket)},mode=0600`,
    '--pid',
    `file=${plain(f.pidfile)}`,
    '--terminate',
    ...(f.keyFile ? ['--key', `file=${plain(f.keyFile)},format=hex,mode=aes-256-cbc,remove=true`] : []),
    '--log',
    'level=1',
  ];
}

/** The swtpm binary: PHYLLOME_SWTPM, else the first `swtpm` on PATH. */
export async function findSwtpm(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const found = await findBinary('swtpm', env.PHYLLOME_SWTPM, env.PATH);
  if (found) return found;
  throw new SwtpmError(`this VM has a TPM, but swtpm is not installed: ${SWTPM_INSTALL_HINT}`);
}

export const isSwtpmFor = async (pid: number, stateDir: string): Promise<boolean> =>
  (await argvOf(pid))?.includes(`dir=${stateDir},mode=0600`) ?? false;

/** The last lines of swtpm's log, for error messages. */
export const swtpmLogTail = async (file: string) =>
  (await readFile(file, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' / ');

/**
 * Starts swtpm detached (it outlives a daemon restart along with its QEMU) and waits, bounded, for its
 * control socket. An swtpm that exits first fails the start with its own words.
 */
export async function startSwtpm(binary: string, f: SwtpmFiles, timeoutMs = 5000): Promise<number> {
  await mkdir(f.stateDir, { recursive: true, mode: 0o700 });
  return startSocketHelper({
    name: 'swtpm',
    binary,
    args: swtpmArgs(f),
    log: f.log,
    socket: f.socket,
    timeoutMs,
    logTail: () => swtpmLogTail(f.log),
  }).catch((e: Error) => {
    throw new SwtpmError(e.message);
  });
}

/** Bit 0 of the flags in swtpm's state blob header (version, min version, header size, flags). */
const BLOB_ENCRYPTED = 0x1;

/**
 * Whether a TPM state folder holds state in the clear: undefined when it holds none yet (swtpm makes
 * it at the first start, encrypted when given a key).
 */
export async function tpmStatePlain(stateDir: string): Promise<boolean | undefined> {
  const handle = await open(path.join(stateDir, 'tpm2-00.permall'), 'r').catch(() => undefined);
  if (!handle) return undefined;
  try {
    const head = Buffer.alloc(6);
    const { bytesRead } = await handle.read(head, 0, 6, 0);
    return bytesRead < 6 || !(head.readUInt16BE(4) & BLOB_ENCRYPTED);
  } finally {
    await handle.close();
  }
}

/**
 * Writes plain TPM state (`from`) encrypted with `key` (hex) into the empty folder `to`. swtpm given
 * a key cannot read plain state, so the state goes out of one swtpm without a key
 * (`swtpm_ioctl --save permanent`) into a second one with the key (`--load permanent`), which stores
 * it encrypted. `work` (private, short path) holds their sockets and the state blob while they run.
 */
export async function encryptTpmState(
  binary: string,
  o: { from: string; to: string; key: string; work: string },
): Promise<void> {
  const ioctl = await findBinary('swtpm_ioctl', undefined, process.env.PATH);
  if (!ioctl) throw new SwtpmError(`swtpm_ioctl is not installed: ${SWTPM_INSTALL_HINT}`);
  const blob = path.join(o.work, 'permanent');
  const session = async (stateDir: string, keyFile: string | undefined, steps: string[][]) => {
    const f = {
      stateDir,
      socket: path.join(o.work, 'ctrl.sock'),
      pidfile: path.join(o.work, 'swtpm.pid'),
      log: path.join(o.work, 'swtpm.log'),
      ...(keyFile ? { keyFile } : {}),
    };
    const pid = await startSwtpm(binary, f);
    try {
      for (const step of steps) {
        await promisify(execFile)(ioctl, ['--unix', f.socket, ...step], { timeout: 10_000 }).catch(
          (e: Error) => {
            throw new SwtpmError(`cannot re-encrypt the TPM state (swtpm_ioctl ${step[0]}): ${e.message}`);
          },
        );
      }
    } finally {
      // `-s` ends it, state stored; one a failed step left running is stopped.
      await reapHelper(pid, () => isSwtpmFor(pid, stateDir), 2000);
      await rm(f.socket, { force: true });
    }
  };
  try {
    await session(o.from, undefined, [['-i'], ['--save', 'permanent', blob], ['-s']]);
    const keyFile = path.join(o.work, 'key');
    await writeFile(keyFile, o.key, { mode: 0o600, flag: 'wx' });
    await session(o.to, keyFile, [['--load', 'permanent', blob], ['-i'], ['-s']]).finally(() =>
      rm(keyFile, { force: true }),
    );
  } finally {
    await rm(blob, { force: true });
  }
}
