import { stringify } from 'yaml';

/** What `--cloud-init` sets in a Linux cloud image. */
export interface CloudInit {
  user: string;
  /** A crypt(3) hash (`openssl passwd -6`), never a plain password. */
  passwordHash?: string;
  sshKeys?: string[];
  hostname?: string;
}

export class CloudInitError extends Error {}

const USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/;
const HOST_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
const HASH_RE = /^\$(1|5|6|y|2[aby]|7)\$[^\s:]+$/;
const KEY_RE =
  /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]+( [^\n]*)?$/;

/** Pure: checks the values, so a bad one fails at create with a clear error instead of a guest that ignores it. */
export function checkCloudInit(c: CloudInit): void {
  if (!USER_RE.test(c.user))
    throw new CloudInitError(
      `cloud-init user "${c.user}" is not a valid Linux user name (lower case, digits, _ and -)`,
    );
  if (c.hostname !== undefined && !HOST_RE.test(c.hostname)) {
    throw new CloudInitError(
      `cloud-init hostname "${c.hostname}" is not a valid host name (letters, digits and -)`,
    );
  }
  if (c.passwordHash !== undefined && !HASH_RE.test(c.passwordHash)) {
    throw new CloudInitError(
      'the password must be given as a crypt hash, like the output of "openssl passwd -6"',
    );
  }
  for (const k of c.sshKeys ?? []) {
    if (!KEY_RE.test(k.trim())) throw new CloudInitError(`not an SSH public key: ${k.slice(0, 40)}…`);
  }
  if (!c.passwordHash && !c.sshKeys?.length) {
    throw new CloudInitError('cloud-init needs a password hash or an SSH key, or nobody could log in');
  }
}

/** Pure: NoCloud `user-data` and `meta-data`. The instance id changes per VM so cloud-init runs once on each. */
export function cloudInitFiles(c: CloudInit, instanceId: string): { userData: string; metaData: string } {
  checkCloudInit(c);
  const user: Record<string, unknown> = {
    name: c.user,
    shell: '/bin/bash',
    // Through sudoers.d, not a group name that differs between distributions; a key-only user has no password to type.
    sudo: c.passwordHash ? 'ALL=(ALL) ALL' : 'ALL=(ALL) NOPASSWD:ALL',
    lock_passwd: !c.passwordHash,
    ...(c.passwordHash ? { passwd: c.passwordHash } : {}),
    ...(c.sshKeys?.length ? { ssh_authorized_keys: c.sshKeys.map((k) => k.trim()) } : {}),
  };
  // lineWidth 0: keys and hashes stay on one line, as cloud-init's YAML loader wants them.
  const userData = `#cloud-config\n${stringify(
    {
      ...(c.hostname ? { hostname: c.hostname } : {}),
      users: [user],
      ssh_pwauth: !!c.passwordHash,
    },
    { lineWidth: 0 },
  )}`;
  const metaData = stringify({
    'instance-id': instanceId,
    ...(c.hostname ? { 'local-hostname': c.hostname } : {}),
  });
  return { userData, metaData };
}
