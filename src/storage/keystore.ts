import {
  createCipheriv,
  createDecipheriv,
  randomBytes,
  scrypt as scryptCb,
  timingSafeEqual,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { writeFileAtomic } from '../daemon/files.js';

const scrypt = promisify(scryptCb) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

/** AES-256-GCM output, base64 fields. */
export interface Sealed {
  iv: string;
  tag: string;
  data: string;
}

interface KeystoreFile {
  version: 1;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  /** A known text sealed with the key-encryption key: a wrong passphrase fails to open it. */
  check: Sealed;
  /** Each VM's disk key (by VM uuid), sealed with the key-encryption key. */
  keys: Record<string, Sealed>;
}

export class KeystoreError extends Error {
  constructor(
    message: string,
    readonly reason: 'locked' | 'wrong-passphrase' | 'missing-key' | 'weak-passphrase',
  ) {
    super(message);
  }
}

const CHECK = Buffer.from('phyllome keystore v1');
/** scrypt cost: about 100 ms and 64 MiB here, paid once per unlock, never per disk open. */
export const KDF = { N: 2 ** 16, r: 8, p: 1 };
const MAXMEM = 128 * 2 ** 20;

export type KdfParams = typeof KDF;

/** `length` bytes derived from a passphrase (scrypt). */
export const deriveKey = (
  passphrase: string,
  salt: Buffer,
  params: KdfParams,
  length = 32,
): Promise<Buffer> => scrypt(passphrase, salt, length, { ...params, maxmem: MAXMEM });

export function seal(kek: Buffer, plain: Buffer, aad: string): Sealed {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', kek, iv);
  c.setAAD(Buffer.from(aad));
  const data = Buffer.concat([c.update(plain), c.final()]);
  return { iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), data: data.toString('base64') };
}

/** Throws when the key is wrong or the sealed data was tampered with (GCM's tag). */
export function open(kek: Buffer, s: Sealed, aad: string): Buffer {
  const d = createDecipheriv('aes-256-gcm', kek, Buffer.from(s.iv, 'base64'));
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(Buffer.from(s.tag, 'base64'));
  return Buffer.concat([d.update(Buffer.from(s.data, 'base64')), d.final()]);
}

/**
 * The host keystore: one random key per VM, wrapped (AES-256-GCM) by a key-encryption key derived
 * from the administrator's passphrase with scrypt. Only wrapped keys reach the disk; the KEK lives in
 * the daemon's memory between unlock and exit.
 */
export class Keystore {
  private kek?: Buffer;
  /** Read-modify-write of the file, one at a time: two creates must not lose a key. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly file: string) {}

  get unlocked(): boolean {
    return this.kek !== undefined;
  }

  private async read(): Promise<KeystoreFile | undefined> {
    try {
      return JSON.parse(await readFile(this.file, 'utf8')) as KeystoreFile;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  private write(store: KeystoreFile): Promise<void> {
    return writeFileAtomic(this.file, JSON.stringify(store, null, 2) + '\n', 0o600);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Unlocks, or on first use creates the keystore with this passphrase. A wrong one changes nothing. */
  unlock(passphrase: string): Promise<'created' | 'unlocked'> {
    return this.serial(() => this.unlockNow(passphrase));
  }

  private async unlockNow(passphrase: string): Promise<'created' | 'unlocked'> {
    const store = await this.read();
    if (!store) {
      if (passphrase.length < 8) {
        throw new KeystoreError('the passphrase must have at least 8 characters', 'weak-passphrase');
      }
      const salt = randomBytes(16);
      const kek = await deriveKey(passphrase, salt, KDF);
      await this.write({
        version: 1,
        kdf: { name: 'scrypt', ...KDF, salt: salt.toString('base64') },
        check: seal(kek, CHECK, 'check'),
        keys: {},
      });
      this.kek = kek;
      return 'created';
    }
    const { N, r, p, salt } = store.kdf;
    const kek = await deriveKey(passphrase, Buffer.from(salt, 'base64'), { N, r, p });
    let check: Buffer;
    try {
      check = open(kek, store.check, 'check');
    } catch {
      throw new KeystoreError('wrong passphrase: the keystore stays locked', 'wrong-passphrase');
    }
    if (!timingSafeEqual(check, CHECK)) {
      throw new KeystoreError('wrong passphrase: the keystore stays locked', 'wrong-passphrase');
    }
    this.kek = kek;
    return 'unlocked';
  }

  lock(): void {
    this.kek?.fill(0);
    this.kek = undefined;
  }

  private requireKek(): Buffer {
    if (!this.kek) {
      throw new KeystoreError(
        'the keystore is locked: run "phyllome unlock" (or start phyllomed with PHYLLOME_PASSPHRASE_FILE)',
        'locked',
      );
    }
    return this.kek;
  }

  /** A new random key for a VM, stored wrapped. The LUKS passphrase is its base64 text (QEMU wants UTF-8). */
  async newKey(vm: string): Promise<string> {
    const key = randomBytes(32).toString('base64');
    await this.putKey(vm, key);
    return key;
  }

  /** Stores a key that came from elsewhere (an imported VM's), wrapped like the rest. */
  putKey(vm: string, key: string): Promise<void> {
    const kek = this.requireKek();
    return this.serial(async () => {
      const store = (await this.read())!;
      store.keys[vm] = seal(kek, Buffer.from(key), vm);
      await this.write(store);
    });
  }

  async keyFor(vm: string): Promise<string> {
    const kek = this.requireKek();
    const sealed = (await this.read())?.keys[vm];
    if (!sealed) throw new KeystoreError(`the keystore has no key for VM ${vm}`, 'missing-key');
    return open(kek, sealed, vm).toString();
  }

  /** Drops keys of VMs that do not exist (a create that crashed); needs no passphrase. */
  prune(keep: Set<string>): Promise<string[]> {
    return this.serial(async () => {
      const store = await this.read();
      const gone = Object.keys(store?.keys ?? {}).filter((vm) => !keep.has(vm));
      if (!store || !gone.length) return [];
      for (const vm of gone) delete store.keys[vm];
      await this.write(store);
      return gone;
    });
  }

  /** The same key under another name (a clone's copied TPM state). */
  copyKey(from: string, to: string): Promise<void> {
    const kek = this.requireKek();
    return this.serial(async () => {
      const store = (await this.read())!;
      const sealed = store.keys[from];
      if (!sealed) throw new KeystoreError(`the keystore has no key for ${from}`, 'missing-key');
      store.keys[to] = seal(kek, open(kek, sealed, from), to);
      await this.write(store);
    });
  }

  removeKey(vm: string): Promise<void> {
    return this.serial(async () => {
      const store = await this.read();
      if (!store?.keys[vm]) return;
      delete store.keys[vm];
      await this.write(store);
    });
  }
}
