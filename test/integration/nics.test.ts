import { describe, expect, it } from 'vitest';
import { argvOf } from '../../src/qemu/process.js';
import { cli, createGuest, inGuest, json, ok, useHome, waitForReady, type Vm } from './helpers.js';

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
    expect(busy.stderr).toMatch(/stop VM "duo" to remove a NIC: QEMU sets its NICs at start/);
    expect((await cli(h, ['net', 'add', 'duo'])).stderr).toMatch(/stop VM "duo" to add a NIC/);
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
    await refused(
      ['net', 'add', 'odd', '--mac', '01:00:5e:00:00:01'],
      /nics\[1\]\.mac: must be a locally administered MAC/,
    );
    await refused(['net', 'add', 'odd', '--model', 'ne2000'], /--model must be one of virtio-net-pci/);
    await refused(
      ['net', 'add', 'odd', '--net', 'bridge=br0,x'],
      /bridge: must be a network interface name like br0/,
    );
    await refused(['net', 'remove', 'odd', '3'], /VM "odd" has NICs 0 to 0, not 3/);
    await refused(['net', 'add', 'nobody'], /nobody/);
    // Eight at most, as at create.
    for (let i = 1; i < 8; i++) await ok(h, ['net', 'add', 'odd', '--model', 'e1000e']);
    const eight = await macs(h, 'odd');
    expect(new Set(eight).size).toBe(8);
    const ninth = await cli(h, ['net', 'add', 'odd']);
    expect(ninth.stderr).toMatch(/nics: /);
    expect(await macs(h, 'odd')).toEqual(eight);
  });
});
