import { describe, expect, it } from 'vitest';
import {
  CODE_TTL_MS,
  cookieValue,
  SESSION_TTL_MS,
  sessionCookieHeader,
  tcpRefusal,
  UiSessions,
  type TcpRequest,
} from '../../src/daemon/ui-auth.js';

const listener = { host: '127.0.0.1', port: 8470 };

describe('browser login codes and sessions', () => {
  it('spends a code once, and neither codes nor sessions outlive their time', () => {
    let now = 1_000;
    const s = new UiSessions(() => now);
    const { code } = s.issueCode();
    const got = s.redeem(code);
    expect(got && s.valid(got.session)).toBe(true);
    expect(s.redeem(code)).toBeUndefined();

    const late = s.issueCode().code;
    now += CODE_TTL_MS;
    expect(s.redeem(late)).toBeUndefined();
    now += SESSION_TTL_MS;
    expect(s.valid(got!.session)).toBe(false);
    expect(s.valid(undefined)).toBe(false);
  });

  it('sets the session cookie script-proof and same-site, and Secure on an HTTPS listener', () => {
    expect(sessionCookieHeader(listener, 'abc', 60)).toBe(
      'phyllome-session-8470=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=60',
    );
    expect(sessionCookieHeader({ port: 8470, tls: true }, 'abc', 60)).toBe(
      'phyllome-session-8470=abc; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=60',
    );
    expect(sessionCookieHeader(listener, '', 0)).toMatch(/^phyllome-session-8470=; .*Max-Age=0$/);
  });

  it('reads one cookie among several', () => {
    expect(cookieValue('a=1; phyllome-session-8470=xyz; b=2', 'phyllome-session-8470')).toBe('xyz');
    expect(cookieValue('phyllome-session-8471=xyz', 'phyllome-session-8470')).toBeUndefined();
    expect(cookieValue(undefined, 'a')).toBeUndefined();
  });
});

describe('what a loopback TCP request must carry', () => {
  const sessions = new UiSessions();
  const session = sessions.redeem(sessions.issueCode().code)!.session;
  const cookie = `phyllome-session-8470=${session}`;
  const own = 'http://127.0.0.1:8470';
  const check = (method: string, headers: TcpRequest['headers'], pub = false) =>
    tcpRefusal(
      { method, headers: { host: '127.0.0.1:8470', ...headers }, public: pub },
      listener,
      'tok',
      sessions,
    )?.status;

  it('wants the token or a session, except on public routes', () => {
    expect(check('GET', {})).toBe(401);
    expect(check('GET', { authorization: 'Bearer nope' })).toBe(401);
    expect(check('GET', { authorization: 'Bearer tok' })).toBeUndefined();
    expect(check('GET', { cookie })).toBeUndefined();
    expect(check('GET', {}, true)).toBeUndefined();
  });

  it('wants a loopback Host naming this port', () => {
    expect(check('GET', { cookie, host: 'localhost:8470' })).toBeUndefined();
    expect(check('GET', { cookie, host: '[::1]:8470' })).toBeUndefined();
    expect(check('GET', { cookie, host: 'evil.example:8470' })).toBe(403);
    expect(check('GET', { cookie, host: undefined })).toBe(403);
    expect(check('GET', {}, true)).toBeUndefined();
    expect(check('GET', { host: 'evil.example:8470' }, true)).toBe(403);
  });

  it("wants the listener's own Origin when one is sent, and on a cookie's mutations and WebSockets", () => {
    expect(check('POST', { cookie, origin: own })).toBeUndefined();
    expect(check('POST', { cookie })).toBe(403);
    expect(check('GET', { cookie, upgrade: 'websocket' })).toBe(403);
    expect(check('GET', { cookie, upgrade: 'websocket', origin: 'http://localhost:8470' })).toBeUndefined();
    expect(check('POST', { cookie, origin: 'http://127.0.0.1:8471' })).toBe(403);
    // The CLI sends no Origin: the token alone is enough.
    expect(check('POST', { authorization: 'Bearer tok' })).toBeUndefined();
    expect(check('POST', { authorization: 'Bearer tok', origin: 'http://evil.example' })).toBe(403);
  });
});

describe('what a request to a listener beyond loopback (HTTPS) must carry', () => {
  const sessions = new UiSessions();
  const session = sessions.redeem(sessions.issueCode().code)!.session;
  const cookie = `phyllome-session-8470=${session}`;
  const check = (host: string, headers: TcpRequest['headers'], method = 'GET') =>
    tcpRefusal(
      { method, headers: { host: listenerHost(host), ...headers }, public: false },
      { host, port: 8470, tls: true },
      'tok',
      sessions,
    )?.status;
  const listenerHost = (host: string) => (host.includes(':') ? `[${host}]:8470` : `${host}:8470`);

  it('wants its own address as Host, no loopback name', () => {
    expect(check('10.0.0.5', { authorization: 'Bearer tok' })).toBeUndefined();
    expect(check('fd00::5', { authorization: 'Bearer tok' })).toBeUndefined();
    for (const host of [
      '127.0.0.1:8470',
      'localhost:8470',
      '10.0.0.6:8470',
      '10.0.0.5:8471',
      'evil.example:8470',
    ]) {
      expect(check('10.0.0.5', { authorization: 'Bearer tok', host }), host).toBe(403);
    }
  });

  it('wants its https:// Origin, never http://', () => {
    expect(check('10.0.0.5', { cookie, origin: 'https://10.0.0.5:8470' }, 'POST')).toBeUndefined();
    expect(check('fd00::5', { cookie, origin: 'https://[fd00::5]:8470' }, 'POST')).toBeUndefined();
    expect(check('10.0.0.5', { cookie, origin: 'http://10.0.0.5:8470' }, 'POST')).toBe(403);
    expect(check('10.0.0.5', { cookie, origin: 'https://127.0.0.1:8470' }, 'POST')).toBe(403);
    expect(check('10.0.0.5', { cookie }, 'POST')).toBe(403);
  });
});
