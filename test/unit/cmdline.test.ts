import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { wireNics } from '../../src/net/wiring.js';
import { buildQemuArgs, qemuEnv, type LaunchPlan } from '../../src/qemu/cmdline.js';
import { escapeOptValue, opts, parseOpts, QemuOptError } from '../../src/qemu/opts.js';
import { parseSpec, SpecError, type VmSpec } from '../../src/spec/schema.js';
import { MS_SECURE_BOOT } from '../fixtures/firmware-choice.js';

const identity = {
  schemaVersion: 1,
  uuid: '6f1c0c42-8d43-4a7e-9b1e-2d6c5f0a9b11',
  createdAt: '2026-11-22T10:00:00.000Z',
};

const files = {
  qmp: '/run/phyllome/vms/demo/qmp.sock',
  serial: '/run/phyllome/vms/demo/serial.sock',
  pidfile: '/run/phyllome/vms/demo/qemu.pid',
  vnc: '/run/phyllome/vms/demo/vnc.sock',
  tpm: '/run/phyllome/vms/demo/swtpm.sock',
  key: '/run/phyllome/vms/demo/key',
  qga: '/run/phyllome/vms/demo/qga.sock',
};

const state = { nvram: '/var/lib/phyllome/vms/demo/nvram.qcow2' };

const plan = (spec: VmSpec, over: Partial<LaunchPlan> = {}): LaunchPlan => ({
  spec,
  files,
  state,
  accel: 'tcg',
  caps: { sandbox: true },
  nets: wireNics(spec, true, (i) => `/run/phyllome/vms/demo/passt-${i}.sock`),
  ...over,
});

describe('QEMU option escaping', () => {
  it('doubles commas and refuses control characters', () => {
    expect(escapeOptValue('/a,b,,c')).toBe('/a,,b,,,,c');
    expect(() => escapeOptValue('a\nb')).toThrow(QemuOptError);
    expect(() => escapeOptValue('a\0b')).toThrow(QemuOptError);
  });

  it('builds option strings and reads them back', () => {
    const text = opts('socket', {
      id: 'x',
      path: '/tmp/a,id=evil',
      server: true,
      wait: false,
      skip: undefined,
    });
    expect(text).toBe('socket,id=x,path=/tmp/a,,id=evil,server=on,wait=off');
    expect(parseOpts(text)).toEqual({
      head: 'socket',
      pairs: [
        ['id', 'x'],
        ['path', '/tmp/a,id=evil'],
        ['server', 'on'],
        ['wait', 'off'],
      ],
    });
  });

  it('never takes a key from outside', () => {
    expect(() => opts(undefined, { 'a,b': 1 })).toThrow(QemuOptError);
    expect(() => opts('x=y', {})).toThrow(QemuOptError);
  });
});

describe('QEMU command line', () => {
  const demo = parseSpec({
    ...identity,
    name: 'demo',
    memory: '1G',
    cpus: 2,
    boot: {
      kernel: '/var/cache/phyllome/vmlinuz',
      initrd: '/var/cache/phyllome/initrd.img',
      append: 'console=ttyS0 quiet',
    },
    disks: [
      { path: '/var/lib/phyllome/disks/root.qcow2', format: 'qcow2' },
      { path: '/srv/iso, data.img', format: 'raw', readOnly: true },
    ],
  });

  it('matches the golden command line', async () => {
    await expect(buildQemuArgs(plan(demo)).join('\n') + '\n').toMatchFileSnapshot(
      '../golden/cmdline-demo.txt',
    );
  });

  it('gives virgl 3D an off-screen GL display, and 2D a plain device', async () => {
    const virgl = parseSpec({
      ...identity,
      name: 'gl',
      graphics: { device: 'virtio-vga-gl', renderNode: '/dev/dri/renderD128' },
    });
    await expect(buildQemuArgs(plan(virgl)).join('\n') + '\n').toMatchFileSnapshot(
      '../golden/cmdline-virgl.txt',
    );
    const twoD = buildQemuArgs(
      plan(parseSpec({ ...identity, name: 'flat', graphics: { device: 'virtio-vga' } })),
    );
    expect(twoD.join(' ')).toContain(
      '-device virtio-vga,id=gpu0 -display none -vnc unix:/run/phyllome/vms/demo/vnc.sock',
    );
    expect(twoD.join(' ')).not.toContain('egl-headless');
  });

  it("shows a screen in a window on the host's display when asked, GL for GL devices, VNC beside it", () => {
    const windowed = (graphics: object) =>
      buildQemuArgs(
        plan(parseSpec({ ...identity, name: 'w', graphics: { ...graphics, window: true } })),
      ).join(' ');
    expect(windowed({ device: 'virtio-vga-gl' })).toContain(
      '-device virtio-vga-gl,id=gpu0 -display gtk,gl=on,window-close=off -vnc unix:/run/phyllome/vms/demo/vnc.sock',
    );
    expect(windowed({ device: 'vga' })).toContain(
      '-device VGA,id=gpu0 -display gtk,gl=off,window-close=off -vnc unix:',
    );
    const env = { PATH: '/usr/bin' };
    const spec = (window: boolean) =>
      parseSpec({ ...identity, name: 'w', graphics: { device: 'vga', window } });
    expect(qemuEnv(spec(true), env)).toEqual({ PATH: '/usr/bin', NO_AT_BRIDGE: '1' });
    expect(qemuEnv(spec(false), env)).toBe(env);
    expect(() => windowed({ device: 'none' })).toThrow(/graphics.window: a window needs a display device/);
    expect(() => windowed({ device: 'virtio-vga-gl', renderNode: '/dev/dri/renderD128' })).toThrow(
      /graphics.window: a window renders on its screen's GPU: drop renderNode/,
    );
  });

  it('shares guest RAM through memfd for blob, venus and native contexts', async () => {
    const venus = parseSpec({
      ...identity,
      name: 'vk',
      graphics: {
        device: 'virtio-gpu-gl-pci',
        renderNode: '/dev/dri/renderD128',
        features: ['blob', 'venus'],
      },
    });
    await expect(buildQemuArgs(plan(venus)).join('\n') + '\n').toMatchFileSnapshot(
      '../golden/cmdline-venus.txt',
    );
    expect(() =>
      parseSpec({ ...identity, name: 'x', graphics: { device: 'virtio-vga-gl', features: ['venus'] } }),
    ).toThrow(/graphics.features: features need device virtio-gpu-gl-pci/);
  });

  it('hands host GPUs over: a whole card behind its root port, a VF, a GVT-g slice with its screen', async () => {
    const hostdev = parseSpec({
      ...identity,
      name: 'hostdev',
      graphics: {
        device: 'none',
        hostDevices: [
          { kind: 'vfio', address: '0000:03:00.0', companions: ['0000:03:00.1'] },
          { kind: 'vf', address: '0000:04:00.1' },
          {
            kind: 'mdev',
            address: '0000:00:02.0',
            mdevType: 'i915-GVTg_V5_4',
            uuid: '4b20d080-1b54-4048-85b3-a6a62d165c01',
            display: true,
          },
        ],
      },
    });
    await expect(buildQemuArgs(plan(hostdev)).join('\n') + '\n').toMatchFileSnapshot(
      '../golden/cmdline-hostdev.txt',
    );
    // An NVIDIA vGPU keeps the emulated console; its own screen is reached by remote desktop.
    const vgpu = buildQemuArgs(
      plan(
        parseSpec({
          ...identity,
          name: 'vgpu',
          graphics: {
            device: 'virtio-vga',
            hostDevices: [
              { kind: 'mdev', address: '0000:3b:00.0', mdevType: 'nvidia-231', uuid: identity.uuid },
            ],
          },
        }),
      ),
    ).join(' ');
    expect(vgpu).toContain(
      `-device virtio-vga,id=gpu0 -display none -vnc unix:/run/phyllome/vms/demo/vnc.sock -device vfio-pci-nohotplug,id=hostdev0,sysfsdev=/sys/bus/mdev/devices/${identity.uuid} `,
    );
    const bad =
      (hostDevices: unknown, machine = 'q35') =>
      () =>
        parseSpec({ ...identity, name: 'x', machine, graphics: { device: 'none', hostDevices } });
    expect(bad([{ kind: 'vf', address: '0000:03:00.0,x-foo=1' }])).toThrow(
      /graphics.hostDevices\[0\].address: must be a PCI address like 0000:03:00.0/,
    );
    expect(bad([{ kind: 'mdev', address: '0000:00:02.0', mdevType: 'a,b' }])).toThrow(
      /mdevType: must be a type/,
    );
    expect(bad([{ kind: 'vf', address: '0000:03:00.1' }], 'pc')).toThrow(/host devices need machine q35/);
    expect(bad([])).toThrow(/graphics.hostDevices/);
    expect(
      bad([
        { kind: 'vfio', address: '0000:03:00.0', companions: ['0000:03:00.1'] },
        { kind: 'vf', address: '0000:03:00.1' },
      ]),
    ).toThrow('graphics.hostDevices: 0000:03:00.1 is handed to the guest twice');
    const slices = { kind: 'mdev', address: '0000:18:00.0', mdevType: 'nvidia-231' };
    expect(bad([slices, slices])).not.toThrow();
  });

  it('gives a Windows 11 profile Secure Boot UEFI, a TPM, SATA, an install CD and Hyper-V', async () => {
    const win11 = parseSpec({
      ...identity,
      name: 'win11',
      memory: '4G',
      cpus: 2,
      os: 'win11',
      firmware: MS_SECURE_BOOT,
      tpm: true,
      hyperv: true,
      clock: 'localtime',
      disks: [
        {
          id: 'disk0',
          path: '/var/lib/phyllome/vms/win11/disk0.qcow2',
          format: 'qcow2',
          bus: 'sata',
          encrypted: true,
        },
      ],
      cdroms: [
        { path: '/srv/iso/Win11_EnglishInternational_x64.iso', role: 'install' },
        { path: '/usr/share/virtio-win/virtio-win.iso', role: 'drivers' },
      ],
      nics: [{ model: 'e1000e', mac: '52:54:00:12:34:56' }],
      input: 'usb-tablet',
      sound: 'ich9-intel-hda',
      graphics: { device: 'vga' },
      rng: true,
      balloon: true,
    });
    await expect(buildQemuArgs(plan(win11)).join('\n') + '\n').toMatchFileSnapshot(
      '../golden/cmdline-win11.txt',
    );
  });

  it('hands the disk key to QEMU as a secret object read from a file, never as data', () => {
    const enc = parseSpec({
      ...identity,
      name: 'enc',
      disks: [
        { id: 'disk3', path: '/d.qcow2', format: 'qcow2', encrypted: true },
        { path: '/e.img', format: 'raw' },
      ],
    });
    const args = buildQemuArgs(plan(enc));
    expect(args).toContain('secret,id=vmkey,file=/run/phyllome/vms/demo/key,format=raw');
    expect(args).toContain(
      'driver=qcow2,file=disk3-file,node-name=disk3,read-only=off,encrypt.format=luks,encrypt.key-secret=vmkey',
    );
    // Disks without an id keep their place's name.
    expect(args).toContain('driver=raw,file=disk1-file,node-name=disk1,read-only=off');
    expect(args.join(' ')).not.toMatch(/data=/);
    const uefi = parseSpec({
      ...identity,
      name: 'u',
      firmware: {
        type: 'uefi',
        code: '/c',
        varsTemplate: '/v',
        secureBoot: false,
        enrolledKeys: false,
        smm: false,
        nvramEncrypted: true,
      },
    });
    const withVars = buildQemuArgs(plan(uefi));
    expect(withVars).toContain(
      'driver=qcow2,file=fw-vars-file,node-name=fw-vars,read-only=off,encrypt.format=luks,encrypt.key-secret=vmkey',
    );
    expect(withVars).toContain('secret,id=vmkey,file=/run/phyllome/vms/demo/key,format=raw');
    expect(() =>
      parseSpec({ ...identity, name: 'x', disks: [{ path: '/r.img', format: 'raw', encrypted: true }] }),
    ).toThrow(/disks\[0\]\.encrypted: only qcow2 disks can be encrypted/);
  });

  it('puts IDE devices on the pc machine two to a bus, and refuses what a machine lacks', () => {
    const old = parseSpec({
      ...identity,
      name: 'xp',
      machine: 'pc',
      disks: [
        { path: '/d0', format: 'raw', bus: 'ide' },
        { path: '/d1', format: 'raw', bus: 'ide' },
      ],
      cdroms: [{}],
    });
    const args = buildQemuArgs(plan(old));
    expect(args).toContain('ide-hd,bus=ide.0,unit=0,drive=disk0,id=disk0-dev,bootindex=2');
    expect(args).toContain('ide-hd,bus=ide.0,unit=1,drive=disk1,id=disk1-dev,bootindex=3');
    // An empty tray: no medium, the drive is still there to insert into.
    expect(args).toContain('ide-cd,bus=ide.1,unit=0,id=cd0,bootindex=1');
    expect(() =>
      parseSpec({ ...identity, name: 'x', disks: [{ path: '/d', format: 'raw', bus: 'ide' }] }),
    ).toThrow(/disks\[0\]\.bus: machine q35 has no IDE controller: use bus sata or virtio/);
    expect(() =>
      parseSpec({
        ...identity,
        name: 'x',
        machine: 'pc',
        cdroms: [{}, {}, {}, {}],
        disks: [{ path: '/d', format: 'raw', bus: 'ide' }],
      }),
    ).toThrow(/machine pc has 4 IDE ports/);
    expect(() =>
      parseSpec({
        ...identity,
        name: 'x',
        machine: 'pc',
        firmware: {
          type: 'uefi',
          code: '/c',
          varsTemplate: '/v',
          secureBoot: true,
          enrolledKeys: true,
          smm: true,
        },
      }),
    ).toThrow(/Secure Boot firmware needs SMM/);
  });

  it('uses host CPU under KVM and leaves out the sandbox where QEMU lacks it', () => {
    const args = buildQemuArgs(plan(demo, { accel: 'kvm', caps: { sandbox: false } }));
    expect(args).toContain('q35,accel=kvm');
    expect(args[args.indexOf('-cpu') + 1]).toBe('host');
    expect(args[args.indexOf('-smp') + 1]).toBe('2,sockets=1,cores=2,threads=1');
    expect(args).not.toContain('-sandbox');
  });

  it("opens an encrypted linked clone's bases as read-only nodes with the key, deepest first", () => {
    const clone = parseSpec({
      ...identity,
      name: 'clone',
      disks: [
        { id: 'disk0', path: '/vms/clone/disk0.qcow2', format: 'qcow2', encrypted: true },
        { id: 'disk1', path: '/vms/clone/disk1.qcow2', format: 'qcow2' },
      ],
    });
    const args = buildQemuArgs(
      plan(clone, {
        backings: { disk0: ['/bases/b,2.qcow2', '/bases/b1.qcow2'], disk1: ['/bases/p.qcow2'] },
      }),
    );
    const blockdevs = args.filter((_, i) => args[i - 1] === '-blockdev');
    expect(blockdevs.slice(0, 5)).toEqual([
      'driver=file,filename=/bases/b1.qcow2,node-name=disk0-base2-file,read-only=on',
      'driver=qcow2,file=disk0-base2-file,node-name=disk0-base2,read-only=on,encrypt.format=luks,encrypt.key-secret=vmkey',
      'driver=file,filename=/bases/b,,2.qcow2,node-name=disk0-base1-file,read-only=on',
      'driver=qcow2,file=disk0-base1-file,node-name=disk0-base1,read-only=on,encrypt.format=luks,encrypt.key-secret=vmkey,backing=disk0-base2',
      'driver=file,filename=/vms/clone/disk0.qcow2,node-name=disk0-file,read-only=off',
    ]);
    expect(blockdevs[5]).toBe(
      'driver=qcow2,file=disk0-file,node-name=disk0,read-only=off,encrypt.format=luks,encrypt.key-secret=vmkey,backing=disk0-base1',
    );
    // An unencrypted overlay's base needs no key: QEMU opens it from the header, as before.
    expect(blockdevs.slice(6)).toEqual([
      'driver=file,filename=/vms/clone/disk1.qcow2,node-name=disk1-file,read-only=off',
      'driver=qcow2,file=disk1-file,node-name=disk1,read-only=off',
    ]);
  });

  it('gives Windows the Hyper-V enlightenments under KVM only (TCG refuses some)', () => {
    const win = parseSpec({ ...identity, name: 'w', hyperv: true });
    const kvm = buildQemuArgs(plan(win, { accel: 'kvm' }));
    expect(kvm[kvm.indexOf('-cpu') + 1]).toMatch(
      /^host,hv_relaxed=on,hv_vapic=on,hv_spinlocks=0x1fff,hv_vpindex=on,/,
    );
    const tcg = buildQemuArgs(plan(win));
    expect(tcg[tcg.indexOf('-cpu') + 1]).toBe('max');
  });

  it('waits for a live migration stream instead of booting, when incoming', async () => {
    expect(buildQemuArgs(plan(demo))).not.toContain('-incoming');
    await expect(buildQemuArgs(plan(demo, { incoming: true })).join('\n') + '\n').toMatchFileSnapshot(
      '../golden/cmdline-incoming.txt',
    );
  });

  it('starts paused, without defaults or user config', () => {
    const args = buildQemuArgs(plan(demo));
    for (const flag of ['-S', '-nodefaults', '-no-user-config']) expect(args).toContain(flag);
  });
});

// Options QEMU parses as key=value lists (QemuOpts or keyval): every one must read back exactly.
const KEYED = new Set([
  '-name',
  '-machine',
  '-sandbox',
  '-chardev',
  '-mon',
  '-blockdev',
  '-device',
  '-cpu',
  '-smp',
  '-rtc',
  '-netdev',
  '-tpmdev',
  '-global',
]);

/** The option flags of an argv, in order: what a user value must never add to or change. */
function flagsOf(args: string[]): string[] {
  const flags: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    flags.push(arg);
    if (!['-S', '-nodefaults', '-no-user-config'].includes(arg)) i++;
  }
  return flags;
}

const pathChars = fc.string({ unit: 'binary', maxLength: 40 });
const userPath = pathChars.map((s) => '/' + s);

describe('no spec can inject a QEMU option or argument (property)', () => {
  it('holds for any name, paths, append line and disk set that the spec accepts', () => {
    let built = 0;
    fc.assert(
      fc.property(
        fc.oneof(
          fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,62}$/),
          fc.string({ unit: 'binary', maxLength: 20 }),
        ),
        userPath,
        fc.option(userPath, { nil: undefined }),
        fc.option(fc.string({ unit: 'binary', maxLength: 60 }), { nil: undefined }),
        fc.array(
          fc.record({ path: userPath, format: fc.constantFrom('raw', 'qcow2'), readOnly: fc.boolean() }),
          {
            maxLength: 3,
          },
        ),
        fc.array(fc.option(userPath, { nil: undefined }), { maxLength: 2 }),
        fc.option(fc.tuple(userPath, userPath), { nil: undefined }),
        (name, kernel, initrd, append, disks, cdroms, uefi) => {
          let spec: VmSpec;
          const firmware = (code: string, varsTemplate: string) =>
            ({ type: 'uefi', code, varsTemplate, secureBoot: true, enrolledKeys: true, smm: true }) as const;
          try {
            spec = parseSpec({
              ...identity,
              name,
              boot: { kernel, ...(initrd ? { initrd } : {}), ...(append !== undefined ? { append } : {}) },
              disks,
              cdroms: cdroms.map((path) => (path ? { path } : {})),
              ...(uefi ? { firmware: firmware(...uefi) } : {}),
            });
          } catch (e) {
            if (e instanceof SpecError) return; // refused input never reaches QEMU
            throw e;
          }
          const args = buildQemuArgs(plan(spec));
          const expectedFlags = flagsOf(
            buildQemuArgs(
              plan(
                parseSpec({
                  ...identity,
                  name: 'x',
                  boot: {
                    kernel: '/k',
                    ...(spec.boot?.initrd ? { initrd: '/i' } : {}),
                    ...(spec.boot?.append ? { append: 'a' } : {}),
                  },
                  disks: spec.disks.map((d) => ({ ...d, path: '/d' })),
                  cdroms: spec.cdroms.map((c) => (c.path ? { path: '/c' } : {})),
                  ...(uefi ? { firmware: firmware('/f', '/v') } : {}),
                }),
              ),
            ),
          );
          // Same options in the same order as a harmless spec of the same shape.
          expect(flagsOf(args)).toEqual(expectedFlags);
          // Verbatim arguments carry the user's value exactly.
          expect(args[args.indexOf('-kernel') + 1]).toBe(spec.boot!.kernel);
          if (spec.boot?.append) expect(args[args.indexOf('-append') + 1]).toBe(spec.boot.append);
          // Keyed options read back with exactly our keys, and user values intact.
          const filenames: string[] = [];
          args.forEach((arg, i) => {
            if (!KEYED.has(args[i - 1] ?? '')) return;
            const { pairs } = parseOpts(arg);
            const keys = pairs.map(([k]) => k);
            expect(keys.every((k) => /^[a-z][a-z0-9_.-]*$/.test(k))).toBe(true);
            expect(new Set(keys).size).toBe(keys.length);
            for (const [k, v] of pairs) if (k === 'filename') filenames.push(v);
          });
          expect(filenames).toEqual([
            ...(spec.firmware.type === 'uefi' ? [spec.firmware.code, state.nvram] : []),
            ...spec.cdroms.flatMap((c) => (c.path ? [c.path] : [])),
            ...spec.disks.map((d) => d.path),
          ]);
          built++;
        },
      ),
      { numRuns: 2000 },
    );
    // Most generated specs must be valid, or the property would prove little.
    expect(built).toBeGreaterThan(500);
  });
});
