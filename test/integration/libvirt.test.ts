import { chmod, copyFile, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, guest, json, ok, READY, root, useHome, waitFor, waitForReady, type Vm } from './helpers.js';
import { canRunLibvirt, PrivateLibvirt, run } from './libvirtd.js';

describe.skipIf(!canRunLibvirt)('libvirt interop (a private libvirtd)', () => {
  let lv: PrivateLibvirt;
  beforeAll(async () => {
    lv = await PrivateLibvirt.start();
  });
  afterAll(() => lv?.stop());
  const home = useHome();

  it("accepts the golden exports and the fixtures with libvirt's own schema (virt-xml-validate)", async () => {
    const files = [
      ...(await readdir(path.join(root, 'test/golden')))
        .filter((f) => /^libvirt-export-.*\.xml$/.test(f))
        .map((f) => path.join(root, 'test/golden', f)),
      ...(await readdir(path.join(root, 'test/fixtures/libvirt'))).map((f) =>
        path.join(root, 'test/fixtures/libvirt', f),
      ),
    ];
    expect(files.length).toBeGreaterThanOrEqual(6);
    for (const file of files) {
      const r = await run('virt-xml-validate', [file, 'domain']);
      expect(r, `${file}: ${r.stderr}`).toMatchObject({ code: 0 });
    }
  });

  it('exports a VM that validates, that libvirtd defines and boots, and imports it back from libvirt', async () => {
    const h = home();
    // libvirt runs QEMU as libvirt-qemu: it must reach the files (the guest's cache is under root's home).
    await chmod(h.dir, 0o755);
    const g = guest();
    const files = {
      kernel: path.join(h.dir, 'vmlinux'),
      initrd: path.join(h.dir, 'initrd.img'),
      disk: path.join(h.dir, 'disk.ext4'),
    };
    await Promise.all([
      copyFile(g.kernel, files.kernel),
      copyFile(g.initrd, files.initrd),
      copyFile(g.disk, files.disk),
    ]);
    await ok(h, [
      'create', 'lv', '-m', '256M',
      '--kernel', files.kernel, '--initrd', files.initrd, '--append', g.append,
      '--disk', files.disk,
    ]); // prettier-ignore

    const xmlFile = path.join(h.dir, 'lv.xml');
    const serialLog = path.join(h.dir, 'lv-serial.log');
    const exported = await ok(h, [
      'export-libvirt', 'lv', '-o', xmlFile, '--accel', 'tcg', '--serial-log', serialLog,
    ]); // prettier-ignore
    expect(exported).toContain(`Wrote "lv" as a libvirt domain to ${xmlFile}`);
    const validate = await run('virt-xml-validate', [xmlFile, 'domain']);
    expect(validate, validate.stderr).toMatchObject({ code: 0 });

    // libvirtd keeps definitions in /etc/libvirt: one left by an interrupted run would clash.
    await lv.removeDomain('lv');
    try {
      const defined = await lv.virsh('define', xmlFile);
      expect(defined.code, defined.stderr).toBe(0);
      const started = await lv.virsh('start', 'lv');
      expect(started.code, started.stderr).toBe(0);
      await waitFor(
        `the ready line in ${serialLog}`,
        async () => (await readFile(serialLog, 'utf8').catch(() => '')).includes(READY) || undefined,
        90_000,
      );
      await lv.virsh('destroy', 'lv');

      // Back from libvirt's own definition of it (with what libvirtd added), under a new name.
      const imported = await json<Vm & { unmapped: string[] }>(h, [
        'import-libvirt', '--from', lv.uri, 'lv', '--name', 'lv-back',
      ]); // prettier-ignore
      expect(imported.spec).toMatchObject({
        memory: '256M',
        boot: { kernel: files.kernel, initrd: files.initrd, append: g.append },
        disks: [{ path: files.disk, format: 'raw', bus: 'virtio' }],
        nics: [{ model: 'virtio-net-pci', net: { type: 'user' } }],
      });
      expect(imported.unmapped).toEqual([expect.stringMatching(/^The domain's UUID .* is not kept/)]);
      await ok(h, ['start', 'lv-back']);
      await waitForReady(h, 'lv-back');
      await ok(h, ['stop', 'lv-back', '--force']);
    } finally {
      await lv.removeDomain('lv');
    }
  });

  it('exports a planned UEFI VM with Secure Boot, a TPM and a display, which libvirtd boots', async () => {
    const h = home();
    await chmod(h.dir, 0o755);
    const g = guest();
    // The compressed kernel: UEFI starts it through its EFI stub.
    const kernel = path.join(h.dir, 'vmlinuz');
    const initrd = path.join(h.dir, 'initrd.img');
    const disk = path.join(h.dir, 'disk.ext4');
    await Promise.all([
      copyFile(path.join(path.dirname(g.kernel), 'vmlinuz'), kernel),
      copyFile(g.initrd, initrd),
      copyFile(g.disk, disk),
    ]);
    await ok(h, [
      'create', 'efi', '--os', 'fedora37', '--firmware', 'uefi-secure', '--tpm', '--memory', '384M',
      '--cpus', '1', '--kernel', kernel, '--initrd', initrd, '--append', g.append, '--disk', disk,
    ]); // prettier-ignore
    const vm = await json<Vm>(h, ['status', 'efi']);
    expect(vm.spec).toMatchObject({ firmware: { type: 'uefi', secureBoot: true }, tpm: true });
    expect(vm.spec.graphics.device).not.toBe('none');

    const xmlFile = path.join(h.dir, 'efi.xml');
    const serialLog = path.join(h.dir, 'efi-serial.log');
    const r = await cli(h, [
      'export-libvirt',
      'efi',
      '-o',
      xmlFile,
      '--accel',
      'tcg',
      '--serial-log',
      serialLog,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      'note: The UEFI variables start afresh from /usr/share/OVMF/OVMF_VARS_4M.ms.fd',
    );
    expect(r.stderr).toContain('note: The TPM starts empty');
    const validate = await run('virt-xml-validate', [xmlFile, 'domain']);
    expect(validate, validate.stderr).toMatchObject({ code: 0 });
    // libvirtd keeps definitions in /etc/libvirt: one left by an interrupted run would clash.
    await lv.removeDomain('efi');
    try {
      const defined = await lv.virsh('define', xmlFile);
      expect(defined.code, defined.stderr).toBe(0);
      const started = await lv.virsh('start', 'efi');
      expect(started.code, started.stderr).toBe(0);
      await waitFor(
        `the ready line in ${serialLog}`,
        async () => (await readFile(serialLog, 'utf8').catch(() => '')).includes(READY) || undefined,
        150_000,
      );
    } finally {
      await lv.removeDomain('efi');
    }
  });

  it('imports a GNOME Boxes domain through the CLI, saying what it left out', async () => {
    const h = home();
    const disk = path.join(h.dir, 'boxes.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '64M']);
    const xml = (await readFile(path.join(root, 'test/fixtures/libvirt/gnome-boxes.xml'), 'utf8'))
      .replace('/home/alice/.local/share/gnome-boxes/images/fedora39', disk)
      .replace(/<source file='[^']*\.iso'[^>]*>/, '');
    const file = path.join(h.dir, 'boxes.xml');
    await writeFile(file, xml);

    const out = await ok(h, ['import-libvirt', file]);
    expect(out).toMatch(
      /^Created VM "fedora39"\. Start it with: phyllome start fedora39\nNot carried over:\n {2}- /,
    );
    expect(out).toContain('<redirdev> (4 of them) is not mapped: USB redirection needs SPICE');
    const vm = await json<Vm>(h, ['status', 'fedora39']);
    expect(vm.spec).toMatchObject({
      memory: '4G',
      cpus: 4,
      machine: 'q35',
      disks: [{ path: disk, format: 'qcow2', bus: 'virtio', encrypted: false }],
      cdroms: [{ role: 'media' }],
      nics: [{ model: 'virtio-net-pci', mac: '52:54:00:9f:41:0c', net: { type: 'user' } }],
      input: 'usb-tablet',
      rng: true,
    });
    expect(vm.spec.cdroms[0]!.path).toBeUndefined();

    await writeFile(file, xml.replace('</domain>', ''));
    const bad = await cli(h, ['import-libvirt', file]);
    expect(bad).toMatchObject({ code: 1, stdout: '' });
    expect(bad.stderr).toMatch(/^error: not well-formed XML \(line \d+, column \d+\): /);
  });
});
