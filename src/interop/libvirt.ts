import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser';
import { pickFirmware, type FirmwareDescriptor } from '../host/firmware.js';
import type { Accel } from '../qemu/cmdline.js';
import { VM_NAME_RE } from '../spec/names.js';
import {
  diskId,
  hostDeviceAddresses,
  memoryBytes,
  parseSpecInput,
  randomMac,
  SpecError,
  type DiskSpec,
  type HostDeviceSpec,
  type NicSpec,
  type VmSpec,
} from '../spec/schema.js';
import { formatSize } from '../spec/size.js';

/**
 * Pure mapping between Phyllome specs and libvirt domain XML (https://libvirt.org/formatdomain.html),
 * both ways. What one side has and the other cannot express is said in plain sentences, never dropped
 * silently, except for what each side adds by itself (controllers, PCI addresses, aliases).
 */

export class LibvirtXmlError extends Error {}

/** Where Phyllome keeps what libvirt has no element for (the osinfo-db OS id), in a domain's metadata. */
export const PHYLLOME_NS = 'https://phyllo.me/xmlns/libvirt/1';

// ---------------------------------------------------------------------------------------------------
// Export: a Phyllome spec as a libvirt domain
// ---------------------------------------------------------------------------------------------------

export interface ExportOptions {
  /** `kvm` gives `<domain type='kvm'>`; `tcg` gives type `qemu` (software emulation). */
  accel: Accel;
  /** Serial console (ttyS0) into this file; a pty (`virsh console`) otherwise. */
  serialLog?: string;
}

export interface DomainXml {
  xml: string;
  /** What the domain does differently from the Phyllome VM, and what to do about it. */
  notes: string[];
}

/** What XMLBuilder takes: `@name` attributes, `#text`, child elements (arrays repeat them). */
type XmlObject = Record<string, unknown>;

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  textNodeName: '#text',
  format: true,
  indentBy: '  ',
  suppressEmptyNode: true,
  suppressBooleanAttributes: false,
});

const NIC_MODEL: Record<NicSpec['model'], string> = {
  'virtio-net-pci': 'virtio',
  e1000e: 'e1000e',
  e1000: 'e1000',
  rtl8139: 'rtl8139',
};

/** libvirt's target names: vda… for virtio, sda… for SATA, hda… for IDE (hdc is the second channel). */
const targetDev = (bus: string, n: number): string =>
  `${{ virtio: 'vd', sata: 'sd', ide: 'hd' }[bus]}${String.fromCharCode(97 + n)}`;

/** The Hyper-V enlightenments Phyllome gives Windows (see qemu/cmdline.ts), as libvirt names them. */
const HYPERV_FEATURES = ['relaxed', 'vapic', 'vpindex', 'runtime', 'synic', 'stimer', 'frequencies', 'reset'];

/**
 * The domain libvirt would run for this VM. Refuses VMs with encrypted disks: libvirt would need their
 * key as a libvirt secret, and Phyllome never hands keys out.
 */
/**
 * Host GPU hardware as libvirt hostdevs. managed='yes' has libvirt bind the functions to vfio-pci at
 * start, as Phyllome's launch check asks the user to; a mediated device must be made by mdevctl there.
 */
function hostdev(d: HostDeviceSpec, notes: string[]): XmlObject[] {
  if (d.kind === 'mdev') {
    notes.push(
      `Mediated device ${d.uuid} (${d.mdevType} on ${d.address}): libvirt does not make it; make it on the libvirt host first: mdevctl start -u ${d.uuid} -p ${d.address} --type ${d.mdevType}`,
    );
    return [
      {
        '@mode': 'subsystem',
        '@type': 'mdev',
        '@model': 'vfio-pci',
        ...(d.display ? { '@display': 'on', '@ramfb': 'on' } : {}),
        source: { address: { '@uuid': d.uuid } },
      },
    ];
  }
  return hostDeviceAddresses(d).map((a) => {
    const [domain, bus, slotFn] = a.split(':') as [string, string, string];
    const [slot, fn] = slotFn.split('.') as [string, string];
    return {
      '@mode': 'subsystem',
      '@type': 'pci',
      '@managed': 'yes',
      source: {
        address: {
          '@domain': `0x${domain}`,
          '@bus': `0x${bus}`,
          '@slot': `0x${slot}`,
          '@function': `0x${fn}`,
        },
      },
    };
  });
}

export function specToDomainXml(spec: VmSpec, opts: ExportOptions): DomainXml {
  const encrypted = spec.disks.flatMap((d, i) => (d.encrypted ? [diskId(d, i)] : []));
  if (encrypted.length) {
    throw new LibvirtXmlError(
      `"${spec.name}" has LUKS-encrypted disks (${encrypted.join(', ')}): ` +
        'libvirt would need their key as a libvirt secret, and Phyllome never hands keys out. ' +
        'Export a VM whose disks are not encrypted (phyllome create --no-encrypt)',
    );
  }
  const notes: string[] = [];
  const uefi = spec.firmware.type === 'uefi' ? spec.firmware : undefined;
  const kvm = opts.accel === 'kvm';
  const ata = spec.machine === 'q35' ? 'sata' : 'ide';

  const os: XmlObject = { type: { '@arch': 'x86_64', '@machine': spec.machine, '#text': 'hvm' } };
  if (uefi) {
    os.loader = {
      '@readonly': 'yes',
      '@secure': uefi.smm ? 'yes' : 'no',
      '@type': 'pflash',
      '#text': uefi.code,
    };
    // No path: libvirt makes the VM's variable store from the template in its own folder.
    os.nvram = { '@template': uefi.varsTemplate };
    notes.push(
      `The UEFI variables start afresh from ${uefi.varsTemplate}: Phyllome keeps them as qcow2, which libvirt 9 cannot use; boot entries the guest wrote are not carried over.`,
    );
  }
  if (spec.boot) {
    os.kernel = spec.boot.kernel;
    if (spec.boot.initrd) os.initrd = spec.boot.initrd;
    if (spec.boot.append) os.cmdline = spec.boot.append;
  } else {
    // As Phyllome boots: the CD-ROM (an installer) first, then the disks.
    os.boot = [...(spec.cdroms.length ? [{ '@dev': 'cdrom' }] : []), { '@dev': 'hd' }];
  }

  const features: XmlObject = { acpi: '', apic: '' };
  if (spec.hyperv && kvm) {
    features.hyperv = {
      '@mode': 'custom',
      ...Object.fromEntries(HYPERV_FEATURES.map((f) => [f, { '@state': 'on' }])),
      spinlocks: { '@state': 'on', '@retries': '8191' },
    };
  } else if (spec.hyperv) {
    notes.push('Hyper-V enlightenments are left out: they need KVM, and this domain runs under TCG.');
  }
  if (uefi?.smm) features.smm = { '@state': 'on' };

  // No <emulator>: libvirt runs its own QEMU for x86_64.
  const devices: XmlObject = {};
  let ataIndex = 0;
  let virtioIndex = 0;
  devices.disk = [
    ...spec.disks.map((d: DiskSpec) => {
      const n = d.bus === 'virtio' ? virtioIndex++ : ataIndex++;
      const block = d.path.startsWith('/dev/');
      return {
        '@type': block ? 'block' : 'file',
        '@device': 'disk',
        driver: { '@name': 'qemu', '@type': d.format },
        source: block ? { '@dev': d.path } : { '@file': d.path },
        target: { '@dev': targetDev(d.bus, n), '@bus': d.bus },
        ...(d.readOnly ? { readonly: '' } : {}),
      };
    }),
    ...spec.cdroms.map((cd) => ({
      '@type': 'file',
      '@device': 'cdrom',
      driver: { '@name': 'qemu', '@type': 'raw' },
      ...(cd.path ? { source: { '@file': cd.path } } : {}),
      target: { '@dev': targetDev(ata, ataIndex++), '@bus': ata },
      readonly: '',
    })),
  ];

  devices.interface = spec.nics.map((nic, i) => {
    const common = { mac: { '@address': nic.mac }, model: { '@type': NIC_MODEL[nic.model] } };
    const net = nic.net;
    switch (net.type) {
      case 'user': {
        if (net.hostLoopback) {
          notes.push(
            `NIC ${i}: the guest's way to the host's loopback is not opened (libvirt has no such setting).`,
          );
        }
        // libvirt forwards ports only through its passt backend.
        const passt = net.backend === 'passt' || (net.forwards.length > 0 && net.backend !== 'slirp');
        if (net.forwards.length && !passt) {
          notes.push(`NIC ${i}: its port forwards are left out: libvirt forwards ports only with passt.`);
        }
        return {
          '@type': 'user',
          ...common,
          ...(passt
            ? {
                backend: { '@type': 'passt' },
                portForward: net.forwards.map((f) => ({
                  '@proto': f.proto,
                  ...(f.public ? {} : { '@address': '127.0.0.1' }),
                  range: { '@start': String(f.hostPort), '@to': String(f.guestPort) },
                })),
              }
            : {}),
        };
      }
      case 'bridge':
        return { '@type': 'bridge', ...common, source: { '@bridge': net.bridge } };
      case 'network':
        notes.push(
          `NIC ${i} is on Phyllome's private network "${net.network}": libvirt needs a network of that name (virsh net-define), or change the NIC.`,
        );
        return { '@type': 'network', ...common, source: { '@network': net.network } };
      case 'macvtap':
        return { '@type': 'direct', ...common, source: { '@dev': net.device, '@mode': 'bridge' } };
    }
  });

  devices.serial = opts.serialLog
    ? { '@type': 'file', source: { '@path': opts.serialLog }, target: { '@port': '0' } }
    : { '@type': 'pty', target: { '@port': '0' } };
  // Phyllome always has the guest agent's channel; libvirt picks the socket path.
  devices.channel = { '@type': 'unix', target: { '@type': 'virtio', '@name': 'org.qemu.guest_agent.0' } };

  if (spec.input !== 'ps2')
    devices.input = { '@type': 'tablet', '@bus': spec.input === 'usb-tablet' ? 'usb' : 'virtio' };
  const g = spec.graphics;
  if (g.device !== 'none') {
    const gl = g.device === 'virtio-vga-gl' || g.device === 'virtio-gpu-gl-pci';
    // The screen on a Unix socket, as Phyllome serves it: nothing listens on the network. libvirt
    // has no GTK display: a window on the host's screen is its SDL one.
    devices.graphics = [
      { '@type': 'vnc', listen: { '@type': 'socket' } },
      ...(g.window
        ? [{ '@type': 'sdl', ...(gl ? { gl: { '@enable': 'yes' } } : {}) }]
        : gl
          ? [{ '@type': 'egl-headless', ...(g.renderNode ? { gl: { '@rendernode': g.renderNode } } : {}) }]
          : []),
    ];
    devices.video = {
      model: {
        '@type': g.device === 'vga' ? 'vga' : 'virtio',
        ...(gl ? { acceleration: { '@accel3d': 'yes' } } : {}),
      },
    };
    if (g.device === 'virtio-gpu-gl-pci') {
      notes.push(
        `The display becomes libvirt's virtio-vga with virgl${g.features?.length ? `; ${g.features.join(', ')} (virtio-gpu-gl-pci features) are left out: libvirt 9 cannot ask for them` : ''}.`,
      );
    }
  }
  if (g.hostDevices) devices.hostdev = g.hostDevices.flatMap((d) => hostdev(d, notes));
  if (g.device === 'none' && g.hostDevices?.some((d) => d.kind === 'mdev' && d.display)) {
    // A GVT-g slice's screen is the console: libvirt draws it through GL, as Phyllome does.
    devices.graphics = [{ '@type': 'vnc', listen: { '@type': 'socket' } }, { '@type': 'egl-headless' }];
    devices.video = { model: { '@type': 'none' } };
  }
  if (spec.sound !== 'none') devices.sound = { '@model': spec.sound === 'ac97' ? 'ac97' : 'ich9' };
  if (spec.tpm) {
    devices.tpm = { '@model': 'tpm-crb', backend: { '@type': 'emulator', '@version': '2.0' } };
    notes.push("The TPM starts empty: its state (keys sealed by the guest) stays with Phyllome's VM.");
  }
  // libvirt adds a balloon unless told not to.
  devices.memballoon = { '@model': spec.balloon ? 'virtio' : 'none' };
  if (spec.rng)
    devices.rng = { '@model': 'virtio', backend: { '@model': 'random', '#text': '/dev/urandom' } };

  const domain: XmlObject = {
    '@type': kvm ? 'kvm' : 'qemu',
    name: spec.name,
    uuid: spec.uuid,
    ...(spec.os
      ? {
          metadata: {
            'phyllome:vm': { '@xmlns:phyllome': PHYLLOME_NS, '@os': spec.os },
          },
        }
      : {}),
    memory: { '@unit': 'KiB', '#text': String(Math.floor(memoryBytes(spec) / 2 ** 20) * 1024) },
    vcpu: String(spec.cpus),
    os,
    features,
    // Phyllome's CPU: the host's under KVM, QEMU's "max" under TCG; one socket (Windows client editions use two at most).
    cpu: {
      '@mode': kvm ? 'host-passthrough' : 'maximum',
      '@check': 'none',
      topology: { '@sockets': '1', '@dies': '1', '@cores': String(spec.cpus), '@threads': '1' },
    },
    clock: {
      '@offset': spec.clock,
      ...(spec.hyperv && kvm ? { timer: { '@name': 'hypervclock', '@present': 'yes' } } : {}),
    },
    on_poweroff: 'destroy',
    on_reboot: 'restart',
    on_crash: 'destroy',
    devices,
  };
  if (spec.disks.some((d) => !d.readOnly)) {
    notes.push(
      `The domain uses the VM's own disk files: never run it while "${spec.name}" runs in Phyllome.`,
    );
  }
  return { xml: builder.build({ domain }) as string, notes };
}

// ---------------------------------------------------------------------------------------------------
// Import: a libvirt domain as a Phyllome spec
// ---------------------------------------------------------------------------------------------------

export interface ImportOptions {
  /** QEMU's firmware descriptors: UEFI domains that name no loader get firmware picked from them. */
  firmware: FirmwareDescriptor[];
  /** The VM's name instead of the domain's. */
  name?: string;
  /** osinfo-db's short id for an OS id URL from libosinfo's metadata (http://fedoraproject.org/fedora/39 → fedora39). */
  osShortId?: (url: string) => string | undefined;
  /** For tests: the MAC given to NICs whose MAC is outside QEMU's 52:54:00 range. */
  newMac?: () => string;
}

export interface ImportedDomain {
  /** The spec input for `POST /v1/vms`, validated. */
  spec: ReturnType<typeof parseSpecInput>;
  /** Each thing the domain has that the spec does not, and why: plain sentences. */
  unmapped: string[];
}

const DUMPXML = 'give a domain as "virsh dumpxml NAME" prints it';

/** A parsed element: attributes as `@name`, text as `#text`, children always as arrays. */
interface El {
  [key: string]: El[] | string;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  textNodeName: '#text',
  parseTagValue: false,
  parseAttributeValue: false,
  alwaysCreateTextNode: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  isArray: (_name, _jpath, _leaf, isAttribute) => !isAttribute,
});

const kids = (el: El | undefined, name: string): El[] => {
  const v = el?.[name];
  return Array.isArray(v) ? v : [];
};
const kid = (el: El | undefined, name: string): El | undefined => kids(el, name)[0];
const attr = (el: El | undefined, name: string): string | undefined => {
  const v = el?.[`@${name}`];
  return typeof v === 'string' ? v : undefined;
};
const text = (el: El | undefined): string | undefined => {
  const v = el?.['#text'];
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
};
const childNames = (el: El): string[] => Object.keys(el).filter((k) => !k.startsWith('@') && k !== '#text');
/** libvirt's yes/no and on/off attributes. */
const isOn = (v: string | undefined) => v === 'yes' || v === 'on';

/** libvirt's memory units (https://libvirt.org/formatdomain.html#memory-allocation); KiB when none. */
const UNIT_BYTES: Record<string, number> = {
  b: 1,
  bytes: 1,
  kb: 1e3,
  k: 2 ** 10,
  kib: 2 ** 10,
  mb: 1e6,
  m: 2 ** 20,
  mib: 2 ** 20,
  gb: 1e9,
  g: 2 ** 30,
  gib: 2 ** 30,
  tb: 1e12,
  t: 2 ** 40,
  tib: 2 ** 40,
};

function memoryOf(el: El | undefined): number | undefined {
  const value = text(el);
  if (value === undefined) return undefined;
  const unit = UNIT_BYTES[(attr(el, 'unit') ?? 'KiB').toLowerCase()];
  if (!/^\d+$/.test(value) || unit === undefined) {
    throw new LibvirtXmlError(
      `<memory unit='${attr(el, 'unit') ?? 'KiB'}'>${value}</memory> is not a size libvirt writes`,
    );
  }
  return Number(value) * unit;
}

/** Why common libvirt elements have no place in a Phyllome spec. */
const NO_SPICE = 'Phyllome does not serve SPICE (it serves the screen over VNC)';
const WHY_NOT: Record<string, string> = {
  redirdev: `USB redirection needs SPICE, and ${NO_SPICE}`,
  smartcard: `smartcard sharing needs SPICE, and ${NO_SPICE}`,
  hostdev:
    'host devices are tied to their host: check this one with "phyllome host check", then hand a GPU over with "phyllome create --gpu"',
  filesystem: 'shared folders (virtiofs, 9p) are not part of Phyllome VM specs',
  watchdog: 'Phyllome gives VMs no watchdog device',
  panic: 'Phyllome gives VMs no panic notifier device',
  parallel: 'Phyllome gives VMs no parallel port',
  shmem: 'shared memory devices are not part of Phyllome VM specs',
  vsock: 'vsock is not part of Phyllome VM specs',
  iommu: 'a virtual IOMMU is not part of Phyllome VM specs',
  memory: 'memory hot-plug modules are not part of Phyllome VM specs',
  memoryBacking: 'Phyllome backs guest RAM itself (hugepages and shared memory are not in VM specs)',
  numatune: 'NUMA placement is not part of Phyllome VM specs',
  cputune: 'CPU pinning and quotas are not part of Phyllome VM specs',
  blkiotune: 'disk I/O limits are not part of Phyllome VM specs',
  memtune: 'memory limits are not part of Phyllome VM specs',
  iothreads: 'Phyllome does not assign I/O threads',
  sysinfo: 'SMBIOS strings are not part of Phyllome VM specs',
  idmap: 'ID maps are for containers',
  genid: 'Phyllome gives VMs no VM generation ID',
};

/** Elements each side makes for itself: Phyllome adds its own controllers, consoles and the like. */
const SELF_MADE = new Set([
  // domain
  'name',
  'uuid',
  'title',
  'description',
  'metadata',
  'memory',
  'currentMemory',
  'maxMemory',
  'vcpu',
  'vcpus',
  'os',
  'features',
  'cpu',
  'clock',
  'on_poweroff',
  'on_reboot',
  'on_crash',
  'on_lockfailure',
  'pm',
  'devices',
  'resource',
  'seclabel',
  'keywrap',
  'launchSecurity',
  'perf',
  // devices: Phyllome has its own serial console, guest agent channel, PCI and USB controllers, PS/2 input
  'emulator',
  'controller',
  'serial',
  'console',
  'audio',
  'hub',
]);

/** Notes, each once (a domain may repeat a device, and so a sentence). */
class Notes {
  private readonly seen = new Set<string>();
  add(sentence: string): void {
    this.seen.add(sentence);
  }
  list(): string[] {
    return [...this.seen];
  }
}

/** A name Phyllome accepts, close to libvirt's (which allows capitals, "_", "." and more). */
function phyllomeName(name: string): string {
  const cleaned = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return cleaned || 'imported';
}

const MACHINES: [RegExp, 'q35' | 'pc'][] = [
  [/^(pc-)?q35(-.*)?$/, 'q35'],
  [/^pc(-i440fx(-.*)?)?$/, 'pc'],
];

/**
 * The Phyllome spec for a libvirt domain. Throws LibvirtXmlError when the XML is not a domain Phyllome
 * could run at all (not well-formed, no name, not x86_64); everything else is mapped or reported.
 */
export function domainXmlToSpec(xml: string, opts: ImportOptions): ImportedDomain {
  if (!xml.trim()) throw new LibvirtXmlError(`the XML is empty: ${DUMPXML}`);
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    const { line, col, msg } = valid.err;
    throw new LibvirtXmlError(`not well-formed XML (line ${line}${col ? `, column ${col}` : ''}): ${msg}`);
  }
  const root = parser.parse(xml) as El;
  const domain = kid(root, 'domain');
  if (!domain) {
    // Well-formed XML has one top element.
    throw new LibvirtXmlError(
      `expected a libvirt domain (<domain type='kvm'>…), found <${childNames(root)[0]}>: ${DUMPXML}`,
    );
  }
  const notes = new Notes();
  const unmapped = (what: string, why: string) => notes.add(`${what} is not mapped: ${why}.`);

  const libvirtName = text(kid(domain, 'name'));
  if (!libvirtName) throw new LibvirtXmlError('the domain has no <name>');
  let name = opts.name ?? libvirtName;
  if (!opts.name && !VM_NAME_RE.test(name)) {
    name = phyllomeName(name);
    notes.add(
      `The name "${libvirtName}" became "${name}": Phyllome names are lowercase letters, digits and "-" (or choose one with --name).`,
    );
  }
  const uuid = text(kid(domain, 'uuid'));
  if (uuid) notes.add(`The domain's UUID ${uuid} is not kept: Phyllome gives the VM a new one.`);

  const unknown = (el: El, mapped: Set<string>) => {
    for (const child of childNames(el).filter((c) => !mapped.has(c))) {
      const n = kids(el, child).length;
      unmapped(
        n > 1 ? `<${child}> (${n} of them)` : `<${child}>`,
        WHY_NOT[child] ?? 'Phyllome has no equivalent',
      );
    }
  };
  unknown(domain, SELF_MADE);

  const os = kid(domain, 'os');
  const type = kid(os, 'type');
  const arch = attr(type, 'arch') ?? 'x86_64';
  if (arch !== 'x86_64') {
    throw new LibvirtXmlError(`the domain is for ${arch}: Phyllome runs x86_64 guests`);
  }
  if (text(type) && text(type) !== 'hvm') {
    throw new LibvirtXmlError(`the domain's OS type is ${text(type)}: Phyllome runs full (hvm) VMs only`);
  }
  const machineName = attr(type, 'machine') ?? 'pc';
  let machine = MACHINES.find(([re]) => re.test(machineName))?.[1];
  if (!machine) {
    machine = 'q35';
    notes.add(`Machine type ${machineName} became q35: Phyllome runs q35 and pc (i440fx) machines.`);
  }

  const features = kid(domain, 'features');
  const spec: Record<string, unknown> = { name, machine };

  const memory = memoryOf(kid(domain, 'memory'));
  if (memory !== undefined) spec.memory = formatSize(Math.ceil(memory / 2 ** 20) * 2 ** 20);
  const current = memoryOf(kid(domain, 'currentMemory'));
  if (current !== undefined && memory !== undefined && current < memory) {
    notes.add(
      `The balloon's target of ${formatSize(current)} is not kept: the guest starts with all ${formatSize(memory)}.`,
    );
  }
  const vcpu = kid(domain, 'vcpu');
  if (text(vcpu)) spec.cpus = Number(text(vcpu));
  if (attr(vcpu, 'current'))
    notes.add(
      `Only ${attr(vcpu, 'current')} of ${text(vcpu)} vCPUs online at start is not mapped: all start online.`,
    );

  const cpu = kid(domain, 'cpu');
  const cpuMode = attr(cpu, 'mode') ?? 'custom';
  const cpuModel = text(kid(cpu, 'model'));
  if (cpu && cpuMode === 'custom' && cpuModel) {
    notes.add(
      `CPU model ${cpuModel} is not kept: Phyllome gives the guest the host's CPU under KVM and QEMU's "max" CPU under TCG.`,
    );
  }
  const topology = kid(cpu, 'topology');
  if (
    topology &&
    (Number(attr(topology, 'sockets') ?? 1) > 1 || Number(attr(topology, 'threads') ?? 1) > 1)
  ) {
    notes.add(
      `The CPU topology (sockets ${attr(topology, 'sockets') ?? 1}, cores ${attr(topology, 'cores') ?? 1}, threads ${attr(topology, 'threads') ?? 1}) became one socket with one core per vCPU.`,
    );
  }

  // Firmware: UEFI when asked by name (libvirt's auto-selection) or by a pflash loader.
  const loader = kid(os, 'loader');
  const nvram = kid(os, 'nvram');
  const fwFeature = (n: string) => {
    const f = kids(kid(os, 'firmware'), 'feature').find((x) => attr(x, 'name') === n);
    return f ? isOn(attr(f, 'enabled')) : undefined;
  };
  const smmOn = kids(features, 'smm').some((s) => attr(s, 'state') !== 'off');
  if (attr(os, 'firmware') === 'efi' || attr(loader, 'type') === 'pflash') {
    const secureBoot = fwFeature('secure-boot') ?? isOn(attr(loader, 'secure'));
    const code = text(loader);
    const described = code ? opts.firmware.find((d) => d.executable?.filename === code) : undefined;
    const template = attr(nvram, 'template') ?? described?.nvramTemplate?.filename;
    if (code && template) {
      spec.firmware = {
        type: 'uefi',
        code,
        varsTemplate: template,
        secureBoot,
        enrolledKeys:
          fwFeature('enrolled-keys') ?? described?.features.includes('enrolled-keys') ?? secureBoot,
        smm: secureBoot || smmOn,
      };
    } else {
      // libvirt picks the firmware from the same descriptors when the domain starts; so does Phyllome.
      spec.firmware = pickFirmware(opts.firmware, { machine, secureBoot });
    }
    const vars = text(nvram);
    if (vars) {
      notes.add(
        `The UEFI variables in ${vars} are not carried over: the VM starts with fresh ones (the firmware finds the disk's boot loader by its default path).`,
      );
    }
  } else if (loader && text(loader)) {
    notes.add(`The BIOS ${text(loader)} is not kept: Phyllome boots with QEMU's SeaBIOS.`);
  }

  const kernel = text(kid(os, 'kernel'));
  if (kernel) {
    const initrd = text(kid(os, 'initrd'));
    const cmdline = text(kid(os, 'cmdline'));
    spec.boot = { kernel, ...(initrd ? { initrd } : {}), ...(cmdline ? { append: cmdline } : {}) };
  }
  if (kid(os, 'dtb')) unmapped('The device tree <dtb>', 'x86 guests need none');

  const hyperv = kid(features, 'hyperv');
  if (
    hyperv &&
    (attr(hyperv, 'mode') === 'passthrough' ||
      childNames(hyperv).some((f) => isOn(attr(kid(hyperv, f), 'state'))))
  ) {
    spec.hyperv = true;
  }

  const clock = kid(domain, 'clock');
  const offset = attr(clock, 'offset') ?? 'utc';
  if (offset === 'utc' || offset === 'localtime') spec.clock = offset;
  else notes.add(`Clock offset "${offset}" became UTC: Phyllome keeps the guest clock in UTC or local time.`);

  const devices = kid(domain, 'devices');
  if (devices) unknown(devices, new Set([...SELF_MADE, ...DEVICE_MAPPERS]));
  const storage = mapStorage(kids(devices, 'disk'), machine, notes);
  Object.assign(spec, storage);
  if (
    diskBootsFirst(os, kids(devices, 'disk')) &&
    storage.disks.length &&
    storage.cdroms.some((c) => c.path)
  ) {
    notes.add(
      `Phyllome boots the CD-ROM before the disks, where libvirt booted the disk first: once the guest is installed, eject it (phyllome media eject ${name}).`,
    );
  }
  spec.nics = kids(devices, 'interface').flatMap((el, i) => mapNic(el, i, notes, opts.newMac ?? randomMac));
  spec.graphics = mapGraphics(devices, notes);
  Object.assign(spec, mapSmallDevices(devices, machine, notes));

  const libosinfo = kid(kid(kid(domain, 'metadata'), 'libosinfo:libosinfo'), 'libosinfo:os');
  const phyllome = kid(kid(domain, 'metadata'), 'phyllome:vm');
  const osUrl = attr(libosinfo, 'id');
  const osId = attr(phyllome, 'os') ?? (osUrl ? opts.osShortId?.(osUrl) : undefined);
  if (osId) spec.os = osId;
  else if (osUrl) notes.add(`The OS ${osUrl} is not recorded: osinfo-db here does not know it.`);

  try {
    return { spec: parseSpecInput(spec), unmapped: notes.list() };
  } catch (e) {
    if (!(e instanceof SpecError)) throw e;
    throw new LibvirtXmlError(`the domain maps to a VM Phyllome refuses: ${e.problems.join('; ')}`);
  }
}

/** Device elements the mappers below read. */
const DEVICE_MAPPERS = new Set([
  'disk',
  'interface',
  'graphics',
  'video',
  'input',
  'sound',
  'rng',
  'memballoon',
  'tpm',
  'channel',
]);

/** Whether libvirt boots a disk before the CD-ROMs: by the devices' `<boot order>`, else by `<os><boot dev>` (hd when none). */
function diskBootsFirst(os: El | undefined, disks: El[]): boolean {
  const order = (d: El) => Number(attr(kid(d, 'boot'), 'order'));
  const first = disks.filter((d) => kid(d, 'boot')).sort((a, b) => order(a) - order(b))[0];
  if (first) return attr(first, 'device') !== 'cdrom';
  return (attr(kid(os, 'boot'), 'dev') ?? 'hd') === 'hd';
}

const BUSES: Record<string, DiskSpec['bus']> = { virtio: 'virtio', sata: 'sata', ide: 'ide' };

function mapStorage(
  disks: El[],
  machine: 'q35' | 'pc',
  notes: Notes,
): { disks: unknown[]; cdroms: { path?: string }[] } {
  const ata = machine === 'q35' ? 'sata' : 'ide';
  const out = { disks: [] as unknown[], cdroms: [] as { path?: string }[] };
  for (const el of disks) {
    const source = kid(el, 'source');
    const device = attr(el, 'device') ?? 'disk';
    const type = attr(el, 'type') ?? 'file';
    const target = attr(kid(el, 'target'), 'dev') ?? '?';
    const file = type === 'file' ? attr(source, 'file') : type === 'block' ? attr(source, 'dev') : undefined;
    if (device === 'cdrom') {
      if (type !== 'file' && type !== 'block') {
        notes.add(
          `CD-ROM ${target}'s ${type} source is not mapped: its drive stays empty (insert media with phyllome media insert).`,
        );
      }
      out.cdroms.push({ ...(file ? { path: file } : {}) });
      continue;
    }
    if (device !== 'disk') {
      notes.add(`The ${device} drive ${target} is not mapped: Phyllome VMs have disks and CD-ROMs.`);
      continue;
    }
    if (!file) {
      const how =
        type === 'volume'
          ? `storage pool ${attr(source, 'pool') ?? '?'}, volume ${attr(source, 'volume') ?? '?'} (virsh vol-path gives its file: add it with phyllome disk add --path)`
          : `a ${type} source`;
      notes.add(`Disk ${target} is not mapped: it is ${how}; Phyllome attaches files and block devices.`);
      continue;
    }
    if (kid(el, 'encryption')) {
      notes.add(
        `Disk ${target} (${file}) is not mapped: it is encrypted with a libvirt secret, and Phyllome can only attach encrypted disks it made with its own key.`,
      );
      continue;
    }
    const format = attr(kid(el, 'driver'), 'type') ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') {
      notes.add(
        `Disk ${target} (${file}) is not mapped: it is ${format}; convert it with qemu-img convert -O qcow2 and add it.`,
      );
      continue;
    }
    const libvirtBus = attr(kid(el, 'target'), 'bus') ?? 'virtio';
    let bus = BUSES[libvirtBus] ?? 'virtio';
    if (bus !== 'virtio' && bus !== ata) bus = ata;
    if (bus !== libvirtBus) {
      notes.add(
        `Disk ${target} on bus ${libvirtBus} moved to ${bus}: machine ${machine} has ${ata.toUpperCase()} and virtio disks.`,
      );
    }
    out.disks.push({ path: file, format, bus, readOnly: !!kid(el, 'readonly') });
  }
  return out;
}

const NIC_MODELS: Record<string, NicSpec['model']> = {
  virtio: 'virtio-net-pci',
  'virtio-net-pci': 'virtio-net-pci',
  e1000e: 'e1000e',
  e1000: 'e1000',
  rtl8139: 'rtl8139',
};

function mapNic(el: El, i: number, notes: Notes, newMac: () => string): unknown[] {
  const type = attr(el, 'type') ?? 'user';
  const source = kid(el, 'source');
  const libvirtModel = attr(kid(el, 'model'), 'type') ?? 'rtl8139'; // libvirt's default on x86
  const model = NIC_MODELS[libvirtModel] ?? 'virtio-net-pci';
  if (!NIC_MODELS[libvirtModel])
    notes.add(
      `NIC ${i}'s model ${libvirtModel} became virtio-net-pci: Phyllome offers virtio, e1000e, e1000 and rtl8139.`,
    );
  const libvirtMac = attr(kid(el, 'mac'), 'address')?.toLowerCase();
  let mac = libvirtMac;
  if (!mac || !/^52:54:00(:[0-9a-f]{2}){3}$/.test(mac)) {
    mac = newMac();
    if (libvirtMac)
      notes.add(`NIC ${i}'s MAC ${libvirtMac} became ${mac}: Phyllome MACs are in QEMU's 52:54:00 range.`);
  }
  const nic = (net: unknown) => [{ model, mac, net }];
  const ifName = /^[A-Za-z0-9_.-]{1,15}$/;
  switch (type) {
    case 'user': {
      const forwards = kids(el, 'portForward').flatMap((pf) =>
        kids(pf, 'range').flatMap((r) => {
          const start = Number(attr(r, 'start'));
          const to = Number(attr(r, 'to') ?? start);
          if (attr(r, 'end') || !start) {
            notes.add(
              `NIC ${i}'s forward of a port range is not mapped: add each port with phyllome net forward add.`,
            );
            return [];
          }
          const address = attr(pf, 'address');
          return [
            {
              proto: attr(pf, 'proto') === 'udp' ? 'udp' : 'tcp',
              hostPort: start,
              guestPort: to,
              public: !address || !/^(127\.|::1$)/.test(address),
            },
          ];
        }),
      );
      // No backend named: Phyllome runs passt when installed (as libvirt's passt backend asks), else slirp.
      return nic({ type: 'user', forwards });
    }
    case 'network': {
      const network = attr(source, 'network') ?? 'default';
      // libvirt's networks are not Phyllome's; user-mode networking gives what "default" gives: NAT out.
      notes.add(
        `NIC ${i} on libvirt network "${network}" got user-mode networking (outbound NAT, as libvirt's default network gives); for a Phyllome private network use --net network=NAME.`,
      );
      return nic({ type: 'user' });
    }
    case 'bridge': {
      const bridge = attr(source, 'bridge') ?? '';
      if (ifName.test(bridge)) return nic({ type: 'bridge', bridge });
      break;
    }
    case 'direct': {
      const dev = attr(source, 'dev') ?? '';
      const mode = attr(source, 'mode') ?? 'vepa';
      if (ifName.test(dev)) {
        if (mode !== 'bridge')
          notes.add(`NIC ${i}'s macvtap mode ${mode} became bridge: Phyllome's macvtaps are in bridge mode.`);
        return nic({ type: 'macvtap', device: dev });
      }
      break;
    }
  }
  notes.add(
    `NIC ${i} (type ${type}) is not mapped: Phyllome NICs are user-mode, bridge, private network or macvtap.`,
  );
  return [];
}

function mapGraphics(devices: El | undefined, notes: Notes): unknown {
  const video = kid(kid(devices, 'video'), 'model');
  const graphics = kids(devices, 'graphics');
  const videoType = attr(video, 'type') ?? (graphics.length ? 'vga' : 'none');
  const accel3d = isOn(attr(kid(video, 'acceleration'), 'accel3d'));
  const glOn = graphics.map((g) => kid(g, 'gl')).find((gl) => gl && attr(gl, 'enable') !== 'no');
  // A window on the host's screen (SDL in libvirt, GTK in Phyllome) draws GL on that screen's GPU.
  const window = graphics.some((g) => attr(g, 'type') === 'sdl');
  const renderNode = window ? undefined : attr(glOn, 'rendernode');
  for (const g of graphics) {
    const t = attr(g, 'type') ?? '?';
    if (t === 'spice') notes.add(`The SPICE display became VNC: ${NO_SPICE}.`);
    else if (t !== 'vnc' && t !== 'egl-headless' && t !== 'sdl')
      notes.add(`The ${t} display is not mapped: Phyllome serves the screen over VNC.`);
    if (attr(g, 'passwd'))
      notes.add(
        'The display password is not kept: Phyllome serves the screen only to local users, through its own socket.',
      );
  }
  if (kids(devices, 'video').length > 1)
    notes.add('Only the first video device is mapped: Phyllome VMs have one.');
  const shown = window ? { window: true } : {};
  switch (videoType) {
    case 'none':
      return { device: 'none' };
    case 'vga':
      return { device: 'vga', ...shown };
    case 'virtio':
      return accel3d || glOn
        ? { device: 'virtio-vga-gl', ...(renderNode ? { renderNode } : {}), ...shown }
        : { device: 'virtio-vga', ...shown };
    default:
      notes.add(`Video ${videoType} became VGA, which every OS drives: Phyllome offers VGA and virtio-gpu.`);
      return { device: 'vga', ...shown };
  }
}

const SOUND: Record<string, string> = {
  ich9: 'ich9-intel-hda',
  ich6: 'ich9-intel-hda',
  ich7: 'ich9-intel-hda',
  ac97: 'ac97',
};

function mapSmallDevices(
  devices: El | undefined,
  machine: 'q35' | 'pc',
  notes: Notes,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const input of kids(devices, 'input')) {
    const type = attr(input, 'type');
    const bus = attr(input, 'bus') ?? 'usb';
    if (type !== 'tablet') continue; // PS/2 mouse and keyboard: every Phyllome VM has them
    if (bus === 'virtio') out.input = 'virtio-tablet';
    else if (machine === 'q35') out.input = 'usb-tablet';
    else
      notes.add('The USB tablet is not mapped: Phyllome gives it to q35 machines (on pc the mouse is PS/2).');
  }
  const sound = kid(devices, 'sound');
  if (sound) {
    const model = attr(sound, 'model') ?? '?';
    if (SOUND[model]) out.sound = SOUND[model];
    else notes.add(`Sound card ${model} is not mapped: Phyllome offers ich9-intel-hda and ac97.`);
  }
  if (kids(devices, 'rng').some((r) => attr(r, 'model') === 'virtio')) out.rng = true;
  out.balloon = kids(devices, 'memballoon').some((b) => attr(b, 'model') === 'virtio');
  const tpm = kid(devices, 'tpm');
  if (tpm) {
    const backend = kid(tpm, 'backend');
    if (attr(backend, 'type') === 'emulator' && (attr(backend, 'version') ?? '2.0') === '2.0') {
      out.tpm = true;
      notes.add(
        "The TPM starts empty: libvirt's TPM state (keys the guest sealed, e.g. BitLocker's) is not carried over.",
      );
    } else {
      const what = `${attr(backend, 'type') ?? '?'} TPM ${attr(backend, 'version') ?? '2.0'}`;
      notes.add(`The ${what} is not mapped: Phyllome emulates a TPM 2.0 with swtpm.`);
    }
  }
  for (const channel of kids(devices, 'channel')) {
    const target = attr(kid(channel, 'target'), 'name') ?? attr(channel, 'type') ?? '?';
    // Phyllome always gives the guest agent its channel.
    if (target === 'org.qemu.guest_agent.0') continue;
    notes.add(
      target.startsWith('com.redhat.spice') || target.startsWith('org.spice-space')
        ? `The SPICE channel ${target} is not mapped: ${NO_SPICE}.`
        : `The channel ${target} is not mapped: Phyllome VMs have the guest agent's channel only.`,
    );
  }
  return out;
}
