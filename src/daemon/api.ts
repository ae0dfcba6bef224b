import fastifySwagger from '@fastify/swagger';
import fastifyWebsocket from '@fastify/websocket';
import Fastify, { LogController } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  absPath,
  bootSpec,
  diskBus,
  diskFields,
  forwardSpec,
  netSpec,
  SpecError,
  vmSpec,
  pciAddress,
  vmSpecInputFields,
} from '../spec/schema.js';
import { NIC_MODELS } from '../spec/nics.js';
import type { GuestPlanner } from './planning.js';
import { BusyError } from './lock.js';
import { UserError } from './errors.js';
import type { SerialHub } from './serial.js';
import { keystoreError, type VmManager } from './vms.js';
import type { NetworkManager } from './networks.js';
import type { AccelDecision } from '../host/accel.js';
import type { QemuInfo } from '../host/qemu-binary.js';
import { VERSION } from '../version.js';
import net from 'node:net';
import path from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { createWebSocketStream } from 'ws';
import { BUNDLE_TYPE, PASSPHRASE_HEADER } from '../bundle/manifest.js';
import { hostFindings } from '../host/findings.js';
import { readHost } from '../host/report.js';
import { readStorage } from '../host/storage.js';
import { planGraphics, planSeats } from '../guest/graphics-plan.js';
import { Migrations } from './migrate.js';
import { migrationPeer } from './migrate-plan.js';
import { tcpRefusal, UiSessions, type TcpListener } from './ui-auth.js';
import { registerUi } from './ui.js';
import { StatsSampler } from './stats-sampler.js';
import { ISO_TYPE, IsoStore } from './isos.js';
import { isosDir, vmsDir } from './paths.js';

const errorBody = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

const vmInfo = z.object({
  name: z.string(),
  uuid: z.string(),
  state: z.enum(['stopped', 'starting', 'running', 'paused', 'stopping']),
  reason: z.string().optional(),
  pid: z.number().optional(),
  accel: z.string().optional(),
  warnings: z.array(z.string()),
  nics: z.array(
    z.object({
      index: z.number(),
      model: z.string(),
      mac: z.string(),
      network: z.string(),
      reason: z.string().optional(),
      forwards: z.array(z.string()),
      ips: z.array(z.string()),
      ipsFrom: z.enum(['guest agent', 'DHCP leases']).optional(),
    }),
  ),
  spec: vmSpec,
});

const nullableNumber = z.number().nullable();
const statsSample = z.object({
  vm: z.string(),
  at: z.number().describe('milliseconds since the epoch'),
  intervalMs: nullableNumber.describe('since the previous reading; null for the first'),
  cpu: z.object({
    percent: nullableNumber.describe('CPU time of the QEMU process, in percent of one host core'),
    hostCores: z.number(),
  }),
  memory: z.object({
    rssBytes: z.number().describe("the QEMU process's resident memory"),
    configuredBytes: z.number().describe("the guest's memory"),
    balloonBytes: nullableNumber.describe("the balloon's current size, where the VM has one"),
  }),
  disk: z.object({
    readBytes: z.number(),
    writeBytes: z.number(),
    readBps: nullableNumber,
    writeBps: nullableNumber,
  }),
  net: z
    .object({
      rxBytes: nullableNumber,
      txBytes: nullableNumber,
      rxBps: nullableNumber,
      txBps: nullableNumber,
    })
    .describe('totals of the NICs that can be counted (tap, macvtap); null when none can'),
  nics: z.array(
    z.object({
      index: z.number(),
      rxBytes: nullableNumber,
      txBytes: nullableNumber,
      rxBps: nullableNumber,
      txBps: nullableNumber,
      note: z.string().optional(),
    }),
  ),
});

/** Stop also says whether the guest had to be forced off. */
const actionResult = vmInfo.extend({ forced: z.boolean().optional() });

const cloudInitBody = z.strictObject({
  user: z.string(),
  passwordHash: z.string().optional(),
  sshKeys: z.array(z.string()).optional(),
  hostname: z.string().optional(),
});

/**
 * Create takes what a user chooses: a disk's format may be left out (it is read from the file), a disk
 * given by size is made new, and cloud-init settings become a seed ISO.
 */
const createBody = vmSpecInputFields.extend({
  boot: bootSpec.optional(),
  disks: z
    .array(
      z.union([
        diskFields.partial({ format: true }),
        z.strictObject({
          size: z.union([z.string(), z.number()]),
          bus: diskBus.optional(),
          encrypt: z.boolean().optional().describe('LUKS-encrypted with the VM key (default true)'),
        }),
      ]),
    )
    .max(16)
    .optional(),
  cloudInit: cloudInitBody.optional(),
});

const intent = z.enum(['desktop', 'gaming', 'server']);

const planBody = z.strictObject({
  name: z.string(),
  os: z.string().optional().describe('osinfo-db short id, e.g. win11, fedora37'),
  iso: absPath.optional().describe('installer ISO: the OS is identified from its volume descriptor'),
  intent: intent.optional(),
  disks: z.array(z.strictObject({ path: absPath, readOnly: z.boolean().optional() })).optional(),
  boot: bootSpec.optional(),
  cloudInit: z.boolean().optional().describe('attach the cloud-init seed that create will make'),
  overrides: z
    .strictObject({
      memory: z.string().optional(),
      cpus: z.number().int().min(1).max(256).optional(),
      diskSize: z.string().optional(),
      machine: z.enum(['q35', 'pc']).optional(),
      firmware: z.enum(['bios', 'uefi', 'uefi-secure']).optional(),
      tpm: z.boolean().optional(),
      diskBus: diskBus.optional(),
      nic: z.enum([...NIC_MODELS, 'none']).optional(),
      input: z.enum(['ps2', 'usb-tablet', 'virtio-tablet']).optional(),
      sound: z.enum(['none', 'ich9-intel-hda', 'ac97']).optional(),
      graphics: z.enum(['none', 'vga', 'virtio-vga', 'virtio-vga-gl', 'virtio-gpu-gl-pci']).optional(),
      gpu: pciAddress.optional().describe('hand this host GPU to the guest (see the host check)'),
    })
    .optional(),
});

const mediaBody = z.strictObject({
  path: absPath.optional().describe('the ISO to insert; leave out to eject'),
  drive: z.number().int().min(0).max(3).optional(),
});

const nameParams = z.object({ name: z.string() });
const stopBody = z
  .object({
    force: z.boolean().optional(),
    timeout: z.number().int().min(0).max(3600).optional().describe('seconds to wait for the guest'),
  })
  .optional();

const errors = { 400: errorBody, 404: errorBody, 409: errorBody };

export interface ApiDeps {
  manager: VmManager;
  networks: NetworkManager;
  planner: GuestPlanner;
  qemu: QemuInfo;
  accel: Promise<AccelDecision>;
  logger: Logger;
  /** Bearer token required on TCP connections; Unix socket peers are trusted by file mode. */
  token?: string;
  /** The loopback TCP listener, if any: browsers log in there (ui-auth.ts). */
  listener?: TcpListener;
  /** The built web UI, served on the TCP listener. */
  webRoot?: string;
}

/** A thin layer that only translates HTTP requests into VmManager calls, like Firecracker's API. */
export async function buildApi(deps: ApiDeps) {
  const { manager, networks } = deps;
  const app = Fastify({
    loggerInstance: deps.logger,
    logController: new LogController({ disableRequestLogging: true }),
  });
  app.setValidatorCompiler(validatorCompiler);
  // Responses are our own objects; plain JSON keeps the schemas for documentation only.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  await app.register(fastifySwagger, {
    openapi: { info: { title: 'phyllomed', description: 'Phyllome VM manager API', version: VERSION } },
    transform: jsonSchemaTransform,
  });
  await app.register(fastifyWebsocket);

  const sessions = new UiSessions();
  app.addHook('onRequest', async (request, reply) => {
    const overTcp = request.raw.socket.remoteAddress !== undefined;
    const refusal =
      overTcp &&
      tcpRefusal(
        { method: request.method, headers: request.headers, public: !!request.routeOptions.config?.public },
        // A TCP request with no listener known cannot be told from a forged one: refused.
        deps.listener ?? { host: '', port: 0 },
        deps.token,
        sessions,
      );
    if (refusal) {
      await reply.code(refusal.status).send({ error: { code: refusal.code, message: refusal.message } });
    }
  });
  registerUi(app, { sessions, listener: deps.listener, webRoot: deps.webRoot });

  app.setErrorHandler(async (error, _request, reply) => {
    if (hasZodFastifySchemaValidationErrors(error)) {
      const problems = error.validation.map((v) => {
        const where = v.instancePath.replace(/^\//, '').replaceAll('/', '.');
        return where ? `${where}: ${v.message}` : (v.message ?? 'invalid');
      });
      return reply.code(400).send({ error: { code: 'invalid-spec', message: problems.join('; ') } });
    }
    if (error instanceof SpecError) {
      return reply.code(400).send({ error: { code: 'invalid-spec', message: error.message } });
    }
    if (error instanceof UserError) {
      return reply.code(error.status).send({ error: { code: error.code, message: error.message } });
    }
    if (error instanceof BusyError) {
      return reply.code(409).send({ error: { code: 'busy', message: error.message } });
    }
    const e = error as Error & { statusCode?: number };
    if (e.statusCode && e.statusCode < 500) {
      return reply.code(e.statusCode).send({ error: { code: 'bad-request', message: e.message } });
    }
    deps.logger.error({ err: e }, 'request failed');
    return reply.code(500).send({ error: { code: 'internal', message: e.message } });
  });

  const api = app.withTypeProvider<ZodTypeProvider>();

  api.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  api.get(
    '/v1/host',
    {
      schema: {
        summary: 'What phyllomed runs on: QEMU and the accelerator',
        response: {
          200: z.object({
            version: z.string(),
            qemu: z.object({
              binary: z.string(),
              version: z.string(),
              caps: z.object({ sandbox: z.boolean() }),
            }),
            accel: z.enum(['kvm', 'tcg']),
            warnings: z.array(z.string()),
          }),
        },
      },
    },
    async () => {
      const decision = await deps.accel;
      return {
        version: VERSION,
        qemu: deps.qemu,
        accel: decision.accel,
        warnings: decision.warning ? [decision.warning] : [],
      };
    },
  );

  // The host check reads under `root` (a recorded host replays like a live one); live probes run only
  // for the real root and are cached for the daemon's run.
  api.get(
    '/v1/host/check',
    {
      schema: {
        summary: 'Host check: findings, and ranked graphics plans for each guest family',
        querystring: z.object({
          root: z.string().optional(),
          intent: z.enum(['desktop', 'gaming', 'server']).default('desktop'),
          allowBootGpu: z
            .stringbool()
            .default(false)
            .describe("offer the host's boot or only GPU too (single-GPU passthrough, with its caveats)"),
        }),
      },
    },
    async (request) => {
      const root = request.query.root ?? '/';
      const { allowBootGpu } = request.query;
      if (!path.isAbsolute(root))
        throw new UserError('root must be an absolute path, like /srv/recorded-host');
      const report = await readHost(root);
      const live = root === '/';
      const qemu = await manager.host.features();
      const localDisplay = live ? manager.host.localDisplay : undefined;
      const findings = hostFindings(
        report,
        live
          ? {
              accel: await deps.accel,
              qemu,
              storage: await readStorage(vmsDir(manager.layout)),
              localDisplay: localDisplay ?? false,
            }
          : {},
      );
      const plans = Object.fromEntries(
        (['linux', 'windows', 'macos', 'bsd'] as const).map((os) => [
          os,
          planGraphics(report, qemu, os, request.query.intent, { allowBootGpu, localDisplay }),
        ]),
      );
      return { report, qemu, findings, plans, seats: planSeats(report, { allowBootGpu }) };
    },
  );

  api.get(
    '/v1/os',
    {
      schema: {
        summary: "Operating systems osinfo-db knows (the planner's source)",
        querystring: z.object({ search: z.string().optional() }),
      },
    },
    async (request) => {
      const { version, entries } = await deps.planner.listOs(request.query.search);
      return {
        version,
        entries: entries.map((e) => ({
          shortId: e.shortId,
          name: e.name,
          family: e.family,
          distro: e.distro,
          version: e.version,
          releaseDate: e.releaseDate,
          eolDate: e.eolDate,
        })),
      };
    },
  );

  api.post(
    '/v1/plan',
    {
      schema: {
        summary: 'Plan a VM for an OS or installer ISO on this host: a spec, and each choice with its reason',
        body: planBody,
      },
    },
    async (request) => {
      const { cloudInit, ...body } = request.body;
      return deps.planner.plan({
        ...body,
        ...(cloudInit ? { cloudInitSeed: manager.cloudInitSeed(body.name) } : {}),
      });
    },
  );

  const isos = new IsoStore(
    isosDir(manager.layout),
    (file) => deps.planner.identify(file),
    (file) => manager.usersOfFile(file),
  );
  const isoFile = z.object({
    name: z.string(),
    path: z.string(),
    size: z.number(),
    os: z.object({ shortId: z.string(), name: z.string() }).optional(),
    problem: z.string().optional().describe('why no OS was identified'),
  });
  const isoParams = z.object({ name: z.string() });
  api.get(
    '/v1/isos',
    {
      schema: {
        summary: 'Uploaded installer ISOs, each with the OS identified from its volume descriptor',
        response: { 200: z.object({ isos: z.array(isoFile) }) },
      },
    },
    async () => ({ isos: await isos.list() }),
  );
  // An ISO is streamed to disk as it arrives, never held in memory.
  app.addContentTypeParser(ISO_TYPE, (_request, payload, done) => done(null, payload));
  api.put(
    '/v1/isos/:name',
    {
      schema: {
        summary: `Upload an installer ISO (body: ${ISO_TYPE}) under PHYLLOME_HOME/isos`,
        params: isoParams,
        response: { 201: isoFile, ...errors },
      },
    },
    async (request, reply) => {
      if (request.headers['content-type']?.split(';')[0]?.trim() !== ISO_TYPE)
        throw new UserError(`send the ISO's bytes as the body with content-type ${ISO_TYPE}`);
      return reply.code(201).send(await isos.upload(request.params.name, request.body as Readable));
    },
  );
  api.delete(
    '/v1/isos/:name',
    {
      schema: {
        summary: 'Delete an uploaded ISO',
        params: isoParams,
        response: { 204: z.null(), ...errors },
      },
    },
    async (request, reply) => {
      await isos.delete(request.params.name);
      return reply.code(204).send(null);
    },
  );

  const keystoreState = z.object({ state: z.enum(['absent', 'locked', 'unlocked', 'created']) });
  api.get(
    '/v1/keystore',
    {
      schema: {
        summary: 'Whether the disk keystore exists and is unlocked',
        response: { 200: keystoreState },
      },
    },
    async () => ({ state: await manager.keystoreState() }),
  );
  api.post(
    '/v1/keystore/unlock',
    {
      schema: {
        summary: 'Unlock the keystore with the administrator passphrase (creates it on first use)',
        body: z.strictObject({ passphrase: z.string().min(1) }),
        response: { 200: keystoreState, ...errors },
      },
    },
    async (request) => {
      const state = await manager.keystore.unlock(request.body.passphrase).catch(keystoreError);
      await manager.keystoreUnlocked();
      return { state };
    },
  );

  const storageState = z.object({
    path: z.string(),
    fsType: z.string().optional(),
    kernelSupport: z.boolean(),
    fscrypt: z.boolean(),
    locked: z.boolean().describe('encrypted, and its key not unlocked yet: run "phyllome unlock"'),
  });
  api.get(
    '/v1/storage',
    {
      schema: {
        summary: 'Where VM state lives, and whether fscrypt encrypts it',
        response: { 200: storageState },
      },
    },
    async () => manager.storageStatus(),
  );
  api.post(
    '/v1/storage/encrypt',
    {
      schema: {
        summary:
          'Put the VM folder under fscrypt (every VM stopped; its key kept in the keystore); every VM is moved into it',
        response: { 200: z.object({ path: z.string(), moved: z.array(z.string()) }), ...errors },
      },
    },
    async () => manager.encryptStorage(),
  );
  api.post(
    '/v1/keystore/lock',
    {
      schema: {
        summary: 'Forget the key-encryption key: VMs already running keep running',
        response: { 200: keystoreState },
      },
    },
    async () => {
      manager.keystore.lock();
      return { state: await manager.keystoreState() };
    },
  );

  api.get('/v1/vms', { schema: { summary: 'List VMs', response: { 200: z.array(vmInfo) } } }, () =>
    manager.list(),
  );

  api.post(
    '/v1/vms',
    { schema: { summary: 'Define a VM', body: createBody, response: { 201: vmInfo, ...errors } } },
    async (request, reply) => reply.code(201).send(await manager.create(request.body)),
  );

  api.get(
    '/v1/vms/:name',
    { schema: { summary: 'One VM', params: nameParams, response: { 200: vmInfo, ...errors } } },
    (request) => manager.status(request.params.name),
  );

  api.delete(
    '/v1/vms/:name',
    {
      schema: {
        summary: 'Delete a VM (refused while it runs unless force)',
        params: nameParams,
        querystring: z.object({ force: z.enum(['true', 'false']).optional() }),
        response: { 204: z.null(), ...errors },
      },
    },
    async (request, reply) => {
      await manager.delete(request.params.name, { force: request.query.force === 'true' });
      return reply.code(204).send(null);
    },
  );

  const action = (
    verb: string,
    summary: string,
    run: (name: string, body: z.infer<typeof stopBody>) => Promise<z.output<typeof actionResult>>,
  ) =>
    api.post(
      `/v1/vms/:name/${verb}`,
      { schema: { summary, params: nameParams, body: stopBody, response: { 200: actionResult, ...errors } } },
      (request) => run(request.params.name, request.body),
    );
  action('start', 'Start a VM', (name) => manager.start(name));
  action('stop', 'ACPI shutdown, forced after the timeout', (name, b) =>
    manager.stop(name, { force: b?.force ?? false, timeoutS: b?.timeout ?? 60 }),
  );
  action('force-stop', 'Power off at once', (name) => manager.stop(name, { force: true }));
  action('pause', 'Pause the vCPUs', (name) => manager.pause(name));
  action('resume', 'Resume the vCPUs', (name) => manager.resume(name));
  action('restart', 'Stop (ACPI, then forced) and start again', (name, b) =>
    manager.restart(name, { timeoutS: b?.timeout ?? 60 }),
  );

  const diskParams = z.object({ name: z.string(), id: z.string() });
  api.get(
    '/v1/vms/:name/disks',
    { schema: { summary: "A VM's disks with their sizes", params: nameParams } },
    (request) => manager.diskList(request.params.name),
  );
  api.post(
    '/v1/vms/:name/disks',
    {
      schema: {
        summary:
          'Add a disk: a new qcow2 (encrypted unless encrypt is false) or an existing image; hot-plugged while running',
        params: nameParams,
        body: z.strictObject({
          size: z.string().optional(),
          path: absPath.optional(),
          bus: diskBus.optional(),
          encrypt: z.boolean().optional(),
          readOnly: z.boolean().optional(),
        }),
        response: { 200: vmInfo, ...errors },
      },
    },
    (request) => manager.diskAdd(request.params.name, request.body),
  );
  api.delete(
    '/v1/vms/:name/disks/:id',
    {
      schema: {
        summary: 'Detach a disk (its image stays); unplugged live while running',
        params: diskParams,
        response: { 200: vmInfo, ...errors },
      },
    },
    (request) => manager.diskRemove(request.params.name, request.params.id),
  );
  api.post(
    '/v1/vms/:name/nics',
    {
      schema: {
        summary:
          'Add a NIC to a stopped VM: user-mode unless net says otherwise; the model of its first NIC and a new MAC unless given',
        params: nameParams,
        body: z.strictObject({
          model: z.enum(NIC_MODELS).optional(),
          mac: z.string().optional(),
          net: netSpec.optional(),
        }),
        response: { 200: vmInfo, ...errors },
      },
    },
    (request) => manager.nicAdd(request.params.name, request.body),
  );
  api.delete(
    '/v1/vms/:name/nics/:index',
    {
      schema: {
        summary: 'Remove a NIC of a stopped VM (the NICs after it move up)',
        params: nameParams.extend({ index: z.coerce.number().int().min(0) }),
        response: { 200: vmInfo, ...errors },
      },
    },
    (request) => manager.nicRemove(request.params.name, request.params.index),
  );
  api.post(
    '/v1/vms/:name/disks/:id/resize',
    {
      schema: {
        summary: 'Grow a disk (live while running)',
        params: diskParams,
        body: z.strictObject({ size: z.string() }),
        response: { 200: vmInfo, ...errors },
      },
    },
    (request) => manager.diskResize(request.params.name, request.params.id, request.body.size),
  );

  const snapParams = z.object({ name: z.string(), snap: z.string() });
  api.get(
    '/v1/vms/:name/snapshots',
    {
      schema: {
        summary: 'Snapshots (disks, UEFI variables and TPM state as one), as a tree',
        params: nameParams,
      },
    },
    (request) => manager.snapshotList(request.params.name),
  );
  api.post(
    '/v1/vms/:name/snapshots',
    {
      schema: {
        summary: 'Take a snapshot (while running: the vCPUs pause for a moment; RAM is not kept)',
        params: nameParams,
        body: z.strictObject({ name: z.string() }),
      },
    },
    (request) => manager.snapshotCreate(request.params.name, request.body.name),
  );
  api.post(
    '/v1/vms/:name/snapshots/:snap/revert',
    {
      schema: {
        summary: 'Revert a stopped VM to a snapshot',
        params: snapParams,
        response: { 200: vmInfo, ...errors },
      },
    },
    (request) => manager.snapshotRevert(request.params.name, request.params.snap),
  );
  api.delete(
    '/v1/vms/:name/snapshots/:snap',
    { schema: { summary: 'Delete a snapshot', params: snapParams, response: { 204: z.null(), ...errors } } },
    async (request, reply) => {
      await manager.snapshotDelete(request.params.name, request.params.snap);
      return reply.code(204).send(null);
    },
  );

  api.post(
    '/v1/vms/:name/clone',
    {
      schema: {
        summary: 'Clone a stopped VM (progress as events on /v1/events)',
        params: nameParams,
        body: z.strictObject({ name: z.string(), linked: z.boolean().optional() }),
        response: { 201: vmInfo, ...errors },
      },
    },
    async (request, reply) =>
      reply.code(201).send(
        await manager.clone(request.params.name, request.body.name, {
          linked: request.body.linked ?? false,
        }),
      ),
  );

  api.post(
    '/v1/vms/:name/export',
    {
      schema: {
        summary:
          'Export a VM as a .phyllome bundle: streamed in the answer, or with `file` (Unix socket only) written by the daemon into that new file on its host, answering {vm, file, bytes} (progress as events on /v1/events)',
        params: nameParams,
        body: z
          .strictObject({
            passphrase: z.string().optional(),
            file: z.string().optional().describe("an absolute path on the daemon's host; must not exist"),
          })
          .optional(),
      },
    },
    async (request, reply) => {
      const { passphrase, file } = request.body ?? {};
      const opts = passphrase === undefined ? {} : { passphrase };
      if (file === undefined) {
        const stream = await manager.exportVm(request.params.name, opts);
        // A browser saves it as a file (the web UI posts a form, so the download streams to disk).
        return reply
          .type(BUNDLE_TYPE)
          .header('content-disposition', `attachment; filename="${request.params.name}.phyllome"`)
          .send(stream);
      }
      // Writing a file on the daemon's host is for local clients (the CLI), not for remote ones.
      if (request.raw.socket.remoteAddress !== undefined) {
        throw new UserError('`file` is only accepted over the Unix socket: stream the bundle instead');
      }
      // A client that goes away (Ctrl-C) stops the export; its part file is removed.
      const gone = new AbortController();
      reply.raw.once('close', () => {
        if (!reply.raw.writableFinished) gone.abort();
      });
      const bytes = await manager.exportVmToFile(request.params.name, file, { ...opts, signal: gone.signal });
      return { vm: request.params.name, file, bytes };
    },
  );

  // The web UI's export is a plain form post, so that the browser streams the bundle to a file.
  // Empty fields count as not given (an unencrypted VM's empty passphrase field).
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: 1 << 16 },
    (_request, body, done) =>
      done(null, Object.fromEntries([...new URLSearchParams(body as string)].filter(([, v]) => v !== ''))),
  );
  // A bundle is streamed to disk as it arrives, never held in memory.
  app.addContentTypeParser(BUNDLE_TYPE, (_request, payload, done) => done(null, payload));
  api.post(
    '/v1/import',
    {
      schema: {
        summary: `Import a .phyllome bundle (body: ${BUNDLE_TYPE}); the passphrase, if any, base64 in ${PASSPHRASE_HEADER}`,
        querystring: z.strictObject({ name: z.string().optional() }),
        response: {
          201: z.object({ vm: vmInfo, changes: z.array(z.object({ what: z.string(), why: z.string() })) }),
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const header = request.headers[PASSPHRASE_HEADER];
      const size = Number(request.headers['content-length']);
      const result = await manager.importVm(request.body as Readable, {
        ...(request.query.name ? { name: request.query.name } : {}),
        ...(typeof header === 'string' ? { passphrase: Buffer.from(header, 'base64').toString() } : {}),
        ...(size > 0 ? { size } : {}),
      });
      return reply.code(201).send(result);
    },
  );

  api.get(
    '/v1/vms/:name/media',
    {
      schema: {
        summary: 'CD-ROM drives and their media (live from QEMU while running)',
        params: nameParams,
        response: {
          200: z.object({
            drives: z.array(
              z.object({
                drive: z.number(),
                role: z.string(),
                path: z.string().optional(),
                live: z.boolean().optional(),
              }),
            ),
          }),
          ...errors,
        },
      },
    },
    (request) => manager.mediaList(request.params.name),
  );

  api.post(
    '/v1/vms/:name/media',
    {
      schema: {
        summary: 'Insert (path) or eject (no path) a CD-ROM medium, live while running',
        params: nameParams,
        body: mediaBody,
        response: { 200: vmInfo, ...errors },
      },
    },
    (request) => manager.media(request.params.name, request.body),
  );

  const forwardChange = z.object({ vm: vmInfo, applied: z.enum(['now', 'next-start']) });
  const nicQuery = z.object({ nic: z.coerce.number().int().min(0).optional() });
  api.get(
    '/v1/vms/:name/forwards',
    { schema: { summary: "A VM's port forwards, per user-mode NIC", params: nameParams } },
    async (request) => ({
      forwards: (await manager.info(request.params.name)).spec.nics.flatMap((n, nic) =>
        n.net.type === 'user' ? n.net.forwards.map((f) => ({ nic, ...f })) : [],
      ),
    }),
  );
  api.post(
    '/v1/vms/:name/forwards',
    {
      schema: {
        summary:
          'Forward a host port to the guest: live on QEMU user networking, from the next start on passt',
        params: nameParams,
        querystring: nicQuery,
        body: forwardSpec,
        response: { 200: forwardChange, ...errors },
      },
    },
    (request) => manager.forwardAdd(request.params.name, request.body, request.query.nic),
  );
  api.delete(
    '/v1/vms/:name/forwards/:proto/:hostPort',
    {
      schema: {
        summary: 'Remove a port forward',
        params: z.object({
          name: z.string(),
          proto: z.enum(['tcp', 'udp']),
          hostPort: z.coerce.number().int(),
        }),
        querystring: nicQuery,
        response: { 200: forwardChange, ...errors },
      },
    },
    (request) =>
      manager.forwardRemove(
        request.params.name,
        { proto: request.params.proto, hostPort: request.params.hostPort },
        request.query.nic,
      ),
  );
  api.post(
    '/v1/vms/:name/host-loopback',
    {
      schema: {
        summary:
          "Let a user-mode guest reach the host's loopback services (off by default), from the next start",
        params: nameParams,
        querystring: nicQuery,
        body: z.strictObject({ enabled: z.boolean() }),
        response: { 200: forwardChange, ...errors },
      },
    },
    (request) => manager.hostLoopback(request.params.name, request.body.enabled, request.query.nic),
  );

  api.patch(
    '/v1/vms/:name',
    {
      schema: {
        summary:
          "Change a stopped VM's CPUs, memory or window on the host's screen (checked like a new spec)",
        params: nameParams,
        body: z.strictObject({
          cpus: z.number().optional(),
          memory: z.string().optional(),
          window: z
            .boolean()
            .optional()
            .describe(
              "also show the screen in a window on the host's own display (else the web console only)",
            ),
        }),
        response: { 200: vmInfo, ...errors },
      },
    },
    (request) => manager.changeSettings(request.params.name, request.body),
  );

  const migrations = new Migrations(manager, deps.logger);
  // In the background: asking a destination can take a while, and each VM's lock orders the rest.
  void migrations
    .recover()
    .catch((e: Error) =>
      deps.logger.error({ err: e.message }, 'cannot look for migrations a crash cut short'),
    );
  api.post(
    '/v1/vms/:name/migrate',
    {
      schema: {
        summary:
          'Live-migrate a VM to another phyllomed, disks included; removed here once it runs there (progress as events)',
        params: nameParams,
        body: z.strictObject({
          to: z.string().describe("the destination's API address, like 127.0.0.1:8470 or 192.168.1.20:8470"),
          token: z.string().min(1).describe("the destination's API token"),
          fingerprint: z
            .string()
            .optional()
            .describe("the SHA-256 fingerprint of the destination's certificate: required beyond loopback"),
          bandwidth: z.number().int().positive().optional().describe('bytes/s, for each disk and the RAM'),
        }),
        response: { 200: vmInfo.describe('the VM as it runs at the destination'), ...errors },
      },
    },
    async (request) => {
      const { to, token, fingerprint, bandwidth } = request.body;
      let peer;
      try {
        peer = migrationPeer(to, fingerprint);
      } catch (e) {
        throw new UserError((e as Error).message);
      }
      return migrations.send(request.params.name, { ...peer, token }, bandwidth);
    },
  );
  api.post(
    '/v1/migrations/incoming',
    {
      schema: {
        summary: 'Daemon to daemon: receive a live migration (makes the VM, answers where to send it)',
        body: z.strictObject({ spec: z.unknown(), sizes: z.record(z.string(), z.number()), psk: z.string() }),
      },
    },
    async (request, reply) =>
      reply
        .code(201)
        // The streams listen where this call came in (TCP), or on loopback for the Unix socket.
        .send(await migrations.receive(request.body, request.raw.socket.localAddress ?? '127.0.0.1')),
  );
  api.post(
    '/v1/migrations/incoming/:name/finish',
    {
      schema: {
        summary: 'Daemon to daemon: everything is sent; run the migrated VM here (or keep it paused)',
        params: nameParams,
        body: z.strictObject({ run: z.boolean() }),
        response: { 200: vmInfo, ...errors },
      },
    },
    (request) => migrations.finish(request.params.name, request.body.run),
  );
  api.delete(
    '/v1/migrations/incoming/:name',
    {
      schema: {
        summary: 'Daemon to daemon: abort an incoming migration, removing all it made',
        params: nameParams,
        response: { 204: z.null(), ...errors },
      },
    },
    async (request, reply) => {
      await migrations.abort(request.params.name);
      return reply.code(204).send(null);
    },
  );

  api.get('/v1/networks', { schema: { summary: 'Private networks' } }, () => networks.list());
  api.get(
    '/v1/networks/:name',
    { schema: { summary: 'A private network, its VMs and DHCP leases', params: nameParams } },
    (request) => networks.info(request.params.name),
  );
  api.post(
    '/v1/networks',
    {
      schema: {
        summary: 'Create a private network: bridge, DHCP and optional NAT (needs root)',
        body: z.strictObject({
          name: z.string(),
          subnet: z.string().optional().describe('IPv4 network like 10.77.0.0/24; a free one by default'),
          nat: z.boolean().optional().describe('masquerade to the outside (default false)'),
        }),
      },
    },
    async (request, reply) => reply.code(201).send(await networks.create(request.body)),
  );
  api.delete(
    '/v1/networks/:name',
    {
      schema: { summary: 'Delete a private network (not while a running VM uses it)', params: nameParams },
    },
    async (request, reply) => {
      await networks.delete(request.params.name);
      return reply.code(204).send(null);
    },
  );

  api.get(
    '/v1/events',
    { websocket: true, schema: { summary: 'VM events as JSON messages (WebSocket)' } },
    (socket) => {
      const send = (e: unknown) => socket.send(JSON.stringify(e));
      manager.on('event', send);
      socket.on('close', () => manager.off('event', send));
    },
  );

  api.get(
    '/v1/vms/:name/console',
    {
      websocket: true,
      schema: {
        summary: 'Serial console (WebSocket, binary frames); recent output first',
        params: nameParams,
      },
    },
    (socket, request) => {
      let hub: SerialHub;
      try {
        hub = manager.console(request.params.name);
      } catch (e) {
        socket.close(4000, (e as Error).message.slice(0, 120));
        return;
      }
      if (hub.recent.length) socket.send(hub.recent);
      const forward = (d: Buffer) => socket.send(d);
      const end = () => socket.close();
      hub.on('data', forward);
      hub.once('close', end);
      socket.on('message', (d: Buffer) => hub.write(d));
      socket.on('close', () => {
        hub.off('data', forward);
        hub.off('close', end);
      });
    },
  );

  api.get(
    '/v1/vms/:name/vnc',
    {
      websocket: true,
      schema: {
        summary: "The VM's screen: its VNC (RFB) stream as WebSocket binary frames, for noVNC",
        params: nameParams,
      },
    },
    (socket, request) => {
      let vncPath: string;
      try {
        vncPath = manager.vncSocket(request.params.name);
      } catch (e) {
        socket.close(4000, (e as Error).message.slice(0, 120));
        return;
      }
      // QEMU's VNC listens on a Unix socket only: this bridge, behind the API's login, is the one way in.
      const ws = createWebSocketStream(socket);
      pipeline(ws, net.connect(vncPath), ws, () => socket.terminate());
    },
  );

  // One route for both: a plain GET answers the latest sample, a WebSocket streams them.
  const sampler = new StatsSampler((name) => manager.statsTarget(name));
  api.route({
    method: 'GET',
    url: '/v1/vms/:name/stats',
    schema: {
      summary:
        'Live statistics of a running VM: the latest sample (about a second to take when nobody watches); as a WebSocket, one JSON sample a second, taken only while watched',
      params: nameParams,
      response: { 200: statsSample, ...errors },
    },
    handler: (request) => sampler.latest(request.params.name),
    wsHandler: (socket, request) => {
      let unwatch: () => void;
      try {
        unwatch = sampler.watch(request.params.name, {
          sample: (s) => socket.send(JSON.stringify(s)),
          end: (why) => socket.close(4000, why.slice(0, 120)),
        });
      } catch (e) {
        socket.close(4000, (e as Error).message.slice(0, 120));
        return;
      }
      socket.on('close', () => unwatch());
    },
  });

  return app;
}
