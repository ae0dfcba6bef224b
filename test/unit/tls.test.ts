import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  certificateFingerprint,
  ensureCertificate,
  parseFingerprint,
  sameFingerprint,
  tlsFiles,
} from '../../src/daemon/tls.js';

const FP = 'AB:'.repeat(31) + 'CD';

describe('certificate fingerprints', () => {
  it('reads any usual spelling of a SHA-256 fingerprint', () => {
    for (const text of [FP, FP.toLowerCase(), FP.replace(/:/g, ''), `SHA256:${FP}`, ` sha256=${FP}\n`]) {
      expect(parseFingerprint(text), text).toBe(FP);
    }
    for (const bad of ['', 'AB:CD', FP + ':EF', FP.replace('CD', 'CG'), `SHA1:${FP}`]) {
      expect(() => parseFingerprint(bad), bad).toThrow(
        /fingerprint: 64 hex digits .*"phyllome host tls-fingerprint"/,
      );
    }
  });

  it('compares whole fingerprints', () => {
    expect(sameFingerprint(FP, parseFingerprint(FP.toLowerCase()))).toBe(true);
    expect(sameFingerprint(FP, FP.replace(/CD$/, 'CE'))).toBe(false);
    expect(sameFingerprint(FP, FP.slice(3))).toBe(false);
    expect(sameFingerprint(FP, '')).toBe(false);
  });
});

describe('the daemon certificate', () => {
  it('is made once (ECDSA P-256, the address as IP SAN, key 0600) and keeps its fingerprint', async () => {
    const home = await mkdtemp(path.join(tmpdir(), 'phyllome-tls-'));
    try {
      await expect(certificateFingerprint(home)).rejects.toThrow(
        /no certificate .*\(phyllome daemon --listen/,
      );
      const made = await ensureCertificate(home, '10.231.7.2');
      const files = tlsFiles(home);
      expect((await stat(files.key)).mode & 0o777).toBe(0o600);
      const text = execFileSync('openssl', ['x509', '-noout', '-text', '-in', files.cert], {
        encoding: 'utf8',
      });
      expect(text).toMatch(/ASN1 OID: prime256v1/);
      expect(text).toMatch(/IP Address:10\.231\.7\.2/);
      const fp = await certificateFingerprint(home);
      const byOpenssl = execFileSync(
        'openssl',
        ['x509', '-noout', '-fingerprint', '-sha256', '-in', files.cert],
        {
          encoding: 'utf8',
        },
      );
      expect(byOpenssl.trim()).toBe(`sha256 Fingerprint=${fp}`);
      expect(parseFingerprint(fp)).toBe(fp);
      expect(await ensureCertificate(home, '10.231.7.9')).toEqual(made);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
