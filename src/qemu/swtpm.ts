import { mkdir, readFile } from 'node:fs/promises';
import { argvOf, findBinary, startSocketHelper } from './process.js';

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
