import { describe, expect, it } from 'vitest';
import { parseSpec, parseSpecInput, SpecError } from '../../src/spec/schema.js';

const problems = (input: unknown): string[] => {
  try {
    parseSpecInput(input);
  } catch (e) {
    if (e instanceof SpecError) return e.problems;
    throw e;
  }
  throw new Error('expected the spec to be refused');
};

describe('VM spec', () => {
  it('fills defaults and normalises', () => {
    const spec = parseSpecInput({
      name: 'web-1',
      memory: '1024M',
      boot: { kernel: '/boot/../boot//vmlinuz' },
      disks: [{ path: '/var/lib/x/disk.qcow2/', format: 'qcow2' }],
    });
    expect(spec).toEqual({
      name: 'web-1',
      memory: '1G',
      cpus: 1,
      boot: { kernel: '/boot/vmlinuz' },
      disks: [
        { path: '/var/lib/x/disk.qcow2', format: 'qcow2', readOnly: false, bus: 'virtio', encrypted: false },
      ],
      graphics: { device: 'none' },
      // What a hand-made spec gets: the plain machine of the foundation; the planner fills these for an OS.
      machine: 'q35',
      firmware: { type: 'bios' },
      tpm: false,
      tpmEncrypted: false,
      hyperv: false,
      clock: 'utc',
      cdroms: [],
      nics: [],
      input: 'ps2',
      sound: 'none',
      rng: false,
      balloon: false,
    });
  });

  it('is idempotent: a parsed spec parses to itself', () => {
    const once = parseSpecInput({ name: 'a', memory: 1536, cpus: 2 });
    expect(parseSpecInput(once)).toEqual(once);
  });

  it.each(['a,b', 'a=b', 'a/b', 'a\nb', '..', '-a', 'A', '', 'x'.repeat(64), 'a b', 'é'])(
    'refuses the name %j, saying what is allowed',
    (name) => {
      const found = problems({ name });
      expect(found).toHaveLength(1);
      expect(found[0]).toMatch(/^name: invalid VM name .*lowercase letters, digits and "-"/);
    },
  );

  it('accepts names at the limits', () => {
    expect(parseSpecInput({ name: 'a' }).name).toBe('a');
    expect(parseSpecInput({ name: '0' + 'x'.repeat(62) }).name).toHaveLength(63);
  });

  it('names the path of unknown keys, at any depth', () => {
    expect(problems({ name: 'a', colour: 'red' })).toEqual(['unknown key "colour"']);
    expect(problems({ name: 'a', boot: { kernel: '/k', initramfs: '/i' } })).toEqual([
      'boot: unknown key "initramfs"',
    ]);
    expect(problems({ name: 'a', disks: [{ path: '/d', format: 'raw', cache: 'none' }] })).toEqual([
      'disks[0]: unknown key "cache"',
    ]);
  });

  it.each([
    ['0', /memory: "0" must be greater than zero/],
    ['abc', /memory: "abc" is not a size/],
    ['1M', /memory: memory must be at least 16M/],
  ])('refuses memory %j', (memory, message) => {
    expect(problems({ name: 'a', memory }).join('\n')).toMatch(message);
  });

  it('refuses relative paths and control characters', () => {
    expect(problems({ name: 'a', boot: { kernel: 'vmlinuz' } })).toEqual([
      'boot.kernel: must be an absolute path, like /var/lib/images/disk.qcow2',
    ]);
    expect(problems({ name: 'a', boot: { kernel: '/k\n-daemonize' } })[0]).toMatch(/control characters/);
    expect(problems({ name: 'a', boot: { kernel: '/k', append: 'a\nb' } })[0]).toMatch(/boot.append/);
  });

  it('takes a graphics device and refuses unknown ones', () => {
    expect(
      parseSpecInput({ name: 'a', graphics: { device: 'virtio-vga-gl', renderNode: '/dev/null' } }).graphics,
    ).toEqual({ device: 'virtio-vga-gl', renderNode: '/dev/null' });
    expect(problems({ name: 'a', graphics: { device: 'cirrus' } })[0]).toMatch(/^graphics\.device:/);
    expect(problems({ name: 'a', graphics: { device: 'virtio-vga', renderNode: 'dri' } })[0]).toMatch(
      /^graphics\.renderNode: must be an absolute path/,
    );
  });

  it('refuses a bad cpu count and a bad disk format', () => {
    expect(problems({ name: 'a', cpus: 0 })[0]).toMatch(/^cpus:/);
    expect(problems({ name: 'a', cpus: 1.5 })[0]).toMatch(/^cpus:/);
    expect(problems({ name: 'a', disks: [{ path: '/d', format: 'vmdk' }] })[0]).toMatch(
      /^disks\[0\]\.format:/,
    );
  });

  it('a stored spec needs its identity and version', () => {
    expect(() => parseSpec({ name: 'a' })).toThrow(/schemaVersion/);
    const stored = parseSpec({
      name: 'a',
      schemaVersion: 1,
      uuid: '6f1c0c42-8d43-4a7e-9b1e-2d6c5f0a9b11',
      createdAt: '2026-11-22T10:00:00.000Z',
    });
    expect(stored.memory).toBe('512M');
    expect(() => parseSpec({ ...stored, schemaVersion: 2 })).toThrow(/schemaVersion/);
  });
});
