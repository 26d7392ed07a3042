import type { ServerResponse } from 'node:http';

/** The name of the login cookie (httpOnly, SameSite=Strict) where the browser refuses `Secure` (plain HTTP). */
export const AUTH_COOKIE = 'studio_token';
/**
 * Its name over HTTPS and on loopback hosts (browsers treat `http://127.0.0.1` and `http://localhost` as secure
 * contexts and accept `Secure` cookies there). The `__Host-` prefix makes browsers refuse it unless it is
 * `Secure`, `Path=/` and has no `Domain`: no other host (a preview on a sibling host) can set or shadow it, so
 * it cannot plant a sign-in of its own (cookie tossing). Where it is used only this name is read.
 */
export const AUTH_COOKIE_SECURE = '__Host-studio_token';

/** Whether a request's `Host` is a loopback name or address (a secure context for browsers even over HTTP). */
export function isLoopbackHost(hostHeader: string | undefined): boolean {
  if (hostHeader === undefined) return false;
  const host = hostHeader
    .toLowerCase()
    .replace(/:\d{1,5}$/, '')
    .replace(/\.$/, '');
  return (
    host === 'localhost' ||
    host.endsWith('.localhost') ||
    host === '[::1]' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
  );
}

/** The login cookie's name for a request over HTTPS (or to a loopback host) or plain HTTP. */
export function authCookieName(secure: boolean): string {
  return secure ? AUTH_COOKIE_SECURE : AUTH_COOKIE;
}

/** The value of cookie `name` in a Cookie header, or undefined (oversized headers are ignored). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header || header.length > 16_384) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Sets (or clears, with `token` null) the login cookie: host-only (no `Domain`), `Path=/`, `HttpOnly`,
 * `SameSite=Strict`; `__Host-` and `Secure` when `secureCookie` (HTTPS, or a loopback host).
 */
export function setAuthCookie(
  ctx: { secureCookie: boolean; res: ServerResponse },
  token: string | null,
  maxAgeS: number,
): void {
  const parts = [
    `${authCookieName(ctx.secureCookie)}=${token ?? ''}`,
    'Path=/',
    'HttpOnly',
    'SameSite=Strict',
    `Max-Age=${token === null ? 0 : Math.max(0, Math.floor(maxAgeS))}`,
  ];
  if (ctx.secureCookie) parts.push('Secure');
  ctx.res.setHeader('Set-Cookie', parts.join('; '));
}
