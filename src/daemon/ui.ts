import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { UserError } from './errors.js';
import {
  cookieValue,
  DEFAULT_UI_PORT,
  sessionCookie,
  sessionCookieHeader,
  SESSION_TTL_MS,
  type TcpListener,
  type UiSessions,
} from './ui-auth.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Served over TCP without a login (the hook in api.ts still checks Host and Origin). */
    public?: boolean;
  }
}

export interface UiDeps {
  sessions: UiSessions;
  /** Where the daemon listens on TCP; the UI is served there only. */
  listener?: TcpListener;
  /** The built web UI (dist/web); its absence leaves only the API. */
  webRoot?: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** Browser login (one-time code → session cookie) and the web UI's static files. */
export function registerUi(
  app: FastifyInstance<Server, IncomingMessage, ServerResponse, Logger>,
  deps: UiDeps,
): void {
  const api = app.withTypeProvider<ZodTypeProvider>();
  const { sessions, listener } = deps;

  api.post(
    '/v1/ui/login-code',
    {
      schema: {
        summary: 'A one-time code and the URL that logs a browser in with it (what `phyllome ui` prints)',
        response: { 200: z.object({ url: z.string(), expiresAt: z.string() }) },
      },
    },
    async () => {
      if (!listener) {
        throw new UserError(
          `phyllomed serves the web UI on its TCP listener only, and has none: run it as "phyllome daemon --listen" (127.0.0.1:${DEFAULT_UI_PORT})`,
          409,
          'not-listening',
        );
      }
      const { code, expiresAt } = sessions.issueCode();
      const host = listener.host.includes(':') ? `[${listener.host}]` : listener.host;
      // In the fragment: browsers never send it to a server, so no log or Referer carries the code.
      return {
        url: `${listener.tls ? 'https' : 'http'}://${host}:${listener.port}/login#${code}`,
        expiresAt: new Date(expiresAt).toISOString(),
      };
    },
  );

  api.post(
    '/v1/ui/login',
    {
      config: { public: true },
      schema: {
        summary: 'Trade a one-time login code for a session cookie (HttpOnly, SameSite=Strict)',
        body: z.strictObject({ code: z.string().min(1).max(200) }),
        response: {
          200: z.object({ expiresAt: z.string() }),
          401: z.object({ error: z.object({ code: z.string(), message: z.string() }) }),
        },
      },
    },
    async (request, reply) => {
      const got = listener && sessions.redeem(request.body.code);
      if (!listener || !got) {
        return reply.code(401).send({
          error: {
            code: 'bad-login-code',
            message: 'this login code is wrong, used or expired: run "phyllome ui" for a new one',
          },
        });
      }
      reply.header('set-cookie', sessionCookieHeader(listener, got.session, SESSION_TTL_MS / 1000));
      return { expiresAt: new Date(got.expiresAt).toISOString() };
    },
  );

  api.post('/v1/ui/logout', { schema: { summary: "End this browser's session" } }, async (request, reply) => {
    if (listener) {
      const name = sessionCookie(listener.port);
      const session = cookieValue(request.headers.cookie, name);
      if (session) sessions.end(session);
      reply.header('set-cookie', sessionCookieHeader(listener, '', 0));
    }
    return reply.code(204).send(null);
  });

  const webRoot = deps.webRoot;
  if (!webRoot) return;
  const send = async (file: string, immutable: boolean, reply: FastifyReply) => {
    let body: Buffer;
    try {
      body = await readFile(path.join(webRoot, file));
    } catch {
      return reply.code(404).send({ error: { code: 'not-found', message: `no such file: ${file}` } });
    }
    return (
      reply
        .type(TYPES[path.extname(file)] ?? 'application/octet-stream')
        // Vite names assets by content hash: they never change. The page itself is always asked for again.
        .header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
        .header('x-content-type-options', 'nosniff')
        .header(
          'content-security-policy',
          "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        )
        .header('x-frame-options', 'DENY')
        .send(body)
    );
  };
  const page = { config: { public: true }, schema: { hide: true } };
  // The page's own routes (web/src/App.tsx), all the one page.
  for (const route of ['/', '/login', '/vms/:name', '/host', '/create', '/networks'])
    api.get(route, page, (_req, reply) => send('index.html', false, reply));
  api.get(
    '/assets/:file',
    { ...page, schema: { ...page.schema, params: z.object({ file: z.string() }) } },
    (req, reply) =>
      // One level, no separators: nothing outside the assets folder can be named.
      /^[\w.-]+$/.test(req.params.file) && !req.params.file.startsWith('.')
        ? send(`assets/${req.params.file}`, true, reply)
        : reply.code(404).send({ error: { code: 'not-found', message: 'no such file' } }),
  );
}
