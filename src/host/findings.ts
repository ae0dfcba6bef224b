import type { AccelDecision } from './accel.js';
import type { QemuFeatures } from './qemu-features.js';
import type { StorageFacts } from './storage.js';
import { isolationBlockers, type Gpu, type HostReport } from './report.js';

export type Level = 'ok' | 'warn' | 'fail';

export interface Finding {
  id: string;
  level: Level;
  title: string;
  /** What to do about it, in plain words; absent when nothing needs doing. */
  fix?: string;
}

/** The bounded live probes, when the check ran them (not for a recorded --root). */
export interface LiveFacts {
  accel?: AccelDecision;
  qemu?: QemuFeatures;
  storage?: StorageFacts;
  /** The host's own screen VM windows open on; false when the daemon has none. */
  localDisplay?: string | false;
}

const GPU_NAMES: Record<Gpu['vendor'], string> = {
  intel: 'Intel',
  amd: 'AMD',
  nvidia: 'NVIDIA',
  other: 'Other',
};

function cpuFindings(r: HostReport): Finding[] {
  const out: Finding[] = [];
  const firmware = r.cpu.vendor === 'amd' ? 'SVM (AMD-V)' : 'VT-x (Intel Virtualization Technology)';
  if (r.cpu.virtFlag) {
    out.push({ id: 'cpu-virtualization', level: 'ok', title: `CPU virtualization: ${r.cpu.virtFlag}` });
  } else {
    out.push({
      id: 'cpu-virtualization',
      level: 'fail',
      title: 'The CPU shows no virtualization extension (vmx/svm)',
      fix: r.cpu.hypervisor
        ? 'This host is itself a VM: enable nested virtualization on the machine that runs it'
        : `Turn on ${firmware} in the firmware (BIOS/UEFI) setup`,
    });
  }
  const module = r.cpu.vendor === 'amd' ? 'kvm_amd' : 'kvm_intel';
  out.push(
    r.kvm.device
      ? { id: 'kvm-device', level: 'ok', title: '/dev/kvm is present' }
      : {
          id: 'kvm-device',
          level: 'fail',
          title: '/dev/kvm is missing',
          fix: `Load the KVM module: modprobe ${module}`,
        },
  );
  if (r.kvm.nested !== undefined) {
    out.push({
      id: 'kvm-nested',
      level: 'ok',
      title: `Nested virtualization ${r.kvm.nested ? 'on' : 'off'}`,
      ...(r.kvm.nested ? {} : { fix: `To run hypervisors in guests: options ${r.kvm.module} nested=1` }),
    });
  }
  out.push({
    id: 'resources',
    level: 'ok',
    title: `${r.cpu.cpus} logical CPUs${r.memoryBytes ? `, ${(r.memoryBytes / 2 ** 30).toFixed(1)} GiB memory` : ''}`,
  });
  return out;
}

function iommuFinding(r: HostReport): Finding {
  if (r.iommu.enabled) {
    return {
      id: 'iommu',
      level: 'ok',
      title: `IOMMU on (${r.iommu.units.join(', ')}), ${r.iommu.groups} groups`,
    };
  }
  const intel = r.cpu.vendor !== 'amd';
  return {
    id: 'iommu',
    level: 'warn',
    title: 'IOMMU is off: no device can be passed through to a VM',
    fix: `Add "${intel ? 'intel_iommu=on' : 'amd_iommu=on'} iommu=pt" to the kernel command line and turn on ${intel ? 'VT-d' : 'AMD-Vi (IOMMU)'} in the firmware setup`,
  };
}

function gpuFinding(r: HostReport, g: Gpu): Finding {
  const what = `${GPU_NAMES[g.vendor]} ${g.deviceId} at ${g.bdf}${g.driver ? ` (${g.driver})` : ''}${g.bootVga ? ', boot display' : ''}${g.renderNode ? `, ${g.renderNode}` : ''}${g.isVf ? ', SR-IOV VF' : ''}`;
  const id = `gpu-${g.bdf}`;
  if (!r.iommu.enabled)
    return {
      id,
      level: 'warn',
      title: `${what}: no IOMMU group`,
      fix: 'Turn the IOMMU on to pass it through',
    };
  if (g.isolated === false) {
    const others = isolationBlockers(g.bdf, g.groupPeers).map((p) => p.bdf);
    return {
      id,
      level: 'warn',
      title: `${what}: shares IOMMU group ${g.iommuGroup} with ${others.join(', ')}, so it cannot be passed through alone`,
      fix: 'Move the card to a slot with its own group (often the first CPU-attached slot) or update the firmware',
    };
  }
  if (g.resetMethods.length === 0 && !g.isVf) {
    return {
      id,
      level: 'warn',
      title: `${what}: isolated (group ${g.iommuGroup}) but offers no reset method`,
      fix: 'It may fail to start twice in a row when passed through; a host reboot clears it',
    };
  }
  return { id, level: 'ok', title: `${what}: isolated in IOMMU group ${g.iommuGroup}` };
}

function sharingFindings(r: HostReport): Finding[] {
  const out: Finding[] = [];
  for (const g of r.gpus) {
    if (g.sriov) {
      out.push({
        id: `sriov-${g.bdf}`,
        level: 'ok',
        title: `${g.bdf} offers SR-IOV: ${g.sriov.numVfs} of ${g.sriov.totalVfs} virtual functions enabled`,
        ...(g.sriov.numVfs === 0
          ? { fix: `Enable some: echo 2 > /sys/bus/pci/devices/${g.bdf}/sriov_numvfs` }
          : {}),
      });
    }
    if (g.vgpuTypes.length) {
      out.push({
        id: `vgpu-${g.bdf}`,
        level: 'ok',
        title: `${g.bdf} can become an NVIDIA vGPU: ${g.vgpuTypes.map((t) => t.name).join(', ')}`,
      });
    }
    for (const t of g.mdevTypes) {
      out.push({
        id: `mdev-${g.bdf}-${t.id}`,
        level: 'ok',
        title: `${g.bdf} mediated type ${t.name} (${t.id}): ${t.available} available`,
      });
    }
  }
  out.push(
    r.udmabuf
      ? { id: 'udmabuf', level: 'ok', title: '/dev/udmabuf is present (virtio-gpu blob resources)' }
      : {
          id: 'udmabuf',
          level: 'warn',
          title: '/dev/udmabuf is missing',
          fix: 'modprobe udmabuf (needed for blob resources before QEMU 9.2)',
        },
  );
  const huge = r.hugepages.filter((h) => h.pages > 0);
  out.push({
    id: 'hugepages',
    level: 'ok',
    title: huge.length
      ? `Huge pages reserved: ${huge.map((h) => `${h.pages} × ${h.size}`).join(', ')}`
      : 'No huge pages reserved',
  });
  return out;
}

function liveFindings(live: LiveFacts): Finding[] {
  const out: Finding[] = [];
  const s = live.storage;
  if (s) {
    out.push(
      s.fscrypt
        ? {
            id: 'storage-fscrypt',
            level: 'ok',
            title: `VM storage ${s.path} is fscrypt-encrypted (${s.fsType ?? 'unknown fs'})`,
          }
        : {
            id: 'storage-fscrypt',
            level: 'warn',
            title: `VM storage ${s.path} is not fscrypt-encrypted: disks are LUKS-encrypted per VM, but UEFI variables, TPM state and logs are not`,
            fix:
              s.fsType === 'ext4' && s.kernelSupport
                ? `phyllome storage encrypt (with every VM stopped): it puts ${s.path} under an fscrypt policy whose key the keystore keeps; its ext4 filesystem needs the encrypt feature first (tune2fs -O encrypt DEVICE)`
                : `move ${s.path} to an ext4 or f2fs filesystem with encryption support`,
          },
    );
  }
  if (live.accel) {
    out.push(
      live.accel.warning
        ? {
            id: 'kvm-usable',
            level: 'fail',
            title: live.accel.warning,
            fix: 'Check the CPU virtualization and KVM findings above',
          }
        : { id: 'kvm-usable', level: 'ok', title: 'KVM runs guest code (probe booted into long mode)' },
    );
  }
  const q = live.qemu;
  if (q) {
    out.push(
      q.virtioVgaGl && q.displays.includes('egl-headless')
        ? {
            id: 'qemu-virgl',
            level: 'ok',
            title: `QEMU offers virgl 3D (virtio-vga-gl, egl-headless); virtio-gpu-gl properties: ${q.gpuGlProperties.join(', ') || 'none'}`,
          }
        : {
            id: 'qemu-virgl',
            level: 'warn',
            title: 'This QEMU cannot do virgl 3D',
            fix: 'apt-get install qemu-system-gui',
          },
    );
    if (live.localDisplay !== undefined) out.push(displayFinding(live.localDisplay, q));
    if (!q.tools.swtpm)
      out.push({
        id: 'swtpm',
        level: 'warn',
        title: 'swtpm is missing: no TPM 2.0 for Windows 11',
        fix: 'apt-get install swtpm',
      });
    if (!q.tools.ovmf)
      out.push({ id: 'ovmf', level: 'warn', title: 'No UEFI firmware (OVMF)', fix: 'apt-get install ovmf' });
    if (!q.tools.virtiofsd)
      out.push({
        id: 'virtiofsd',
        level: 'warn',
        title: 'virtiofsd is missing: no shared folders',
        fix: 'apt-get install virtiofsd',
      });
  }
  return out;
}

/** Whether VMs can show in windows on this host's own screen, as well as in the web console. */
function displayFinding(display: string | false, q: QemuFeatures): Finding {
  if (!display) {
    return {
      id: 'local-display',
      level: 'ok',
      title:
        "No screen of the host's own for VM windows: VMs show in the web console (3D rendered off-screen)",
    };
  }
  return q.displays.includes('gtk')
    ? {
        id: 'local-display',
        level: 'ok',
        title: `VMs can also show in windows on this host's screen (${display}), 3D drawn there (gtk, GL)`,
      }
    : {
        id: 'local-display',
        level: 'warn',
        title: `This host has a screen (${display}) but QEMU cannot draw windows on it`,
        fix: 'apt-get install qemu-system-gui',
      };
}

/** Every finding for a host, in reading order. Pure: the same report gives the same findings. */
export function hostFindings(r: HostReport, live: LiveFacts = {}): Finding[] {
  const out = [
    ...cpuFindings(r),
    iommuFinding(r),
    ...r.gpus.map((g) => gpuFinding(r, g)),
    ...sharingFindings(r),
    ...liveFindings(live),
  ];
  if (r.gpus.length === 0)
    out.push({ id: 'gpus', level: 'ok', title: 'No display device found: guests get virtual 2D graphics' });
  if (r.unreadable.length) {
    out.push({
      id: 'unreadable',
      level: 'warn',
      title: `Could not read: ${r.unreadable.join(', ')}`,
      fix: 'Run the check as root',
    });
  }
  return out;
}
