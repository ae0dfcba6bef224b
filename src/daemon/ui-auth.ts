import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** The loopback port the web UI is documented at: `phyllome daemon --listen` alone means 127.0.0.1:8470. */
export const DEFAULT_UI_PORT = 8470;

/** A one-time login code lives this long: long enough to paste a URL, too short to leak usefully. */
export const CODE_TTL_MS = 5 * 60_000;
/** A browser session's lifetime, fixed from the login; a daemon restart also ends every session. */
export const SESSION_TTL_MS = 24 * 3600_000;

/**
 * Cookies are per host name, not per port: the port in the name keeps two daemons on one machine
 * (a migration's source and destination) from overwriting each other's session.
 */
export const sessionCookie = (port: number) => `phyllome-session-${port}`;

/**
 * Pure: the Set-Cookie value of a session (an empty value and no age end it): script-proof,
 * same-site only, and on an HTTPS listener never sent over plain HTTP.
 */
export const sessionCookieHeader = (
  listener: { port: number; tls?: boolean },
  value: string,
  maxAgeSeconds: number,
): string =>
  `${sessionCookie(listener.port)}=${value}; Path=/; HttpOnly; SameSite=Strict${listener.tls ? '; Secure' : ''}; Max-Age=${maxAgeSeconds}`;

const digest = (secret: string) => createHash('sha256').update(secret).digest();
const newSecret = () => randomBytes(32).toString('base64url');

/**
 * Login codes and browser sessions, only in memory and only as SHA-256 digests: a heap dump or a
 * stray log line holds nothing a browser could present.
 */
export class UiSessions {
  private readonly codes = new Map<string, number>();
  private readonly sessions = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  /** A code `redeem` accepts once, within CODE_TTL_MS. */
  issueCode(): { code: string; expiresAt: number } {
    this.prune();
    const code = newSecret();
    const expiresAt = this.now() + CODE_TTL_MS;
    this.codes.set(digest(code).toString('hex'), expiresAt);
    return { code, expiresAt };
  }

  /** The session a code buys (the code is spent whatever happens next), or undefined. */
  redeem(code: string): { session: string; expiresAt: number } | undefined {
    const key = digest(code).toString('hex');
    const expires = this.codes.get(key);
    this.codes.delete(key);
    if (expires === undefined || expires <= this.now()) return undefined;
    const session = newSecret();
    const expiresAt = this.now() + SESSION_TTL_MS;
    this.sessions.set(digest(session).toString('hex'), expiresAt);
    return { session, expiresAt };
  }

  valid(session: string | undefined): boolean {
    if (!session) return false;
    const expires = this.sessions.get(digest(session).toString('hex'));
    return expires !== undefined && expires > this.now();
  }

  end(session: string): void {
    this.sessions.delete(digest(session).toString('hex'));
  }

  private prune(): void {
    const now = this.now();
    for (const map of [this.codes, this.sessions])
      for (const [k, expires] of map) if (expires <= now) map.delete(k);
  }
}

/** One cookie's value from a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of header?.split(';') ?? []) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Compares digests, so the time taken says nothing about how much of a guess was right. */
export function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

export interface TcpListener {
  /** The address it is bound to, as given to --listen (brackets stripped from IPv6). */
  host: string;
  port: number;
  /** HTTPS: a listener beyond loopback (main.ts). */
  tls?: boolean;
}

/**
 * The `host:port` values a browser may send in Host for this listener: its own address, and on
 * loopback the other names of loopback too.
 */
export function listenerHosts({ host, port, tls }: TcpListener): Set<string> {
  const own = host.includes(':') ? `[${host}]` : host;
  const names = tls ? [own] : ['localhost', '127.0.0.1', '[::1]', own];
  return new Set(names.map((n) => `${n}:${port}`));
}

export interface TcpRequest {
  method: string;
  headers: {
    host?: string | undefined;
    origin?: string | undefined;
    authorization?: string | undefined;
    cookie?: string | undefined;
    upgrade?: string | undefined;
  };
  /** Served without login: the UI's static files and the login exchange. */
  public: boolean;
}

export interface Refusal {
  status: 401 | 403;
  code: string;
  message: string;
}

/**
 * Whether a request over TCP may go on. In order: it must carry the bearer token or a
 * session cookie (401), unless the route is public; its Host must name this listener (403:
 * a DNS-rebinding page sends its own name); an Origin, when sent, must be this listener's (403: a
 * page elsewhere, another port of 127.0.0.1 included, which SameSite counts as the same site); and a
 * cookie alone moves nothing without that Origin (403: the cookie is what a forged request would
 * ride on, and browsers always send Origin on mutations and WebSocket handshakes).
 */
export function tcpRefusal(
  req: TcpRequest,
  listener: TcpListener,
  token: string | undefined,
  sessions: UiSessions,
): Refusal | undefined {
  const bearer = req.headers.authorization?.match(/^Bearer (.+)$/)?.[1];
  const byToken = bearer !== undefined && token !== undefined && sameSecret(bearer, token);
  const byCookie = !byToken && sessions.valid(cookieValue(req.headers.cookie, sessionCookie(listener.port)));
  if (!req.public && !byToken && !byCookie) {
    return {
      status: 401,
      code: 'unauthorized',
      message: 'missing or wrong bearer token or login: run "phyllome ui" for a login URL',
    };
  }
  const hosts = listenerHosts(listener);
  if (!hosts.has(req.headers.host?.toLowerCase() ?? '')) {
    return {
      status: 403,
      code: 'bad-host',
      message: `Host must be one of ${[...hosts].join(', ')} (got ${req.headers.host ?? 'none'})`,
    };
  }
  const origins = new Set([...hosts].map((h) => `${listener.tls ? 'https' : 'http'}://${h}`));
  const origin = req.headers.origin;
  const changes = !['GET', 'HEAD', 'OPTIONS'].includes(req.method) || req.headers.upgrade !== undefined;
  if (origin !== undefined ? !origins.has(origin.toLowerCase()) : byCookie && changes) {
    return {
      status: 403,
      code: 'bad-origin',
      message: `requests from pages other than phyllome's own are refused (Origin ${origin ?? 'missing'})`,
    };
  }
  return undefined;
}
