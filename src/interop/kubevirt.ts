import path from 'node:path';
import { stringify } from 'yaml';
import { diskId, memoryBytes, type NicSpec, type VmSpec } from '../spec/schema.js';

/** What the export needs to know of an image besides the spec (the daemon's disk list, a stat). */
export interface ImageFacts {
  /** A disk's virtual size, an ISO's length: what its DataVolume must hold. */
  bytes: number;
  /** An overlay on a backing image (a linked clone's disks): CDI refuses those. */
  backed?: boolean;
}

export interface KubevirtOptions {
  /** By image path: each disk and each CD-ROM with a medium needs one. */
  images: Readonly<Record<string, ImageFacts>>;
  namespace?: string;
  /** Always: the cluster starts the VM once its disks are uploaded; Halted (default): `virtctl start`. */
  runStrategy?: 'Always' | 'Halted';
  /** A container image with the kernel (and initrd) under /boot, for a VM that boots a kernel directly. */
  kernelImage?: string;
  /** The IANA time zone a local-time guest clock (Windows) follows: QEMU used the host's. */
  timezone?: string;
}

export interface KubevirtExport {
  /** The VirtualMachine, then a DataVolume for each disk and CD-ROM image. */
  documents: Record<string, unknown>[];
  /** How to upload the images, and what does not carry over and why. */
  notes: string[];
}

/** The VM cannot be exported as it is; the message says what to do first. */
export class KubevirtExportError extends Error {}

/** Kubernetes quantities in whole MiB (rounded up, so an image always fits), as Gi when they divide. */
const quantity = (bytes: number): string => {
  const mib = Math.ceil(bytes / 2 ** 20);
  return mib % 1024 === 0 ? `${mib / 1024}Gi` : `${mib}Mi`;
};

/** A word for a POSIX shell, quoted only when it needs to be. */
const shellWord = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`);

const NIC_MODELS: Record<NicSpec['model'], string> = {
  'virtio-net-pci': 'virtio',
  e1000e: 'e1000e',
  e1000: 'e1000',
  rtl8139: 'rtl8139',
};

/** A NetworkAttachmentDefinition name (a DNS label) for a host interface name. */
const nadName = (s: string): string =>
  s
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '') || 'net';

/** Each NIC as a KubeVirt interface and network; `pod` is taken by the first user-mode NIC. */
function networking(spec: VmSpec, name: string, notes: string[], nsFlag: string) {
  const interfaces: Record<string, unknown>[] = [];
  const networks: Record<string, unknown>[] = [];
  let pod = false;
  spec.nics.forEach((nic, i) => {
    const nicName = `nic${i}`;
    const iface = { name: nicName, model: NIC_MODELS[nic.model], macAddress: nic.mac };
    const net = nic.net;
    if (net.type === 'user') {
      if (pod) {
        notes.push(
          `NIC ${i} is left out: KubeVirt gives a VM one pod network, which NIC ${spec.nics.findIndex((n) => n.net.type === 'user')} has.`,
        );
        return;
      }
      pod = true;
      interfaces.push({ ...iface, masquerade: {} });
      networks.push({ name: nicName, pod: {} });
      for (const f of net.forwards) {
        notes.push(
          `NIC ${i}: host port ${f.hostPort}/${f.proto} forwarded to guest port ${f.guestPort} becomes a Service: ` +
            `virtctl expose vm ${name}${nsFlag} --name ${name}-${f.hostPort}-${f.proto} --port ${f.hostPort} ` +
            `--target-port ${f.guestPort} --protocol ${f.proto.toUpperCase()} --type ` +
            // A public forward was open to the network: a node port (the cluster picks its number).
            (f.public ? 'NodePort' : 'ClusterIP'),
        );
      }
      if (net.hostLoopback)
        notes.push(`NIC ${i}: reaching the host's loopback has no equivalent in a pod, and is left out.`);
      return;
    }
    const [networkName, what, how] =
      net.type === 'bridge'
        ? [nadName(net.bridge), `host bridge ${net.bridge}`, `a bridge CNI on each node's ${net.bridge}`]
        : net.type === 'network'
          ? [
              net.network,
              `Phyllome private network ${net.network}`,
              'a bridge CNI with IPAM for its subnet: Phyllome ran its DHCP and NAT, the cluster does not',
            ]
          : [
              nadName(net.device),
              `the LAN of host NIC ${net.device} (macvtap)`,
              `the macvtap CNI on each node's ${net.device}, or a bridge on it`,
            ];
    interfaces.push({ ...iface, bridge: {} });
    networks.push({ name: nicName, multus: { networkName } });
    notes.push(
      `NIC ${i} was on ${what}: create a NetworkAttachmentDefinition "${networkName}" in the VM's namespace (${how}).`,
    );
  });
  return { interfaces, networks, pod };
}

/**
 * Pure: a VM spec as a KubeVirt VirtualMachine with a CDI DataVolume (upload source) per image, and
 * notes on what does not carry over. Throws KubevirtExportError for images a cluster cannot read.
 */
export function specToKubevirt(spec: VmSpec, opts: KubevirtOptions): KubevirtExport {
  if (opts.namespace !== undefined && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(opts.namespace)) {
    throw new KubevirtExportError(
      `"${opts.namespace}" is not a Kubernetes namespace: use up to 63 lowercase letters, digits and "-", ` +
        'starting and ending with a letter or digit',
    );
  }
  const fact = (file: string): ImageFacts => {
    const f = opts.images[file];
    if (!f) {
      throw new KubevirtExportError(
        `cannot read ${file}: it is missing, or this user may not read it (uploading it needs that too)`,
      );
    }
    return f;
  };
  const encrypted = spec.disks.flatMap((d, i) => (d.encrypted ? [diskId(d, i)] : []));
  if (encrypted.length) {
    throw new KubevirtExportError(
      `${encrypted.join(' and ')} of "${spec.name}" ${encrypted.length > 1 ? 'are' : 'is'} encrypted (LUKS), ` +
        'which KubeVirt cannot read, and Phyllome never hands out the key. Copy the data onto an unencrypted ' +
        `disk first (phyllome disk add ${spec.name} --size SIZE --no-encrypt, copy inside the guest, ` +
        `phyllome disk remove ${spec.name} ${encrypted[0]}), then export again.`,
    );
  }
  const backed = spec.disks.flatMap((d, i) => (fact(d.path).backed ? [diskId(d, i)] : []));
  if (backed.length) {
    throw new KubevirtExportError(
      `${backed.join(' and ')} of "${spec.name}" ${backed.length > 1 ? 'are overlays' : 'is an overlay'} on a ` +
        'shared base image (a linked clone), which CDI refuses to upload. Make a full copy ' +
        `(phyllome clone ${spec.name} NEW-NAME) and export that.`,
    );
  }

  const notes: string[] = [];
  // Kubernetes names end with a letter or digit; Phyllome's may end with "-".
  const name = spec.name.replace(/-+$/, '');
  if (name !== spec.name)
    notes.push(
      `"${spec.name}" is called "${name}" in the cluster: Kubernetes names end with a letter or digit.`,
    );
  const ns = opts.namespace ? { namespace: opts.namespace } : {};
  const nsFlag = opts.namespace ? ` -n ${shellWord(opts.namespace)}` : '';
  const disks: Record<string, unknown>[] = [];
  const volumes: Record<string, unknown>[] = [];
  const dataVolumes: Record<string, unknown>[] = [];
  const uploads: string[] = [];

  /** A volume backed by a DataVolume that `virtctl image-upload` fills from `file`. */
  const image = (volume: string, file: string, target: Record<string, unknown>) => {
    const dv = `${name}-${volume}`;
    disks.push({ name: volume, ...target });
    volumes.push({ name: volume, dataVolume: { name: dv } });
    dataVolumes.push({
      apiVersion: 'cdi.kubevirt.io/v1beta1',
      kind: 'DataVolume',
      metadata: { name: dv, ...ns },
      spec: {
        source: { upload: {} },
        storage: { resources: { requests: { storage: quantity(fact(file).bytes) } } },
      },
    });
    uploads.push(`virtctl image-upload dv ${dv}${nsFlag} --no-create --image-path=${shellWord(file)}`);
  };

  // Boot order as on QEMU's command line: CD-ROMs first (an installer), then disks.
  let bootOrder = 0;
  spec.cdroms.forEach((cd, i) => {
    bootOrder++;
    if (!cd.path) {
      notes.push(`CD-ROM ${i} is empty and left out: KubeVirt declares a CD-ROM with its medium.`);
      return;
    }
    image(`cd${i}`, cd.path, { bootOrder, cdrom: { bus: 'sata' } });
    if (cd.role === 'cloud-init') {
      notes.push(
        `CD-ROM ${i} is the cloud-init seed: it travels as it is, so cloud-init in the guest finds the same ` +
          'instance and does not run again (a cloudInitNoCloud volume would be a new instance).',
      );
    }
  });
  spec.disks.forEach((d, i) => {
    bootOrder++;
    const bus = d.bus === 'virtio' ? 'virtio' : 'sata';
    // KubeVirt refuses read-only SATA disks (SATA CD-ROMs are fine).
    const readonly = d.readOnly && bus === 'virtio';
    if (d.readOnly && !readonly) {
      notes.push(
        `${diskId(d, i)} is read-only here, but KubeVirt's SATA disks cannot be: it is writable there.`,
      );
    }
    image(diskId(d, i), d.path, { bootOrder, disk: { bus, ...(readonly ? { readonly } : {}) } });
  });
  if (uploads.length) {
    notes.unshift(
      'Apply this file (kubectl apply -f; the cluster needs KubeVirt and CDI), then, with the VM stopped here ' +
        `so the copies are consistent, upload its images (each disk as it is now: snapshots stay behind):\n  ${uploads.join('\n  ')}`,
    );
  }
  if (spec.machine === 'pc') {
    notes.push(
      'Machine pc (i440fx) becomes q35, the only one KubeVirt runs by default: IDE disks and CD-ROMs become ' +
        'SATA, which the guest needs an AHCI driver for.',
    );
  }

  const fw = spec.firmware;
  const firmware: Record<string, unknown> = {
    uuid: spec.uuid,
    bootloader: fw.type === 'uefi' ? { efi: { secureBoot: fw.secureBoot, persistent: true } } : { bios: {} },
  };
  if (fw.type === 'uefi') {
    notes.push(
      "UEFI variables (boot entries, Secure Boot databases) do not carry over: KubeVirt's firmware starts " +
        'with its own, and boots the disk through \\EFI\\BOOT\\BOOTX64.EFI. Keeping them needs a storage ' +
        'class for VM state (persistent: true).',
    );
    if (fw.secureBoot && !fw.enrolledKeys) {
      notes.push("Secure Boot without enrolled keys becomes Secure Boot with KubeVirt's (Microsoft's) keys.");
    }
  }
  if (spec.boot) {
    const { kernel, initrd, append } = spec.boot;
    if (opts.kernelImage) {
      firmware.kernelBoot = {
        ...(append ? { kernelArgs: append } : {}),
        container: {
          image: opts.kernelImage,
          kernelPath: `/boot/${path.basename(kernel)}`,
          ...(initrd ? { initrdPath: `/boot/${path.basename(initrd)}` } : {}),
        },
      };
    }
    const files = [kernel, ...(initrd ? [initrd] : [])].map((f) => path.basename(f));
    notes.push(
      `The VM boots ${kernel} directly: KubeVirt takes the kernel${initrd ? ' and initrd' : ''} from a container image, ` +
        (opts.kernelImage
          ? `${opts.kernelImage}, which must hold ${files.map((f) => `/boot/${f}`).join(' and ')}.`
          : `which this export leaves out: build one holding them under /boot (FROM scratch, COPY ${files.join(' ')} /boot/) ` +
            'and export again with --kernel-image IMAGE.'),
    );
  }

  const features: Record<string, unknown> = {};
  if (fw.type === 'uefi' && fw.smm) features.smm = { enabled: true };
  const timer: Record<string, unknown> = {};
  if (spec.hyperv) {
    // The enlightenments Phyllome gives QEMU (src/qemu/cmdline.ts); hv_time is KubeVirt's hyperv timer.
    const on = { enabled: true };
    features.hyperv = {
      relaxed: on,
      vapic: on,
      spinlocks: { enabled: true, spinlocks: 0x1fff },
      vpindex: on,
      runtime: on,
      synic: on,
      synictimer: on,
      frequencies: on,
      reset: on,
    };
    timer.hyperv = {};
  }
  let clock: Record<string, unknown> = { utc: {} };
  if (spec.clock === 'localtime') {
    // QEMU's driftfix=slew is libvirt's catch-up tick policy.
    timer.rtc = { tickPolicy: 'catchup' };
    if (opts.timezone) clock = { timezone: opts.timezone };
    else notes.push('The guest keeps its clock in local time, but no time zone was given: it gets UTC.');
  }
  if (Object.keys(timer).length) clock.timer = timer;

  const { interfaces, networks, pod } = networking(spec, name, notes, nsFlag);
  if (spec.graphics.device === 'virtio-vga-gl' || spec.graphics.device === 'virtio-gpu-gl-pci') {
    notes.push(`Graphics ${spec.graphics.device} (3D) becomes KubeVirt's 2D display: it has no virgl.`);
  }
  if (spec.graphics.window) {
    notes.push(
      "The window on the host's screen is left out: a cluster's VMs show through VNC (virtctl vnc).",
    );
  }
  if (spec.graphics.hostDevices) {
    notes.push(
      `Host GPU hardware (${spec.graphics.hostDevices.map((d) => d.address).join(', ')}) is left out: KubeVirt hands out GPUs by resource name (devices.gpus, with a deviceName the cluster permits in permittedHostDevices); add one there.`,
    );
  }
  if (spec.tpm) {
    notes.push(
      "The TPM starts empty: its state (keys the guest sealed, like BitLocker's) does not carry over; have " +
        'the recovery keys at hand. Keeping it across reboots needs a storage class for VM state (persistent: true).',
    );
  }

  const devices: Record<string, unknown> = {
    autoattachGraphicsDevice: spec.graphics.device !== 'none',
    autoattachMemBalloon: spec.balloon,
    // Without this KubeVirt adds a pod NIC to a VM that had none.
    ...(pod ? {} : { autoattachPodInterface: false }),
    disks,
    ...(interfaces.length ? { interfaces } : {}),
    ...(spec.input === 'ps2'
      ? {}
      : {
          inputs: [{ name: 'tablet', type: 'tablet', bus: spec.input === 'usb-tablet' ? 'usb' : 'virtio' }],
        }),
    ...(spec.sound === 'none'
      ? {}
      : { sound: { name: 'sound', model: spec.sound === 'ac97' ? 'ac97' : 'ich9' } }),
    ...(spec.rng ? { rng: {} } : {}),
    ...(spec.tpm ? { tpm: { persistent: true } } : {}),
  };

  const vm = {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata: { name, ...ns },
    spec: {
      runStrategy: opts.runStrategy ?? 'Halted',
      template: {
        spec: {
          domain: {
            cpu: { sockets: 1, cores: spec.cpus, threads: 1 },
            memory: { guest: quantity(memoryBytes(spec)) },
            machine: { type: 'q35' },
            firmware,
            ...(Object.keys(features).length ? { features } : {}),
            clock,
            devices,
          },
          ...(networks.length ? { networks } : {}),
          ...(volumes.length ? { volumes } : {}),
        },
      },
    },
  };
  return { documents: [vm, ...dataVolumes], notes };
}

/** Multi-document YAML; long values (kernel arguments) stay on one line. */
export const toYaml = (documents: readonly object[]): string =>
  documents.map((d) => stringify(d, { lineWidth: 0, aliasDuplicateObjects: false })).join('---\n');
