import { parse, parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import {
  KubevirtExportError,
  specToKubevirt,
  toYaml,
  type KubevirtOptions,
} from '../../src/interop/kubevirt.js';
import { parseSpec, type VmSpec } from '../../src/spec/schema.js';
import { MS_SECURE_BOOT } from '../fixtures/firmware-choice.js';
import { problems } from '../fixtures/kubevirt/validate.js';

const identity = {
  schemaVersion: 1,
  uuid: '6f1c0c42-8d43-4a7e-9b1e-2d6c5f0a9b11',
  createdAt: '2026-11-22T10:00:00.000Z',
};

const GiB = 2 ** 30;

const linux = parseSpec({
  ...identity,
  name: 'web',
  memory: '1G',
  cpus: 2,
  os: 'debian12',
  disks: [{ id: 'disk0', path: '/var/lib/images/web.qcow2', format: 'qcow2' }],
  nics: [
    {
      model: 'virtio-net-pci',
      mac: '52:54:00:0a:0b:0c',
      net: { type: 'user', forwards: [{ hostPort: 8080, guestPort: 80 }] },
    },
  ],
  rng: true,
});

const win11 = parseSpec({
  ...identity,
  name: 'win11',
  memory: '4G',
  cpus: 4,
  os: 'win11',
  firmware: MS_SECURE_BOOT,
  tpm: true,
  hyperv: true,
  clock: 'localtime',
  disks: [
    { id: 'disk0', path: '/var/lib/phyllome/vms/win11/disk0.qcow2', format: 'qcow2', bus: 'sata' },
    { id: 'disk1', path: '/srv/data/win11 games.img', format: 'raw', bus: 'virtio' },
  ],
  cdroms: [{ path: '/srv/iso/Win11_EnglishInternational_x64.iso', role: 'install' }],
  nics: [{ model: 'e1000e', mac: '52:54:00:12:34:56' }],
  input: 'usb-tablet',
  sound: 'ich9-intel-hda',
  graphics: { device: 'vga' },
  balloon: true,
});

const lan = parseSpec({
  ...identity,
  name: 'lan',
  memory: '512M',
  boot: { kernel: '/boot/vmlinuz', initrd: '/boot/initrd.img', append: 'console=ttyS0 root=/dev/vda' },
  disks: [{ id: 'disk0', path: '/srv/lan.img', format: 'raw', readOnly: true }],
  cdroms: [{ path: '/var/lib/phyllome/vms/lan/cloud-init.iso', role: 'cloud-init' }, { role: 'media' }],
  nics: [
    { model: 'virtio-net-pci', mac: '52:54:00:00:00:01', net: { type: 'bridge', bridge: 'br0' } },
    { model: 'virtio-net-pci', mac: '52:54:00:00:00:02', net: { type: 'network', network: 'lab' } },
    { model: 'rtl8139', mac: '52:54:00:00:00:03', net: { type: 'macvtap', device: 'enp3s0' } },
  ],
});

const images = (spec: VmSpec, bytes = 20 * GiB): KubevirtOptions['images'] =>
  Object.fromEntries(
    [...spec.disks.map((d) => d.path), ...spec.cdroms.flatMap((c) => (c.path ? [c.path] : []))].map((p) => [
      p,
      { bytes },
    ]),
  );

/** The notes as YAML comments above the documents: one golden file to review per case. */
const golden = ({ documents, notes }: ReturnType<typeof specToKubevirt>) =>
  notes.map((n) => `# ${n.replaceAll('\n', '\n# ')}`).join('\n') + '\n' + toYaml(documents);

const CASES: [string, VmSpec, Partial<KubevirtOptions>][] = [
  ['linux', linux, {}],
  ['win11', win11, { namespace: 'desktops', timezone: 'Europe/Paris', runStrategy: 'Always' }],
  ['bridge', lan, { kernelImage: 'registry.example/lan-kernel:6.1' }],
];

describe('KubeVirt export', () => {
  it.each(CASES)('matches the golden manifest (%s)', async (name, spec, opts) => {
    const out = specToKubevirt(spec, { images: images(spec), ...opts });
    await expect(golden(out)).toMatchFileSnapshot(`../golden/kubevirt-${name}.yaml`);
  });

  it.each(CASES)('writes documents valid against the published schemas (%s)', (_, spec, opts) => {
    const { documents } = specToKubevirt(spec, { images: images(spec), ...opts });
    expect(documents.map((d) => d.kind)).toEqual([
      'VirtualMachine',
      ...documents.slice(1).map(() => 'DataVolume'),
    ]);
    for (const doc of documents) expect(problems(doc)).toEqual([]);
  });

  it('catches what the published schema alone would let through', () => {
    const { documents } = specToKubevirt(linux, { images: images(linux) });
    const vm = structuredClone(documents[0]!) as { spec: { template: { spec: Record<string, unknown> } } };
    vm.spec.template.spec.domian = {};
    expect(problems(vm)).toEqual(['unknown key .spec.template.spec.domian']);
    (vm.spec.template.spec as { domain: { cpu: unknown } }).domain.cpu = { cores: 'two' };
    expect(problems(vm)).toContain('/spec/template/spec/domain/cpu/cores must be integer');
    // And what only KubeVirt's admission webhooks refuse.
    const sata = structuredClone(documents[0]!) as {
      spec: { template: { spec: { domain: { devices: { disks: { disk: object }[] } } } } };
    };
    sata.spec.template.spec.domain.devices.disks[0]!.disk = { bus: 'sata', readonly: true };
    expect(problems(sata)).toEqual(['disk disk0: read-only SATA']);
  });

  it('keeps within what KubeVirt admits: read-only SATA disks, names ending in "-"', () => {
    const spec = parseSpec({
      ...identity,
      name: 'old-',
      disks: [{ id: 'disk0', path: '/ro.img', format: 'raw', bus: 'sata', readOnly: true }],
    });
    const { documents, notes } = specToKubevirt(spec, { images: images(spec) });
    for (const doc of documents) expect(problems(doc)).toEqual([]);
    expect(documents.map((d) => (d.metadata as { name: string }).name)).toEqual(['old', 'old-disk0']);
    expect(notes).toContain(
      '"old-" is called "old" in the cluster: Kubernetes names end with a letter or digit.',
    );
    expect(notes).toContain(
      "disk0 is read-only here, but KubeVirt's SATA disks cannot be: it is writable there.",
    );
  });

  it('round-trips through YAML as several documents', () => {
    const { documents } = specToKubevirt(win11, { images: images(win11) });
    const text = toYaml(documents);
    expect(parseAllDocuments(text).map((d) => d.toJS() as unknown)).toEqual(documents);
    expect(parse(text.split('---\n')[0]!)).toEqual(documents[0]);
    // Shared objects are written out each time: anchors and aliases would puzzle a reader.
    expect(text).not.toMatch(/[&*]a\d/);
  });

  it('sizes each DataVolume for its image, rounded up to whole MiB', () => {
    const { documents } = specToKubevirt(linux, {
      images: { '/var/lib/images/web.qcow2': { bytes: 10 * GiB + 1 } },
    });
    expect(documents[1]).toMatchObject({
      metadata: { name: 'web-disk0' },
      spec: { source: { upload: {} }, storage: { resources: { requests: { storage: '10241Mi' } } } },
    });
  });

  it('says what does not carry over, and how to upload the images', () => {
    const { notes } = specToKubevirt(win11, { images: images(win11), namespace: 'desktops' });
    const all = notes.join('\n');
    expect(notes[0]).toContain(
      "virtctl image-upload dv win11-disk1 -n desktops --no-create --image-path='/srv/data/win11 games.img'",
    );
    expect(all).toMatch(/TPM starts empty/);
    expect(all).toMatch(/UEFI variables .* do not carry over/);
    expect(all).toMatch(/local time, but no time zone was given/);
    const lanNotes = specToKubevirt(lan, { images: images(lan) }).notes.join('\n');
    expect(lanNotes).toMatch(/boots \/boot\/vmlinuz directly.*--kernel-image IMAGE/);
    expect(lanNotes).toMatch(/CD-ROM 1 is empty and left out/);
    expect(lanNotes).toMatch(/NetworkAttachmentDefinition "br0"/);
    const old = parseSpec({
      ...identity,
      name: 'old',
      machine: 'pc',
      disks: [{ path: '/old.img', format: 'raw', bus: 'ide' }],
      graphics: { device: 'virtio-vga-gl', window: true },
    });
    const out = specToKubevirt(old, { images: images(old) });
    expect(out.notes).toContain(
      "The window on the host's screen is left out: a cluster's VMs show through VNC (virtctl vnc).",
    );
    expect(out.notes.join('\n')).toMatch(/Machine pc \(i440fx\) becomes q35.*IDE.*SATA/);
    expect(out.notes.join('\n')).toMatch(/virtio-vga-gl \(3D\) becomes KubeVirt's 2D display/);
    const gpu = parseSpec({
      ...identity,
      name: 'gpu',
      graphics: { device: 'virtio-vga', hostDevices: [{ kind: 'vf', address: '0000:03:00.1' }] },
    });
    expect(specToKubevirt(gpu, { images: images(gpu) }).notes).toContain(
      'Host GPU hardware (0000:03:00.1) is left out: KubeVirt hands out GPUs by resource name (devices.gpus, with a deviceName the cluster permits in permittedHostDevices); add one there.',
    );
    expect(JSON.stringify(out.documents[0])).toContain(
      '{"name":"disk0","bootOrder":1,"disk":{"bus":"sata"}}',
    );
    expect(problems(out.documents[0]!)).toEqual([]);
  });

  it('leaves out kernel boot without an image, and a second pod NIC', () => {
    const two = parseSpec({
      ...identity,
      name: 'two',
      nics: [{ model: 'virtio-net-pci' }, { model: 'e1000e' }],
    });
    const { documents, notes } = specToKubevirt(two, { images: {} });
    const domain = (
      documents[0] as { spec: { template: { spec: { domain: { devices: { interfaces: unknown[] } } } } } }
    ).spec.template.spec.domain;
    expect(domain.devices.interfaces).toHaveLength(1);
    expect(notes).toContain('NIC 1 is left out: KubeVirt gives a VM one pod network, which NIC 0 has.');
    const kernel = specToKubevirt(lan, { images: images(lan) }).documents[0] as {
      spec: { template: { spec: { domain: { firmware: Record<string, unknown> } } } };
    };
    expect(kernel.spec.template.spec.domain.firmware).not.toHaveProperty('kernelBoot');
  });

  it('refuses encrypted disks and linked-clone overlays, saying what to do', () => {
    const enc = parseSpec({
      ...identity,
      name: 'enc',
      disks: [{ id: 'disk0', path: '/d.qcow2', format: 'qcow2', encrypted: true }],
    });
    expect(() => specToKubevirt(enc, { images: images(enc) })).toThrow(
      /disk0 of "enc" is encrypted .*phyllome disk add enc --size SIZE --no-encrypt/,
    );
    expect(() =>
      specToKubevirt(linux, {
        images: { '/var/lib/images/web.qcow2': { bytes: GiB, backed: true } },
      }),
    ).toThrow(/overlay on a shared base image .*phyllome clone web NEW-NAME/);
    expect(() => specToKubevirt(linux, { images: {} })).toThrow(KubevirtExportError);
    expect(() => specToKubevirt(linux, { images: images(linux), namespace: 'My_NS' })).toThrow(
      /"My_NS" is not a Kubernetes namespace/,
    );
  });
});
