import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readFirmwareDescriptors } from '../../src/host/firmware.js';
import { domainXmlToSpec, LibvirtXmlError, specToDomainXml } from '../../src/interop/libvirt.js';
import { parseSpec } from '../../src/spec/schema.js';
import { MS_SECURE_BOOT } from '../fixtures/firmware-choice.js';

const FIXTURES = path.join(import.meta.dirname, '../fixtures/libvirt');
const fixture = (name: string) => readFileSync(path.join(FIXTURES, name), 'utf8');
const firmware = await readFirmwareDescriptors([path.join(import.meta.dirname, '../fixtures/firmware')]);
const OS_IDS: Record<string, string> = {
  'http://fedoraproject.org/fedora/39': 'fedora39',
  'http://microsoft.com/win/11': 'win11',
};
const importOpts = { firmware, osShortId: (url: string) => OS_IDS[url], newMac: () => '52:54:00:00:00:01' };
const importXml = (xml: string, extra = {}) => domainXmlToSpec(xml, { ...importOpts, ...extra });

/** A minimal domain around the given `<devices>` content and `<os>` extras. */
const domain = (devices: string, os = '', name = 'small') =>
  `<domain type='kvm'><name>${name}</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>` +
  `<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>${os}</os><devices>${devices}</devices></domain>`;

const identity = {
  schemaVersion: 1,
  uuid: '0b1f5a52-6c1e-4bd0-9f4e-2a7d8c3b9e01',
  createdAt: '2026-01-01T00:00:00.000Z',
};

describe('libvirt import', () => {
  it.each(['virt-manager-fedora', 'virt-manager-win11', 'gnome-boxes'])(
    'maps %s and says what it left out',
    async (name) => {
      const imported = importXml(fixture(`${name}.xml`));
      await expect(JSON.stringify(imported, null, 2) + '\n').toMatchFileSnapshot(
        `../golden/libvirt-import-${name}.json`,
      );
    },
  );

  it('picks UEFI firmware from the descriptors when the domain names none', () => {
    const { spec } = importXml(domain('', '', 'efi').replace('<os>', "<os firmware='efi'>"));
    expect(spec.firmware).toMatchObject({
      type: 'uefi',
      code: '/usr/share/OVMF/OVMF_CODE_4M.fd',
      secureBoot: false,
    });
    const secure = importXml(
      domain('', "<firmware><feature enabled='yes' name='secure-boot'/></firmware>").replace(
        '<os>',
        "<os firmware='efi'>",
      ),
    );
    expect(secure.spec.firmware).toEqual({ ...MS_SECURE_BOOT, nvramEncrypted: false });
  });

  it('gives names Phyllome refuses a close one, or the one asked for', () => {
    const odd = importXml(domain('', '', 'Ubuntu_22.04'));
    expect(odd.spec.name).toBe('ubuntu-22-04');
    expect(odd.unmapped[0]).toMatch(/"Ubuntu_22.04" became "ubuntu-22-04"/);
    expect(importXml(domain('', '', 'Ubuntu_22.04'), { name: 'jammy' }).spec.name).toBe('jammy');
  });

  it('keeps direct kernel boot, bridges, macvtaps, forwards, and moves disks to the machine bus', () => {
    const xml = domain(
      `<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/srv/a.img'/><target dev='hda' bus='ide'/><readonly/></disk>
       <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vg/b'/><target dev='vdb' bus='virtio'/></disk>
       <interface type='bridge'><mac address='52:54:00:aa:bb:cc'/><source bridge='br0'/><model type='e1000'/></interface>
       <interface type='direct'><mac address='00:0c:29:aa:bb:cc'/><source dev='eth0' mode='vepa'/></interface>
       <interface type='user'><mac address='52:54:00:aa:bb:cd'/><model type='virtio'/><backend type='passt'/>
         <portForward proto='tcp' address='127.0.0.1'><range start='2222' to='22'/></portForward>
         <portForward proto='udp'><range start='5353'/></portForward></interface>`,
      '<kernel>/boot/vmlinuz</kernel><initrd>/boot/initrd.img</initrd><cmdline>console=ttyS0 root=/dev/vda</cmdline>',
    );
    const { spec, unmapped } = importXml(xml);
    expect(spec.boot).toEqual({
      kernel: '/boot/vmlinuz',
      initrd: '/boot/initrd.img',
      append: 'console=ttyS0 root=/dev/vda',
    });
    expect(spec.disks).toEqual([
      { path: '/srv/a.img', format: 'raw', bus: 'sata', readOnly: true, encrypted: false },
      { path: '/dev/vg/b', format: 'raw', bus: 'virtio', readOnly: false, encrypted: false },
    ]);
    expect(spec.nics).toEqual([
      { model: 'e1000', mac: '52:54:00:aa:bb:cc', net: { type: 'bridge', bridge: 'br0' } },
      { model: 'rtl8139', mac: '52:54:00:00:00:01', net: { type: 'macvtap', device: 'eth0' } },
      {
        model: 'virtio-net-pci',
        mac: '52:54:00:aa:bb:cd',
        net: {
          type: 'user',
          hostLoopback: false,
          forwards: [
            { proto: 'tcp', hostPort: 2222, guestPort: 22, public: false },
            { proto: 'udp', hostPort: 5353, guestPort: 5353, public: true },
          ],
        },
      },
    ]);
    expect(unmapped).toEqual([
      'Disk hda on bus ide moved to sata: machine q35 has SATA and virtio disks.',
      "NIC 1's MAC 00:0c:29:aa:bb:cc became 52:54:00:00:00:01: Phyllome MACs are in QEMU's 52:54:00 range.",
      "NIC 1's macvtap mode vepa became bridge: Phyllome's macvtaps are in bridge mode.",
    ]);
  });

  it('reports disks it cannot attach, and unknown elements, without failing', () => {
    const { spec, unmapped } = importXml(
      domain(
        `<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/srv/secret.qcow2'/><target dev='vda' bus='virtio'/>
           <encryption format='luks'><secret type='passphrase' uuid='11111111-2222-3333-4444-555555555555'/></encryption></disk>
         <disk type='volume' device='disk'><source pool='default' volume='data.qcow2'/><target dev='vdb' bus='virtio'/></disk>
         <disk type='file' device='disk'><driver name='qemu' type='vmdk'/><source file='/srv/old.vmdk'/><target dev='vdc' bus='virtio'/></disk>
         <disk type='file' device='floppy'><source file='/srv/a.img'/><target dev='fda' bus='fdc'/></disk>
         <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0' bus='1' slot='0' function='0'/></source></hostdev>
         <frobnicator flavour='new'><gizmo/></frobnicator>`,
      ).replace('<devices>', '<future-thing/><devices>'),
    );
    expect(spec.disks).toEqual([]);
    expect(unmapped).toEqual([
      '<future-thing> is not mapped: Phyllome has no equivalent.',
      '<hostdev> is not mapped: host devices are tied to their host: check this one with "phyllome host check", then hand a GPU over with "phyllome create --gpu".',
      '<frobnicator> is not mapped: Phyllome has no equivalent.',
      'Disk vda (/srv/secret.qcow2) is not mapped: it is encrypted with a libvirt secret, and Phyllome can only attach encrypted disks it made with its own key.',
      'Disk vdb is not mapped: it is storage pool default, volume data.qcow2 (virsh vol-path gives its file: add it with phyllome disk add --path); Phyllome attaches files and block devices.',
      'Disk vdc (/srv/old.vmdk) is not mapped: it is vmdk; convert it with qemu-img convert -O qcow2 and add it.',
      'The floppy drive fda is not mapped: Phyllome VMs have disks and CD-ROMs.',
    ]);
  });

  it('refuses what is not a domain it could run, saying why', () => {
    const refusal = (xml: string) => {
      try {
        importXml(xml);
      } catch (e) {
        expect(e).toBeInstanceOf(LibvirtXmlError);
        return (e as Error).message;
      }
      throw new Error('expected a refusal');
    };
    expect(refusal('<domain><name>x</name><devices>')).toMatch(/^not well-formed XML \(line 1, column \d+\)/);
    expect(refusal(' \n')).toBe('the XML is empty: give a domain as "virsh dumpxml NAME" prints it');
    expect(refusal('<network><name>default</name></network>')).toMatch(
      /expected a libvirt domain .*found <network>/,
    );
    expect(refusal("<domain type='kvm'><memory>1</memory></domain>")).toBe('the domain has no <name>');
    expect(refusal(domain('').replace("arch='x86_64'", "arch='aarch64'"))).toBe(
      'the domain is for aarch64: Phyllome runs x86_64 guests',
    );
    expect(refusal(domain('').replace("unit='MiB'>512", "unit='parsec'>512"))).toMatch(
      /is not a size libvirt writes/,
    );
    expect(refusal(domain('', '<kernel>vmlinuz</kernel>'))).toMatch(
      /^the domain maps to a VM Phyllome refuses: boot.kernel: must be an absolute path/,
    );
  });
});

describe('libvirt export', () => {
  const vm = parseSpec({
    ...identity,
    name: 'web',
    memory: '1G',
    cpus: 2,
    boot: { kernel: '/srv/guest/vmlinux', initrd: '/srv/guest/initrd.img', append: 'console=ttyS0 quiet' },
    disks: [{ id: 'disk0', path: '/var/lib/phyllome/vms/web/disk0.qcow2', format: 'qcow2' }],
    nics: [
      {
        model: 'virtio-net-pci',
        mac: '52:54:00:12:34:56',
        net: { type: 'user', forwards: [{ hostPort: 8080, guestPort: 80 }] },
      },
      { model: 'e1000e', mac: '52:54:00:12:34:57', net: { type: 'bridge', bridge: 'br0' } },
    ],
    rng: true,
  });

  it('writes a direct-boot domain with its serial console in a file', async () => {
    const { xml, notes } = specToDomainXml(vm, { accel: 'tcg', serialLog: '/tmp/web-serial.log' });
    await expect(xml).toMatchFileSnapshot('../golden/libvirt-export-web.xml');
    expect(notes).toEqual([
      'The domain uses the VM\'s own disk files: never run it while "web" runs in Phyllome.',
    ]);
  });

  it('writes a Windows VM: Secure Boot, TPM, Hyper-V under KVM, SATA and a CD-ROM', async () => {
    const win = parseSpec({
      ...identity,
      name: 'win',
      memory: '4G',
      cpus: 2,
      os: 'win11',
      disks: [{ id: 'disk0', path: '/var/lib/phyllome/vms/win/disk0.qcow2', format: 'qcow2', bus: 'sata' }],
      cdroms: [{ path: '/srv/iso/Win11.iso', role: 'install' }, { role: 'drivers' }],
      firmware: MS_SECURE_BOOT,
      tpm: true,
      hyperv: true,
      clock: 'localtime',
      nics: [{ model: 'e1000e', mac: '52:54:00:12:34:58', net: { type: 'network', network: 'lab' } }],
      graphics: { device: 'virtio-vga' },
      input: 'usb-tablet',
      sound: 'ich9-intel-hda',
      balloon: true,
    });
    const { xml, notes } = specToDomainXml(win, { accel: 'kvm' });
    await expect(xml).toMatchFileSnapshot('../golden/libvirt-export-win.xml');
    expect(notes).toHaveLength(4);
    // What the import of its own export gives back: the same VM, but for what libvirt cannot hold.
    const back = importXml(xml);
    const { schemaVersion: _v, uuid: _u, createdAt: _c, ...rest } = win;
    expect(back.spec).toEqual({
      ...rest,
      disks: rest.disks.map(({ id: _id, ...d }) => d),
      firmware: { ...MS_SECURE_BOOT, nvramEncrypted: false },
      cdroms: [{ path: '/srv/iso/Win11.iso', role: 'media' }, { role: 'media' }],
      nics: [{ ...win.nics[0], net: { type: 'user', forwards: [], hostLoopback: false } }],
    });
  });

  it('round-trips the direct-boot VM through its own XML', () => {
    const { xml } = specToDomainXml(vm, { accel: 'tcg' });
    const { spec } = importXml(xml);
    const { schemaVersion: _v, uuid: _u, createdAt: _c, ...rest } = vm;
    expect(spec).toEqual({ ...rest, disks: rest.disks.map(({ id: _id, ...d }) => d) });
  });

  it('writes virgl 3D on an i440fx machine with IDE disks, saying what libvirt cannot ask for', async () => {
    const gl = parseSpec({
      ...identity,
      name: 'gl',
      machine: 'pc',
      disks: [
        { id: 'disk0', path: '/srv/gl/root.qcow2', format: 'qcow2', bus: 'ide' },
        { id: 'disk1', path: '/srv/gl/data.img', format: 'raw', readOnly: true },
        { id: 'disk2', path: '/dev/vg/scratch', format: 'raw', bus: 'ide' },
      ],
      cdroms: [{ path: '/srv/iso/tools.iso' }],
      graphics: {
        device: 'virtio-gpu-gl-pci',
        renderNode: '/dev/dri/renderD128',
        features: ['blob', 'venus'],
      },
      input: 'virtio-tablet',
      sound: 'ac97',
      nics: [
        { model: 'rtl8139', mac: '52:54:00:12:34:59', net: { type: 'macvtap', device: 'eth0' } },
        {
          model: 'virtio-net-pci',
          mac: '52:54:00:12:34:5a',
          net: {
            type: 'user',
            backend: 'slirp',
            hostLoopback: true,
            forwards: [{ hostPort: 2222, guestPort: 22 }],
          },
        },
      ],
    });
    const { xml, notes } = specToDomainXml(gl, { accel: 'kvm' });
    await expect(xml).toMatchFileSnapshot('../golden/libvirt-export-gl.xml');
    expect(notes).toEqual([
      "NIC 1: the guest's way to the host's loopback is not opened (libvirt has no such setting).",
      'NIC 1: its port forwards are left out: libvirt forwards ports only with passt.',
      "The display becomes libvirt's virtio-vga with virgl; blob, venus (virtio-gpu-gl-pci features) are left out: libvirt 9 cannot ask for them.",
      'The domain uses the VM\'s own disk files: never run it while "gl" runs in Phyllome.',
    ]);
  });

  it("writes a window on the host's screen as libvirt's SDL display with GL, and reads it back", async () => {
    const shown = parseSpec({ ...vm, name: 'shown', graphics: { device: 'virtio-vga-gl', window: true } });
    const { xml } = specToDomainXml(shown, { accel: 'kvm' });
    await expect(xml).toMatchFileSnapshot('../golden/libvirt-export-window.xml');
    expect(importXml(xml).spec.graphics).toEqual({ device: 'virtio-vga-gl', window: true });
    const flat = specToDomainXml(parseSpec({ ...shown, graphics: { device: 'vga', window: true } }), {
      accel: 'kvm',
    });
    expect(flat.xml).toMatch(/<graphics type="sdl"\/>|<graphics type="sdl"><\/graphics>/);
    expect(importXml(flat.xml).spec.graphics).toEqual({ device: 'vga', window: true });
  });

  it('writes host GPU hardware as hostdevs libvirt binds itself; a mediated device is left to mdevctl', async () => {
    const gpu = parseSpec({
      ...identity,
      name: 'gpu',
      graphics: {
        device: 'none',
        hostDevices: [
          { kind: 'vfio', address: '0000:03:00.0', companions: ['0000:03:00.1'] },
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
    const { xml, notes } = specToDomainXml(gpu, { accel: 'kvm' });
    await expect(xml).toMatchFileSnapshot('../golden/libvirt-export-hostdev.xml');
    expect(notes).toContain(
      'Mediated device 4b20d080-1b54-4048-85b3-a6a62d165c01 (i915-GVTg_V5_4 on 0000:00:02.0): libvirt does not make it; make it on the libvirt host first: mdevctl start -u 4b20d080-1b54-4048-85b3-a6a62d165c01 -p 0000:00:02.0 --type i915-GVTg_V5_4',
    );
    expect(importXml(xml).unmapped).toContain(
      '<hostdev> (3 of them) is not mapped: host devices are tied to their host: check this one with "phyllome host check", then hand a GPU over with "phyllome create --gpu".',
    );
  });

  it('refuses a VM with encrypted disks: libvirt would need their key', () => {
    const encrypted = parseSpec({
      ...identity,
      name: 'vault',
      disks: [{ id: 'disk0', path: '/v/disk0.qcow2', format: 'qcow2', encrypted: true }],
    });
    expect(() => specToDomainXml(encrypted, { accel: 'kvm' })).toThrow(
      /"vault" has LUKS-encrypted disks \(disk0\): libvirt would need their key as a libvirt secret/,
    );
  });

  it('escapes what users typed', () => {
    const odd = parseSpec({
      ...identity,
      name: 'odd',
      boot: { kernel: "/srv/a&b/<k>'", append: 'x="1" & y<2' },
    });
    const { xml } = specToDomainXml(odd, { accel: 'tcg' });
    expect(xml).toContain('<kernel>/srv/a&amp;b/&lt;k&gt;&apos;</kernel>');
    expect(importXml(xml).spec.boot).toEqual(odd.boot);
  });
});
