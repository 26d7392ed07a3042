import { PolicyError } from './errors.ts';

const ENTITIES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
  '`': '&#96;',
};

/**
 * Escapes text for an HTML text node or a QUOTED attribute value: `& < > " ' \``.
 *
 * Security meaning (CWE-79, SECURITY.md §6): everything from a sandbox (console output, file names, process
 * titles) is shown as text, never markup. This is only safe in those two contexts: not in unquoted
 * attributes, URLs (`href`, `src`: a `javascript:` URL needs no special characters), `<script>`, `<style>`, event
 * handlers or CSS. Prefer the framework's text rendering (React children); use this where a string is built.
 */
export function escapeHtml(text: string): string {
  if (typeof text !== 'string') throw new PolicyError('INPUT_INVALID', 'escapeHtml takes a string');
  return text.replace(/[&<>"'`]/g, (ch) => ENTITIES[ch] as string);
}

/** Options for {@link securityHeaders}. */
export interface SecurityHeadersOptions {
  /** Per-response CSP nonce: base64/base64url of at least 16 random bytes (22-128 characters). */
  readonly nonce: string;
  /**
   * Who may frame this page (`frame-ancestors`). Default none (`'none'` and `X-Frame-Options: DENY`). Preview
   * responses pass the IDE origin so the IDE can show them in an iframe.
   */
  readonly frameAncestors?: readonly string[];
  /** Extra origins for `connect-src` besides `'self'` (for example the API's `wss://` origin). */
  readonly connectSrc?: readonly string[];
  /** Origins for `frame-src` (the preview origins); default `'none'`. */
  readonly frameSrc?: readonly string[];
}

const NONCE = /^[A-Za-z0-9+/_-]{22,128}={0,2}$/;
const MAX_SOURCES = 32;
// scheme://host[:port] with an optional leading '*.' wildcard label; no path, no userinfo, no quotes.
const ORIGIN_SOURCE =
  /^(?:https?|wss?):\/\/(?:\*\.)?(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::[0-9]{1,5})?$/;
const IPV6_ORIGIN_SOURCE = /^(?:https?|wss?):\/\/\[[0-9A-Fa-f:.]{2,45}\](?::[0-9]{1,5})?$/;

function checkSources(sources: readonly string[] | undefined, directive: string): string[] {
  if (sources === undefined) return [];
  if (!Array.isArray(sources) || sources.length > MAX_SOURCES) {
    throw new PolicyError('CSP_INVALID', `${directive} must be an array of at most ${MAX_SOURCES} origins`);
  }
  return sources.map((source: unknown) => {
    if (source === "'self'") return source;
    if (
      typeof source !== 'string' ||
      source.length > 253 ||
      !(ORIGIN_SOURCE.test(source) || IPV6_ORIGIN_SOURCE.test(source))
    ) {
      throw new PolicyError(
        'CSP_INVALID',
        `${directive} entries must be origins like https://preview.example.com or 'self' (no paths, quotes, ';', ',' or spaces)`,
      );
    }
    return source;
  });
}

/**
 * HTTP security headers for every Studio page (SECURITY.md §3), with a strict nonce-based CSP:
 *
 * `default-src 'self'; script-src 'self' 'nonce-…' 'strict-dynamic'; style-src 'self' 'nonce-…';
 * img-src 'self' data: blob:; font-src 'self'; connect-src 'self' …; frame-src …|'none'; worker-src 'self' blob:;
 * object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'|…`
 *
 * plus `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, `X-Frame-Options` (DENY by default),
 * `Cross-Origin-Opener-Policy: same-origin`, `Cross-Origin-Resource-Policy: same-origin` and a
 * `Permissions-Policy` that turns off powerful features.
 *
 * Security meaning: there is no way to get `'unsafe-inline'`, `'unsafe-eval'`, a wildcard or a scheme-only source
 * into the policy: the nonce must be 22-128 base64/base64url characters (CSP_INVALID otherwise) and every extra
 * source must be a plain origin (scheme http/https/ws/wss, host, optional port, optional `*.` label) or
 * `'self'`, so an attacker-influenced value cannot inject a directive through ';', ',', quotes or whitespace.
 * HSTS is left to the TLS terminator (Traefik).
 */
export function securityHeaders(options: SecurityHeadersOptions): Record<string, string> {
  if (typeof options !== 'object' || options === null) {
    throw new PolicyError('CSP_INVALID', 'securityHeaders needs an options object with a nonce');
  }
  const { nonce } = options;
  if (typeof nonce !== 'string' || !NONCE.test(nonce)) {
    throw new PolicyError(
      'CSP_INVALID',
      'nonce must be 22-128 base64 characters (16+ random bytes, fresh per response)',
    );
  }
  const ancestors = checkSources(options.frameAncestors, 'frameAncestors');
  const connect = checkSources(options.connectSrc, 'connectSrc');
  const frames = checkSources(options.frameSrc, 'frameSrc');

  const directives = [
    "default-src 'self'",
    `script-src 'self' 'nonce-${nonce}' 'strict-dynamic'`,
    `style-src 'self' 'nonce-${nonce}'`,
    "img-src 'self' data: blob:",
    "font-src 'self'",
    ["connect-src 'self'", ...connect.filter((s) => s !== "'self'")].join(' '),
    frames.length > 0 ? `frame-src ${frames.join(' ')}` : "frame-src 'none'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    ancestors.length > 0 ? `frame-ancestors ${ancestors.join(' ')}` : "frame-ancestors 'none'",
  ];

  const headers: Record<string, string> = {
    'Content-Security-Policy': directives.join('; '),
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Permissions-Policy':
      'camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=(), hid=(), display-capture=()',
  };
  // X-Frame-Options cannot list origins: DENY when nobody may frame, SAMEORIGIN for exactly 'self', and
  // otherwise it is left out so that browsers follow frame-ancestors alone.
  if (ancestors.length === 0) headers['X-Frame-Options'] = 'DENY';
  else if (ancestors.length === 1 && ancestors[0] === "'self'") headers['X-Frame-Options'] = 'SAMEORIGIN';
  return headers;
}
