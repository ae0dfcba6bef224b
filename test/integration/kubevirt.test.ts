import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { problems } from '../fixtures/kubevirt/validate.js';
import {
  bootArgs,
  cli,
  copyDisk,
  destroyHome,
  json,
  makeHome,
  ok,
  type TestHome,
  type Vm,
} from './helpers.js';

let h: TestHome;
let vm: Vm;

// Stopped VMs are enough: an export reads the spec and the images' headers, and boots nothing.
beforeAll(async () => {
  h = await makeHome();
  const disk = await copyDisk(h);
  await ok(h, ['create', 'kv', ...bootArgs(), '-m', '256M', '--disk', disk, '--disk', '64M', '--no-encrypt']);
  await ok(h, ['net', 'forward', 'add', 'kv', '18080:80']);
  await ok(h, ['create', 'enc', ...bootArgs(), '-m', '256M', '--disk', '64M']);
  vm = await json<Vm>(h, ['status', 'kv']);
});
afterAll(() => destroyHome(h));

describe('phyllome export-kubevirt', () => {
  it('writes a manifest that validates against the published schemas, with upload notes', async () => {
    const file = path.join(h.dir, 'kv.yaml');
    const r = await cli(h, ['export-kubevirt', 'kv', '-o', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`Wrote "kv" for KubeVirt to ${file}.\n`);
    const text = await readFile(file, 'utf8');
    const docs = parseAllDocuments(text).map((d) => d.toJS() as Record<string, unknown>);
    expect(docs.map((d) => d.kind)).toEqual(['VirtualMachine', 'DataVolume', 'DataVolume']);
    for (const doc of docs) expect(problems(doc)).toEqual([]);
    expect(docs[0]).toMatchObject({
      metadata: { name: 'kv' },
      spec: { runStrategy: 'Halted', template: { spec: { domain: { firmware: { uuid: vm.spec.uuid } } } } },
    });

    // Each DataVolume holds its image: the raw disk's length, the new qcow2's virtual size.
    const [raw, qcow2] = vm.spec.disks;
    const mib = Math.ceil((await stat(raw!.path)).size / 2 ** 20);
    expect(docs[1]).toMatchObject({
      metadata: { name: 'kv-disk0' },
      spec: {
        storage: { resources: { requests: { storage: mib % 1024 ? `${mib}Mi` : `${mib / 1024}Gi` } } },
      },
    });
    expect(docs[2]).toMatchObject({
      metadata: { name: 'kv-disk1' },
      spec: { storage: { resources: { requests: { storage: '64Mi' } } } },
    });
    expect(r.stderr).toContain(`virtctl image-upload dv kv-disk0 --no-create --image-path=${raw!.path}`);
    expect(r.stderr).toContain(`virtctl image-upload dv kv-disk1 --no-create --image-path=${qcow2!.path}`);
    expect(r.stderr).toMatch(/note: .*boots .* directly.*--kernel-image IMAGE/);
    expect(r.stderr).toMatch(/note: NIC 0: host port 18080\/tcp .*virtctl expose vm kv/);

    // The same manifest on standard output, and as JSON with the notes.
    expect((await cli(h, ['export-kubevirt', 'kv'])).stdout).toBe(text);
    const asJson = await json<{ documents: unknown[]; notes: string[] }>(h, ['export-kubevirt', 'kv']);
    expect(asJson.documents).toEqual(docs);
    expect(asJson.notes.length).toBeGreaterThan(0);
  });

  it('refuses encrypted disks, saying what to do, and writes nothing', async () => {
    const file = path.join(h.dir, 'enc.yaml');
    const r = await cli(h, ['export-kubevirt', 'enc', '-o', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: disk0 of "enc" is encrypted .*--no-encrypt/);
    expect(existsSync(file)).toBe(false);
  });

  it("refuses a linked clone's overlays, saying what to do", async () => {
    await ok(h, ['create', 'base', ...bootArgs(), '-m', '256M', '--disk', '64M', '--no-encrypt']);
    await ok(h, ['clone', 'base', 'linked', '--linked']);
    const r = await cli(h, ['export-kubevirt', 'linked']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: disk0 of "linked" is an overlay .*phyllome clone linked NEW-NAME/);
    expect(r.stdout).toBe('');
  });

  it('says when there is no such VM', async () => {
    const r = await cli(h, ['export-kubevirt', 'nope']);
    expect(r.code).toBe(4);
    expect(r.stdout).toBe('');
  });
});
