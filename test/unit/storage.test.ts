import { describe, expect, it } from 'vitest';
import { hostFindings } from '../../src/host/findings.js';
import { fsTypeOf, lsattrEncrypted } from '../../src/host/storage.js';
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
    expect(fsTypeOf(MOUNTINFO, '/var/lib/phyllome/vms')).toBe('f2fs');
    expect(fsTypeOf(MOUNTINFO, '/var/lib/phyllome')).toBe('f2fs');
    expect(fsTypeOf(MOUNTINFO, '/var/lib/phyllome-old/x')).toBe('xfs');
    expect(fsTypeOf(MOUNTINFO, '/var/lib/phyllomex')).toBe('ext4');
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
    expect(plain.fix).toMatch(/tune2fs -O encrypt .*fscrypt encrypt \/var\/lib\/phyllome/);
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
