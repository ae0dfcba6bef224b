import type { AccelDecision } from '../host/accel.js';
import type { HostFacts } from './vms.js';
import { FIRMWARE_DIRS, FirmwareError, readFirmwareDescriptors } from '../host/firmware.js';
import { readHost } from '../host/report.js';
import { planGraphics, type Intent, type Strategy } from '../guest/graphics-plan.js';
import { identifyIso, IsoError } from '../guest/iso.js';
import { loadOsDb, OsInfoError, resolveOs, searchOs, type OsDb, type OsEntry } from '../guest/osinfo.js';
import { guestFamily, planGuest, PlanError, type GuestPlan, type Overrides } from '../guest/plan.js';
import { randomMac, type VmSpecInput } from '../spec/schema.js';
import { findPasst } from '../net/passt.js';
import { UserError, userErrorsFrom } from './errors.js';
import { exists } from './files.js';

export interface PlanBody {
  name: string;
  os?: string;
  iso?: string;
  intent?: Intent;
  disks?: { path: string; readOnly?: boolean }[];
  boot?: VmSpecInput['boot'];
  /** Set when the create request carries cloud-init settings: the seed lands at this path. */
  cloudInitSeed?: string;
  overrides?: Overrides;
}

export interface PlanAnswer extends GuestPlan {
  os: { shortId: string; name: string; note?: string; identifiedFrom?: string };
  /** The graphics strategies this host allows for the guest, best first (the plan took the first usable). */
  graphics: Strategy[];
}

/** Where Fedora's virtio-win package puts the driver ISO; Debian has no package for it. */
const VIRTIO_WIN = '/usr/share/virtio-win/virtio-win.iso';

/** Gathers what the planner needs from this host (cached for the daemon's run) and runs it. */
export class GuestPlanner {
  private osdb?: Promise<OsDb>;

  constructor(
    private readonly accel: Promise<AccelDecision>,
    private readonly host: Pick<HostFacts, 'features' | 'localDisplay'>,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  private db(): Promise<OsDb> {
    const db = this.osdb ?? loadOsDb(this.env.PHYLLOME_OSINFO_DIR || undefined);
    if (!this.osdb) {
      // osinfo-db may be installed while the daemon runs: do not cache a failure.
      db.catch(() => (this.osdb = undefined));
      this.osdb = db;
    }
    return db;
  }

  async listOs(search?: string): Promise<{ version: string; entries: OsEntry[] }> {
    const db = await this.db().catch(osError);
    return { version: db.version, entries: searchOs(db, search) };
  }

  /** The OS on an installer ISO, as plan() would identify it. */
  async identify(file: string): Promise<{ shortId: string; name: string }> {
    const db = await this.db().catch(osError);
    const { entry } = (await identifyIso(db, file).catch(osError)).match;
    return { shortId: entry.shortId, name: entry.name };
  }

  async plan(body: PlanBody): Promise<PlanAnswer> {
    const db = await this.db().catch(osError);
    let os: OsEntry;
    let note: string | undefined;
    let identifiedFrom: string | undefined;
    if (body.iso && !(await exists(body.iso))) {
      throw new UserError(`iso: ${body.iso} does not exist or is not readable: check the path`);
    }
    if (body.os) {
      try {
        ({ entry: os, note } = resolveOs(db, body.os));
      } catch (e) {
        osError(e);
      }
    } else if (body.iso) {
      const found = await identifyIso(db, body.iso).catch(osError);
      os = found.match.entry;
      identifiedFrom = `volume id "${found.identity.volumeId}"`;
    } else {
      throw new UserError(
        'name an OS with --os ID (see "phyllome os list") or give its installer with --iso PATH',
      );
    }
    const intent = body.intent ?? 'desktop';
    const firmwareDirs = this.env.PHYLLOME_FIRMWARE_DIRS?.split(':') ?? FIRMWARE_DIRS;
    const virtioWin = this.env.PHYLLOME_VIRTIO_WIN ?? VIRTIO_WIN;
    const [report, features, accel, firmware, hasVirtioWin, passt] = await Promise.all([
      readHost('/'),
      this.host.features(),
      this.accel,
      readFirmwareDescriptors(firmwareDirs),
      exists(virtioWin),
      findPasst(),
    ]);
    // A named GPU may be the host's own display: single-GPU passthrough, with its caveats.
    const graphics = planGraphics(report, features, guestFamily(os), intent, {
      allowBootGpu: !!body.overrides?.gpu,
      localDisplay: this.host.localDisplay,
    });
    let plan: GuestPlan;
    try {
      plan = planGuest(
        {
          name: body.name,
          os,
          intent,
          ...(body.iso ? { iso: body.iso } : {}),
          ...(body.disks ? { disks: body.disks } : {}),
          ...(body.boot ? { boot: body.boot } : {}),
          ...(body.cloudInitSeed ? { cloudInitSeed: body.cloudInitSeed } : {}),
          mac: randomMac(),
          ...(body.overrides ? { overrides: body.overrides } : {}),
        },
        {
          accel: accel.accel,
          graphics,
          firmware,
          ...(hasVirtioWin ? { virtioWin } : {}),
          memoryBytes: report.memoryBytes,
          cpus: report.cpu.cpus,
          passt: !!passt,
        },
      );
    } catch (e) {
      if (e instanceof FirmwareError) {
        const searched = firmwareDirs === FIRMWARE_DIRS ? '' : ` (searched ${firmwareDirs.join(', ')})`;
        throw new UserError(`${(e as Error).message}${searched}`);
      }
      if (e instanceof PlanError) throw new UserError(e.message);
      throw e;
    }
    return {
      ...plan,
      os: {
        shortId: os.shortId,
        name: os.name,
        ...(note ? { note } : {}),
        ...(identifiedFrom ? { identifiedFrom } : {}),
      },
      graphics,
    };
  }
}

/** Unknown OSes, unreadable or unidentified ISOs and a missing osinfo-db are the user's to fix. */
const osError: (e: unknown) => never = userErrorsFrom(OsInfoError, IsoError);
