import { describe, expect, it } from 'vitest';
import {
  incomingSpec,
  migrationPercent,
  migrationProblems,
  mirroredImages,
  migrationPeer,
  outgoingRecovery,
  parseApiAddress,
  pskFile,
  PSK_USER,
} from '../../src/daemon/migrate-plan.js';
import { parseSpec, type VmSpec } from '../../src/spec/schema.js';

const dir = '/var/lib/phyllome/vms/web';

const spec = (over: Record<string, unknown> = {}): VmSpec =>
  parseSpec({
    schemaVersion: 1,
    uuid: '6f1c0c42-8d43-4a7e-9b1e-2d6c5f0a9b11',
    createdAt: '2026-11-22T10:00:00.000Z',
    name: 'web',
    memory: '1G',
    cpus: 2,
    boot: { kernel: '/boot/vmlinuz' },
    disks: [
      { id: 'disk0', path: `${dir}/disk0.qcow2`, format: 'qcow2', encrypted: true },
      { id: 'disk1', path: '/srv/data.img', format: 'raw' },
      { id: 'disk2', path: '/srv/base.img', format: 'raw', readOnly: true },
    ],
    ...over,
  });

describe('migration plan', () => {
  it('mirrors the writable disks into new qcow2 images in the destination folder, identity kept', () => {
    const s = spec();
    expect(mirroredImages(s, `${dir}/nvram.qcow2`).map((i) => i.node)).toEqual(['disk0', 'disk1']);
    const there = incomingSpec(s, '/home/b/vms/web');
    expect(there.disks).toMatchObject([
      { id: 'disk0', path: '/home/b/vms/web/disk0.qcow2', format: 'qcow2', encrypted: true },
      { id: 'disk1', path: '/home/b/vms/web/disk1.qcow2', format: 'qcow2', encrypted: false },
      { id: 'disk2', path: '/srv/base.img', format: 'raw', readOnly: true },
    ]);
    expect({ ...there, disks: [] }).toEqual({ ...s, disks: [] });
  });

  it('mirrors the UEFI variable store too, encrypted like the disks', () => {
    const uefi = spec({
      machine: 'q35',
      firmware: {
        type: 'uefi',
        code: '/usr/share/OVMF/OVMF_CODE_4M.fd',
        varsTemplate: '/usr/share/OVMF/OVMF_VARS_4M.fd',
        secureBoot: false,
        enrolledKeys: false,
        smm: false,
        nvramEncrypted: true,
      },
    });
    expect(mirroredImages(uefi, `${dir}/nvram.qcow2`).at(-1)).toEqual({
      node: 'fw-vars',
      path: `${dir}/nvram.qcow2`,
      format: 'qcow2',
      encrypted: true,
    });
  });

  it('says what it cannot carry, and what to do', () => {
    expect(migrationProblems(spec(), dir, 0)).toEqual([]);
    const problems = migrationProblems(
      spec({
        tpm: true,
        cdroms: [{ path: `${dir}/cloud-init.iso`, role: 'cloud-init' }, { path: '/srv/debian.iso' }],
        disks: [{ id: 'disk0', path: `${dir}/ro.img`, format: 'raw', readOnly: true }],
      }),
      dir,
      2,
    );
    expect(problems).toEqual([
      '"web" has 2 snapshot(s), which a migration would lose: delete them first (phyllome snapshot delete)',
      `CD-ROM 0 holds ${dir}/cloud-init.iso, which stays behind: eject it first (phyllome media eject web --drive 0)`,
      `read-only disk disk0 (${dir}/ro.img) stays behind: remove it first`,
    ]);
  });

  it('refuses 3D graphics, whose GL state QEMU does not migrate', () => {
    expect(
      migrationProblems(spec({ graphics: { device: 'virtio-vga-gl', renderNode: '/dev/null' } }), dir, 0),
    ).toEqual([
      'QEMU cannot migrate 3D (virgl) graphics: stop "web" and move it with export and import instead',
    ]);
    expect(
      migrationProblems(
        spec({ graphics: { device: 'virtio-vga', hostDevices: [{ kind: 'vf', address: '0000:03:00.1' }] } }),
        dir,
        0,
      ),
    ).toEqual([
      'QEMU cannot migrate a VM holding host GPU hardware (0000:03:00.1): stop "web" and move it with export and import instead',
    ]);
  });

  it('takes IP addresses and ports, loopback or not, never "any address"', () => {
    expect(parseApiAddress('127.0.0.1:8470', '--to')).toEqual({ host: '127.0.0.1', port: 8470 });
    expect(parseApiAddress('[::1]:9', '--to')).toEqual({ host: '::1', port: 9 });
    expect(parseApiAddress('localhost:9', '--to')).toEqual({ host: 'localhost', port: 9 });
    expect(parseApiAddress('10.231.4.2:8470', '--to')).toEqual({ host: '10.231.4.2', port: 8470 });
    expect(parseApiAddress('[fd00::5]:8470', '--to')).toEqual({ host: 'fd00::5', port: 8470 });
    for (const bad of [
      '127.0.0.1',
      '127.0.0.1:0',
      'localhost:70000',
      ':80',
      'fd00::5:8470',
      '[10.0.0.1]:80',
      'host.example:8470',
      '0.0.0.0:8470',
      '[::]:8470',
      '10.0.0.1:80x',
    ]) {
      expect(() => parseApiAddress(bad, '--to'), bad).toThrow(
        /--to takes an IP address and port, like 127\.0\.0\.1:8470/,
      );
    }
  });

  it('pins a fingerprint beyond loopback, and wants none on loopback', () => {
    const fp = 'ab'.repeat(32);
    const pinned = 'AB:'.repeat(31) + 'AB';
    expect(migrationPeer('127.0.0.1:8470', undefined)).toEqual({ host: '127.0.0.1', port: 8470 });
    expect(migrationPeer('10.231.4.2:8470', fp)).toEqual({
      host: '10.231.4.2',
      port: 8470,
      fingerprint: pinned,
    });
    expect(() => migrationPeer('10.231.4.2:8470', undefined)).toThrow(
      /another host \(10\.231\.4\.2:8470\) needs its certificate's fingerprint: run "phyllome host tls-fingerprint" there/,
    );
    expect(() => migrationPeer('127.0.0.1:8470', fp)).toThrow(
      /loopback, served over plain HTTP .* leave out the fingerprint/,
    );
    expect(() => migrationPeer('10.231.4.2:8470', 'abc')).toThrow(/fingerprint: 64 hex digits/);
  });

  it('writes the PSK as GnuTLS reads it, and counts progress in two halves', () => {
    expect(pskFile('ab'.repeat(32))).toBe(`${PSK_USER}:${'ab'.repeat(32)}\n`);
    expect(migrationPercent('disks', 0, 100)).toBe(0);
    expect(migrationPercent('disks', 100, 100)).toBe(50);
    expect(migrationPercent('ram', 50, 100)).toBe(75);
    expect(migrationPercent('ram', 0, 0)).toBe(100);
  });
});

describe('outgoingRecovery', () => {
  const uuid = '6f1c0c42-8d43-4a7e-9b1e-2d6c5f0a9b11';
  it('resumes a VM the destination was never told to run, whatever it says', () => {
    expect(outgoingRecovery(false, uuid, 'unreachable')).toBe('resume');
    expect(outgoingRecovery(false, uuid, { uuid, state: 'starting' })).toBe('resume');
  });
  it('once handed over, lets the destination decide: gone when the VM is there, resumed when not', () => {
    expect(outgoingRecovery(true, uuid, { uuid, state: 'running' })).toBe('gone');
    expect(outgoingRecovery(true, uuid, { uuid, state: 'paused' })).toBe('gone');
    expect(outgoingRecovery(true, uuid, { uuid, state: 'stopped' })).toBe('gone');
    expect(outgoingRecovery(true, uuid, 'absent')).toBe('resume');
    // A namesake is another VM.
    expect(outgoingRecovery(true, uuid, { uuid: 'another', state: 'running' })).toBe('resume');
  });
  it('holds it paused when the destination cannot tell yet', () => {
    expect(outgoingRecovery(true, uuid, 'unreachable')).toBe('hold');
    expect(outgoingRecovery(true, uuid, { uuid, state: 'starting' })).toBe('hold');
  });
});
