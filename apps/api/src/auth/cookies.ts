import type { ServerResponse } from 'node:http';

/** The name of the login cookie (httpOnly, SameSite=Strict) over plain HTTP (local mode). */
export const AUTH_COOKIE = 'studio_token';
/**
 * Its name over HTTPS. The `__Host-` prefix makes browsers refuse it unless it is `Secure`, `Path=/` and has
 * no `Domain`: a page on a sibling host (a preview on `*.preview.<domain>`) cannot set or shadow it, so it
 * cannot plant a sign-in of its own (cookie tossing). Over HTTPS only this name is read.
 */
export const AUTH_COOKIE_SECURE = '__Host-studio_token';

/** The login cookie's name for a request over HTTPS or plain HTTP. */
export function authCookieName(https: boolean): string {
  return https ? AUTH_COOKIE_SECURE : AUTH_COOKIE;
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

/** Sets (or clears, with `token` null) the login cookie. `Secure` when the request came over HTTPS. */
export function setAuthCookie(
  ctx: { https: boolean; res: ServerResponse },
  token: string | null,
  maxAgeS: number,
): void {
  const parts = [
    `${authCookieName(ctx.https)}=${token ?? ''}`,
    'Path=/',
    'HttpOnly',
    'SameSite=Strict',
    `Max-Age=${token === null ? 0 : Math.max(0, Math.floor(maxAgeS))}`,
  ];
  if (ctx.https) parts.push('Secure');
  ctx.res.setHeader('Set-Cookie', parts.join('; '));
}
