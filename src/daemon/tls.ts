import { execFile } from 'node:child_process';
import { generateKeyPairSync, timingSafeEqual, X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { writeFileAtomic } from './files.js';

/** The certificate and key phyllomed serves HTTPS with, in PHYLLOME_HOME. */
export const tlsFiles = (home: string) => ({
  cert: path.join(home, 'tls-cert.pem'),
  key: path.join(home, 'tls-key.pem'),
});

/**
 * A SHA-256 certificate fingerprint as OpenSSL and Node print it (`AB:CD:…`, 32 bytes), from any
 * spelling of it: colons or not, any case, an `sha256:` prefix or not.
 */
export function parseFingerprint(text: string): string {
  const hex = text
    .trim()
    .replace(/^sha-?256[:=]?/i, '')
    .replace(/:/g, '')
    .toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) {
    throw new Error(
      `fingerprint: 64 hex digits (a SHA-256 digest, colons allowed) expected, as "phyllome host tls-fingerprint" prints it (got ${text})`,
    );
  }
  return hex.match(/../g)!.join(':');
}

/** Whether two parsed fingerprints are the same, in time that does not depend on where they differ. */
export const sameFingerprint = (a: string, b: string): boolean =>
  a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/** The fingerprint the daemon's certificate file has, as the CLI prints it. */
export async function certificateFingerprint(home: string): Promise<string> {
  const { cert } = tlsFiles(home);
  const pem = await readFile(cert, 'utf8').catch(() => {
    throw new Error(
      `no certificate at ${cert} yet: phyllomed makes one when it first listens beyond loopback (phyllome daemon --listen ADDRESS:PORT)`,
    );
  });
  return new X509Certificate(pem).fingerprint256;
}

/**
 * The daemon's certificate and key, made on first use: an ECDSA P-256 key (written 0600 by us, so it
 * is never readable by others even for a moment) and a self-signed certificate naming `host`, made by
 * the openssl CLI (Node has no X.509 generator). Clients pin its fingerprint, so it never expires in
 * practice and stays the same when the address changes.
 */
export async function ensureCertificate(home: string, host: string): Promise<{ cert: string; key: string }> {
  const files = tlsFiles(home);
  let key = await readFile(files.key, 'utf8').catch(() => undefined);
  if (key === undefined) {
    key = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    await writeFile(files.key, key, { mode: 0o600, flag: 'wx' });
  }
  let cert = await readFile(files.cert, 'utf8').catch(() => undefined);
  if (cert === undefined) {
    const { stdout } = await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-key',
      files.key,
      '-days',
      '36500',
      '-subj',
      '/CN=phyllomed',
      '-addext',
      `subjectAltName=IP:${host}`,
    ]);
    cert = stdout;
    await writeFileAtomic(files.cert, cert);
  }
  return { cert, key };
}
