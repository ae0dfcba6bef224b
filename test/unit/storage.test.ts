import { describe, expect, it } from 'vitest';
import { hostFindings } from '../../src/host/findings.js';
import { lsattrEncrypted, mountOf } from '../../src/host/storage.js';
import { parseFolderStatus } from '../../src/storage/fscrypt.js';
import { swapRecovery } from '../../src/daemon/storage-crypt.js';
import type { HostReport } from '../../src/host/report.js';

const MOUNTINFO = [
  '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard',
  '30 27 0:25 / /var/lib/phyllome rw,relatime - f2fs /dev/nvme0n1p3 rw',
  '31 27 0:26 / /var/lib/phyllome-old rw - xfs /dev/sdb1 rw',
].join('\n');

const host: HostReport = {
  root: '/',
  cpu: { vendor: 'intel', hypervisor: false, cpus: 4 },
  kvm: { device: true },
  iommu: { enabled: false, units: [], groups: 0 },
  gpus: [],
  usbControllers: [],
  udmabuf: false,
  hugepages: [],
  unreadable: [],
};

describe('VM storage encryption (fscrypt)', () => {
  it('finds the filesystem of a folder by its longest mount point', () => {
    expect(mountOf(MOUNTINFO, '/var/lib/phyllome/vms')).toEqual({ at: '/var/lib/phyllome', type: 'f2fs' });
    expect(mountOf(MOUNTINFO, '/var/lib/phyllome')?.type).toBe('f2fs');
    expect(mountOf(MOUNTINFO, '/var/lib/phyllome-old/x')?.type).toBe('xfs');
    expect(mountOf(MOUNTINFO, '/var/lib/phyllomex')).toEqual({ at: '/', type: 'ext4' });
  });

  it("reads fscrypt's status of a folder (as fscrypt 0.3.3 prints it)", () => {
    const status = (unlocked: string) =>
      [
        '"/srv/phyllome/vms" is encrypted with fscrypt.',
        '',
        'Policy:   9570adbeee14ff2fce180574200e7323',
        'Options:  padding:32 contents:AES_256_XTS filenames:AES_256_CTS policy_version:2 ',
        `Unlocked: ${unlocked}`,
        '',
        'Protected with 1 protector:',
        'PROTECTOR         LINKED  DESCRIPTION',
        '48ea6faf6e90240d  No      raw key protector "phyllome"',
      ].join('\n');
    expect(parseFolderStatus(status('Yes'))).toEqual({ encrypted: true, unlocked: true });
    expect(parseFolderStatus(status('No'))).toEqual({ encrypted: true, unlocked: false });
    expect(parseFolderStatus('"/tmp" is not encrypted\n')).toEqual({ encrypted: false, unlocked: false });
  });

  it('finishes or undoes an encryption a crash cut short, from the folders it left', () => {
    const at = (vms: boolean, staging: boolean, plain: boolean) => swapRecovery({ vms, staging, plain });
    expect(at(true, false, false)).toEqual([]);
    // Cut while copying: the plain folder is still the VM folder.
    expect(at(true, true, false)).toEqual(['drop-staging']);
    // Cut between the two renames: the copy was whole before the plain folder moved aside.
    expect(at(false, true, true)).toEqual(['finish', 'drop-plain']);
    // Cut before the old plain folder was removed.
    expect(at(true, false, true)).toEqual(['drop-plain']);
  });

  it("reads lsattr's E flag", () => {
    expect(lsattrEncrypted('------------E--e------- /var/lib/phyllome\n')).toBe(true);
    expect(lsattrEncrypted('-----------I--e------- /tmp\n')).toBe(false);
    expect(lsattrEncrypted('')).toBe(false);
  });

  it('reports it, with the way to turn it on', () => {
    const plain = hostFindings(host, {
      storage: { path: '/var/lib/phyllome', fsType: 'ext4', kernelSupport: true, fscrypt: false },
    }).find((f) => f.id === 'storage-fscrypt')!;
    expect(plain.level).toBe('warn');
    expect(plain.title).toMatch(/UEFI variables, TPM state and logs are not/);
    expect(plain.fix).toMatch(/phyllome storage encrypt .*\/var\/lib\/phyllome .*tune2fs -O encrypt/);
    const xfs = hostFindings(host, {
      storage: { path: '/srv/vms', fsType: 'xfs', kernelSupport: true, fscrypt: false },
    }).find((f) => f.id === 'storage-fscrypt')!;
    expect(xfs.fix).toMatch(/move \/srv\/vms to an ext4 or f2fs filesystem/);
    const done = hostFindings(host, {
      storage: { path: '/var/lib/phyllome', fsType: 'ext4', kernelSupport: true, fscrypt: true },
    }).find((f) => f.id === 'storage-fscrypt')!;
    expect(done.level).toBe('ok');
  });
});
