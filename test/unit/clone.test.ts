import { describe, expect, it } from 'vitest';
import { cloneSpec } from '../../src/daemon/clone.js';
import { parseSpec } from '../../src/spec/schema.js';

const UUID = '4b20d080-1b54-4048-85b3-a6a62d165c01';

describe('a clone of a VM with host GPU hardware', () => {
  it('makes its own mediated device; whole cards and VFs stay named (only one of the two can run)', () => {
    const src = parseSpec({
      schemaVersion: 1,
      uuid: '6f1c0c42-8d43-4a7e-9b1e-2d6c5f0a9b11',
      createdAt: '2026-11-22T10:00:00.000Z',
      name: 'src',
      graphics: {
        device: 'virtio-vga',
        hostDevices: [
          { kind: 'mdev', address: '0000:18:00.0', mdevType: 'nvidia-231', uuid: UUID },
          { kind: 'vf', address: '0000:03:00.1' },
        ],
      },
    });
    const r = {
      src,
      srcDir: '/vms/src',
      name: 'dst',
      dstDir: '/vms/dst',
      basesDir: '/vms/.bases',
      linked: false,
    };
    const [mdev, vf] = cloneSpec(r, '99999999-2222-4333-8444-555555555555', src.createdAt).graphics
      .hostDevices!;
    expect(mdev).toMatchObject({ kind: 'mdev', address: '0000:18:00.0', mdevType: 'nvidia-231' });
    expect(mdev).not.toMatchObject({ uuid: UUID });
    expect(vf).toEqual({ kind: 'vf', address: '0000:03:00.1' });
  });
});
