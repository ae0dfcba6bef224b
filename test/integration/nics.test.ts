import { describe, expect, it } from 'vitest';
import { argvOf } from '../../src/qemu/process.js';
import {
  cli,
  createGuest,
  inGuest,
  json,
  ok,
  socketCall,
  useHome,
  waitForReady,
  type Vm,
} from './helpers.js';

const home = useHome();
const macs = async (h: ReturnType<typeof home>, name: string) =>
  (await json<Vm>(h, ['status', name])).spec.nics.map((n) => n.mac);

describe("a VM's NICs added and removed (phyllome net add/remove, the web UI's Network tab)", () => {
  it('adds a NIC the guest sees at its next start, refuses while it runs, and removes one', async () => {
    const h = home();
    await createGuest(h, 'duo');
    const [first] = await macs(h, 'duo');
    expect(await ok(h, ['net', 'add', 'duo'])).toMatch(
      /^Added NIC 1 to "duo": virtio-net-pci 52:54:00(:[0-9a-f]{2}){3} on user \(/,
    );
    const [, second] = await macs(h, 'duo');
    expect(second).not.toBe(first);

    await ok(h, ['start', 'duo']);
    await waitForReady(h, 'duo');
    const { pid } = await json<Vm>(h, ['status', 'duo']);
    const argv = (await argvOf(pid!))!.join(' ');
    expect(argv).toContain(`mac=${first}`);
    expect(argv).toContain(`mac=${second}`);
    expect((await inGuest(h, 'duo', 'cat /sys/class/net/eth*/address')).split(/\s+/).sort()).toEqual(
      [first, second].sort(),
    );
    const busy = await cli(h, ['net', 'remove', 'duo', '1']);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(
      /stop VM "duo" to remove a NIC: QEMU sets its NICs at start \(it is running\)/,
    );
    expect((await cli(h, ['net', 'add', 'duo'])).stderr).toMatch(/stop VM "duo" to add a NIC/);
    const conflict = await socketCall(h, 'DELETE', '/v1/vms/duo/nics/0');
    expect(conflict.status).toBe(409);
    expect(conflict.body.error?.message).toMatch(/^stop VM "duo" to remove a NIC/);
    expect(await macs(h, 'duo')).toEqual([first, second]);
    await ok(h, ['stop', 'duo', '--force']);

    // The first goes; the second moves up.
    expect(await ok(h, ['net', 'remove', 'duo', '0'])).toMatch(/^Removed NIC 0 from "duo"\./);
    expect(await macs(h, 'duo')).toEqual([second]);
  });

  it('refuses bad NICs clearly and changes nothing', async () => {
    const h = home();
    await createGuest(h, 'odd');
    const before = await macs(h, 'odd');
    const refused = async (args: string[], message: RegExp) => {
      const r = await cli(h, args);
      expect(r.code, r.stdout).not.toBe(0);
      expect(r.stderr).toMatch(message);
      expect(await macs(h, 'odd')).toEqual(before);
    };
    await refused(['net', 'add', 'odd', '--net', 'network=nowhere'], /no network named "nowhere": create it/);
    // What a start would find missing is refused now, in the start's words.
    await refused(
      ['net', 'add', 'odd', '--net', 'bridge=br9'],
      /there is no bridge br9 on this host: create one with "ip link add br9 type bridge/,
    );
    await refused(
      ['net', 'add', 'odd', '--net', 'macvtap=eth9'],
      /there is no network interface eth9 on this host/,
    );
    await refused(
      ['net', 'add', 'odd', '--mac', '01:00:5e:00:00:01'],
      /nics\[1\]\.mac: must be a locally administered MAC/,
    );
    await refused(['net', 'add', 'odd', '--model', 'ne2000'], /--model must be one of virtio-net-pci/);
    await refused(
      ['net', 'add', 'odd', '--net', 'bridge=br0,x'],
      /bridge: must be a network interface name like br0/,
    );
    await refused(
      ['net', 'remove', 'odd', '3'],
      /VM "odd" has NICs 0 to 0, not 3: see "phyllome status odd"/,
    );
    expect((await cli(h, ['net', 'remove', 'odd', '3'])).code).toBe(4);
    const outside = await socketCall(h, 'DELETE', '/v1/vms/odd/nics/1');
    expect(outside.status).toBe(404);
    expect(outside.body.error?.message).toBe('VM "odd" has NICs 0 to 0, not 1: see "phyllome status odd"');
    expect((await socketCall(h, 'POST', '/v1/vms/odd/nics', { net: { type: 'bridge' } })).status).toBe(400);
    expect(await macs(h, 'odd')).toEqual(before);
    await refused(['net', 'add', 'nobody'], /nobody/);
    // Eight at most, as at create.
    for (let i = 1; i < 8; i++) await ok(h, ['net', 'add', 'odd', '--model', 'e1000e']);
    const eight = await macs(h, 'odd');
    expect(new Set(eight).size).toBe(8);
    const ninth = await cli(h, ['net', 'add', 'odd']);
    expect(ninth.stderr).toMatch(/nics: a VM has at most 8 NICs/);
    expect(await macs(h, 'odd')).toEqual(eight);
    // A host NIC that is there (lo: no macvtap would start on it, but it exists) is taken.
    await ok(h, ['net', 'remove', 'odd', '7']);
    expect(await ok(h, ['net', 'add', 'odd', '--net', 'macvtap=lo'])).toMatch(
      /^Added NIC 7 to "odd": .* on macvtap on lo\./,
    );
  });
});
