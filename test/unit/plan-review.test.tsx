import { renderToString } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import { OpProgressBar } from '../../web/src/OpProgress.js';
import { PlanReview } from '../../web/src/PlanReview.js';
import {
  CHOSEN,
  chooseGraphics,
  graphicsOptions,
  reviewRows,
  withOverride,
  type Plan,
} from '../../web/src/review.js';
import { isoUploadName } from '../../web/src/iso-name.js';
import { snapshotRows } from '../../web/src/snapshot-rows.js';
import { nextProgress } from '../../web/src/vms.js';

/** A plan as POST /v1/plan answers it for Windows 11 on a host with a passthrough-capable GPU. */
const plan: Plan = {
  spec: { name: 'win', graphics: { device: 'virtio-vga-gl' } },
  os: { shortId: 'win11', name: 'Microsoft Windows 11', identifiedFrom: 'volume id "CCCOMA_X64FRE"' },
  notes: [
    'vfio-passthrough (0000:01:00.0) would be better on this host: create with --gpu 0000:01:00.0 to hand it over',
  ],
  choices: [
    { item: 'machine', value: 'q35', reason: 'q35: PCI Express and AHCI, what every OS since 2007 expects' },
    {
      item: 'firmware',
      value: 'UEFI with Secure Boot, Microsoft keys enrolled (/usr/share/OVMF/OVMF_CODE_4M.ms.fd)',
      reason: 'Microsoft Windows 11 requires UEFI with Secure Boot',
    },
    { item: 'tpm', value: 'TPM 2.0 (swtpm)', reason: 'Microsoft Windows 11 requires TPM 2.0' },
    { item: 'memory', value: '4G', reason: "osinfo-db's recommended memory for Windows 11" },
    { item: 'disk bus', value: 'sata', reason: 'no virtio-blk driver and no virtio-win ISO: SATA works' },
    { item: 'graphics', value: 'virtio-virgl: virtio-vga-gl', reason: 'OpenGL through the host GPU' },
    { item: 'clock', value: 'localtime', reason: 'Windows keeps the hardware clock in local time' },
  ],
  graphics: [
    {
      kind: 'vfio-passthrough',
      graphics: { device: 'virtio-vga', hostDevices: [{ address: '0000:01:00.0' }] },
      devices: ['0000:01:00.0'],
      why: 'the whole GPU',
      tradeoff: 'the host loses it',
      caveats: ["The host loses its console: 0000:01:00.0 drives the host's screen"],
    },
    { kind: 'virtio-virgl', graphics: { device: 'virtio-vga-gl' }, why: 'OpenGL', tradeoff: 'no Vulkan' },
    { kind: 'virtio-2d', graphics: { device: 'virtio-vga' }, why: 'works everywhere', tradeoff: 'no 3D' },
  ],
};

/** The page's text per table row, tags stripped and entities read back. */
function rows(html: string, table: string): string[] {
  const body = html.split(`aria-label="${table}"`)[1]!.split('</table>')[0]!;
  return [...body.matchAll(/<tr[^>]*>([\s\S]*?)<\/tr>/g)].slice(1).map((m) =>
    m[1]!
      .replace(/<option[\s\S]*?<\/option>/g, ' ')
      .replace(/<[^>]+>/g, ' ')
      .replace(/&#x27;/g, "'")
      .replace(/&quot;/g, '"')
      .replace(/&amp;/g, '&')
      .replace(/\s+/g, ' ')
      .trim(),
  );
}

const render = (overrides = {}) =>
  renderToString(<PlanReview plan={plan} overrides={overrides} onOverride={() => {}} />);

describe("the create wizard's review page", () => {
  it('shows every device choice with its value and reason, in the plan order', () => {
    const shown = rows(render(), 'Plan');
    expect(shown).toHaveLength(plan.choices.length);
    plan.choices.forEach((c, i) => {
      expect(shown[i]).toContain(`${c.item} ${c.value} ${c.reason}`);
    });
    const html = render();
    expect(html).toContain('identified from the ISO');
    expect(html).toContain(plan.notes[0]);
  });

  it('offers an override for what an expert may force, and none for the rest', () => {
    const html = render();
    for (const item of ['machine', 'firmware', 'tpm', 'disk bus', 'graphics'])
      expect(html).toContain(`aria-label="Change ${item}"`);
    for (const item of ['memory', 'clock']) expect(html).not.toContain(`aria-label="Change ${item}"`);
  });

  it('ranks the graphics options as the planner did and marks the one the VM gets', () => {
    const shown = rows(render(), 'Graphics options');
    expect(shown.map((r) => r.split(' ').slice(0, 2).join(' '))).toEqual([
      '1 vfio-passthrough',
      '2 virtio-virgl',
      '3 virtio-2d',
    ]);
    expect(shown[0]).toContain('1 vfio-passthrough (0000:01:00.0) the whole GPU The host loses its console');
    expect(shown[1]).toContain('chosen');
    expect(shown[2]).not.toContain('chosen');
  });

  it('hands a GPU over when its strategy is picked, and a display device ends that choice', () => {
    const [whole, virgl, flat] = plan.graphics;
    const gpu = chooseGraphics({ graphics: 'vga', tpm: false }, whole!);
    expect(gpu).toEqual({ gpu: '0000:01:00.0', tpm: false });
    // Marked at once, before the planner answers; the 2D row with the same console device is not.
    expect(graphicsOptions(plan, gpu).map((g) => g.chosen)).toEqual([true, false, false]);
    expect(chooseGraphics(gpu, flat!)).toEqual({ graphics: 'virtio-vga', tpm: false });
    expect(withOverride(gpu, 'graphics', 'virtio-vga-gl')).toEqual({ graphics: 'virtio-vga-gl', tpm: false });
    // The planner's answer with the GPU in the spec marks it too.
    const planned: Plan = {
      ...plan,
      spec: { ...plan.spec, graphics: whole!.graphics },
    };
    expect(graphicsOptions(planned, {}).map((g) => g.chosen)).toEqual([true, false, false]);
    expect(chooseGraphics({}, virgl!)).toEqual({ graphics: 'virtio-vga-gl' });
  });

  it('an expert override changes the choice, its reason and the chosen graphics', () => {
    const overrides = withOverride({}, 'graphics', 'virtio-vga');
    expect(overrides).toEqual({ graphics: 'virtio-vga' });
    const html = render(overrides);
    const graphicsRow = rows(html, 'Plan').find((r) => r.startsWith('graphics'));
    expect(graphicsRow).toContain(`graphics virtio-vga ${CHOSEN}`);
    expect(html).toMatch(/<option[^>]* value="virtio-vga" selected="">/);
    const ranked = rows(html, 'Graphics options');
    expect(ranked[1]).not.toContain('chosen');
    expect(ranked[2]).toContain('chosen');
    // Other rows stay as planned.
    expect(rows(html, 'Plan')[0]).toContain(plan.choices[0]!.reason);
  });

  it('maps the TPM switch to a boolean, and "as planned" hands an item back to the planner', () => {
    const off = withOverride({ graphics: 'vga' }, 'tpm', 'off');
    expect(off).toEqual({ graphics: 'vga', tpm: false });
    expect(reviewRows(plan, off).find((r) => r.item === 'tpm')).toMatchObject({
      value: 'off',
      reason: CHOSEN,
      override: { selected: 'off' },
    });
    expect(withOverride(off, 'graphics', '')).toEqual({ tpm: false });
  });

  it("keeps the planner's own wording once it has planned with the override", () => {
    const replanned: Plan = {
      ...plan,
      choices: plan.choices.map((c) =>
        c.item === 'firmware' ? { ...c, value: 'BIOS (SeaBIOS)', reason: CHOSEN } : c,
      ),
    };
    const row = reviewRows(replanned, { firmware: 'bios' }).find((r) => r.item === 'firmware');
    expect(row).toMatchObject({ value: 'BIOS (SeaBIOS)', reason: CHOSEN, override: { selected: 'bios' } });
  });

  it('marks no graphics option when the VM gets one the host list does not rank (plain VGA)', () => {
    expect(graphicsOptions(plan, { graphics: 'vga' }).some((g) => g.chosen)).toBe(false);
  });
});

describe("the VM page's pure parts", () => {
  it('lists snapshots in tree order, children after their parent, orphans as roots', () => {
    const at = '2026-01-01T00:00:00Z';
    const order = snapshotRows([
      { name: 'b', parent: 'a', createdAt: at, live: false },
      { name: 'a', createdAt: at, live: false },
      { name: 'c', parent: 'b', createdAt: at, live: true },
      { name: 'd', parent: 'gone', createdAt: at, live: false },
      { name: 'e', parent: 'a', createdAt: at, live: false },
    ]).map((r) => `${r.depth}${r.snap.name}`);
    expect(order).toEqual(['0a', '1b', '2c', '1e', '0d']);
  });

  it('shows a running operation as a labelled progress bar, and nothing when none runs', () => {
    const html = renderToString(<OpProgressBar vm="db" progress={{ op: 'clone', percent: 42 }} />);
    expect(html).toContain('aria-label="clone of db"');
    expect(html).toContain('aria-valuenow="42"');
    expect(html).toContain('>clone<');
    expect(renderToString(<OpProgressBar vm="db" progress={undefined} />)).toBe('');
  });

  it('keeps a running operation per VM and drops it when it reaches 100%', () => {
    const one = nextProgress(new Map(), { vm: 'a', op: 'clone', percent: 40 });
    expect(one.get('a')).toEqual({ op: 'clone', percent: 40 });
    const two = nextProgress(one, { vm: 'b', op: 'export', percent: 5 });
    expect([...two.keys()]).toEqual(['a', 'b']);
    expect(nextProgress(two, { vm: 'a', op: 'clone', percent: 100 }).has('a')).toBe(false);
    expect(one.get('a')?.percent).toBe(40);
  });

  it("uploads a file under a name the daemon takes, whatever the browser's file was called", () => {
    expect(isoUploadName('debian-12.5.0-amd64-netinst.iso')).toBe('debian-12.5.0-amd64-netinst.iso');
    expect(isoUploadName('Win11 (1).ISO')).toBe('Win11-1-.iso');
    expect(isoUploadName('..hidden..iso')).toBe('hidden.iso');
    expect(isoUploadName('a,b/c.iso')).toBe('a-b-c.iso');
    expect(isoUploadName('(((.iso')).toBe('installer.iso');
  });
});
