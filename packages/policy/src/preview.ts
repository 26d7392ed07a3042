import { PolicyError } from './errors.ts';
import {
  endsInNumber,
  formatIpv4,
  formatIpv6,
  inV4,
  inV6,
  ipv4Number,
  parseIpv4,
  parseIpv6,
} from './lib/ip.ts';

/**
 * The only ports a preview may target, inclusive. Security meaning: dev servers listen here; system and
 * database ports fall outside. A second wall behind "reach only the session's own sandbox" (SECURITY.md §3).
 */
export const PREVIEW_PORT_RANGE: Readonly<{ min: 3000; max: 9999 }> = Object.freeze({ min: 3000, max: 9999 });

/**
 * Ports a preview never targets, even if the range is widened one day: SSH, SMTP, HTTP, HTTPS, MySQL,
 * PostgreSQL, Redis, MongoDB. Refused with PORT_BLOCKED before the range check.
 */
export const BLOCKED_PREVIEW_PORTS: readonly number[] = Object.freeze([
  22, 25, 80, 443, 3306, 5432, 6379, 27017,
]);

const PORT_TEXT = /^[1-9][0-9]{0,4}$/;

/**
 * Parses a preview port from a route parameter or JSON value and returns it as a number, or throws.
 *
 * Security meaning: one strict parse so the port that is checked is the port that is dialled. Accepts a JS
 * integer, or a decimal string matching `/^[1-9][0-9]{0,4}$/` — no sign, whitespace, leading zero, '0x',
 * exponent, fraction or non-ASCII digit (each of which some parser somewhere reads differently). Then refuses
 * {@link BLOCKED_PREVIEW_PORTS} (PORT_BLOCKED) and anything outside {@link PREVIEW_PORT_RANGE}
 * (PORT_OUT_OF_RANGE). Any other type or form is PORT_INVALID.
 */
export function validatePreviewPort(input: unknown): number {
  let port: number;
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input)) {
      throw new PolicyError('PORT_INVALID', 'port must be an integer such as 3000');
    }
    port = input;
  } else if (typeof input === 'string') {
    if (!PORT_TEXT.test(input)) {
      throw new PolicyError(
        'PORT_INVALID',
        'port must be plain decimal digits without sign, spaces or leading zeros, such as "3000"',
      );
    }
    port = Number(input);
  } else {
    throw new PolicyError('PORT_INVALID', 'port must be an integer or a decimal string such as "3000"');
  }
  if (BLOCKED_PREVIEW_PORTS.includes(port)) {
    throw new PolicyError(
      'PORT_BLOCKED',
      `port ${port} is never proxied; serve the preview on a port in 3000-9999`,
    );
  }
  if (port < PREVIEW_PORT_RANGE.min || port > PREVIEW_PORT_RANGE.max) {
    throw new PolicyError(
      'PORT_OUT_OF_RANGE',
      `port ${port} is outside ${PREVIEW_PORT_RANGE.min}-${PREVIEW_PORT_RANGE.max}; serve the preview on a port in that range`,
    );
  }
  return port;
}

/** The kind of a canonical host. */
export type HostKind = 'ipv4' | 'ipv6' | 'name';

/** A host in its one canonical spelling: dotted-quad IPv4, RFC 5952 IPv6 (no brackets), or a lowercase name. */
export interface CanonicalHost {
  readonly kind: HostKind;
  readonly value: string;
}

// Longest legal input: a 253-char name plus a trailing dot, or a bracketed IPv6 with embedded IPv4 (47).
const MAX_HOST_INPUT = 254;
const ASCII_HOST = /^[A-Za-z0-9.-]+$/;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

function invalidHost(why: string): PolicyError {
  return new PolicyError('HOST_INVALID', `host is invalid: ${why}`);
}

function fromIpv6(text: string): CanonicalHost {
  if (text.includes('%')) throw invalidHost('IPv6 zone ids (%eth0) are refused');
  const groups = parseIpv6(text);
  if (groups === null) throw invalidHost('not a valid IPv6 address');
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (mapped) {
    return { kind: 'ipv4', value: formatIpv4(((groups[6] as number) * 65536 + (groups[7] as number)) >>> 0) };
  }
  return { kind: 'ipv6', value: formatIpv6(groups) };
}

/**
 * Parses a host (no port, no scheme) once into its canonical form, or throws HOST_INVALID.
 *
 * Security meaning (CWE-918, SECURITY.md §3): every later decision about a host — allow lists, loopback
 * checks, the address actually dialled — must use this one canonical value, so that `0x7f.1`, `2130706433`,
 * `0177.0.0.1`, `[::ffff:127.0.0.1]` and `127.0.0.1.` are all seen as `127.0.0.1`.
 *
 * - IPv4 in every form inet_aton accepts: 1-4 parts, each decimal, octal (leading 0) or hex (0x), mixed.
 *   A name whose last label is numeric must be a valid IPv4 address (as in the WHATWG URL parser), so
 *   `1.2.3.256` and `foo.0x10` are refused rather than treated as names.
 * - IPv6 bare or in brackets, compressed or with an embedded IPv4 tail; zone ids are refused. IPv4-mapped
 *   addresses (`::ffff:0:0/96`) become kind 'ipv4'.
 * - Names: one trailing dot removed, lowercased, ASCII LDH labels of 1-63, at most 253 in total. Non-ASCII
 *   names must be given in punycode (`xn--`). Underscores, spaces, ports and anything else are refused.
 */
export function canonicalizeHost(host: string): CanonicalHost {
  if (typeof host !== 'string') throw invalidHost('must be a string');
  if (host.length === 0 || host.length > MAX_HOST_INPUT) throw invalidHost('must be 1-253 characters');
  if (host.startsWith('[')) {
    if (!host.endsWith(']')) throw invalidHost("a bracketed IPv6 address must end with ']'");
    return fromIpv6(host.slice(1, -1));
  }
  if (host.includes(':')) return fromIpv6(host);
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name === '' || !ASCII_HOST.test(name)) {
    throw invalidHost("only ASCII letters, digits, '-' and '.' are allowed (use punycode for IDNs, no port)");
  }
  const lower = name.toLowerCase();
  const labels = lower.split('.');
  if (endsInNumber(labels[labels.length - 1] as string)) {
    const value = parseIpv4(labels);
    if (value === null) throw invalidHost('looks like an IPv4 address but is not a valid one');
    return { kind: 'ipv4', value: formatIpv4(value) };
  }
  if (lower.length > 253) throw invalidHost('names are at most 253 characters');
  for (const label of labels) {
    if (!LABEL.test(label)) {
      throw invalidHost("each label is 1-63 letters, digits or '-', not starting or ending with '-'");
    }
  }
  return { kind: 'name', value: lower };
}

const V4_NON_PUBLIC: ReadonlyArray<readonly [string, number]> = [
  ['0.0.0.0', 8], // "this network"; 0.0.0.0 reaches the local host on Linux
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, including cloud metadata 169.254.169.254
  ['172.16.0.0', 12], // includes Docker's default bridges
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved and broadcast
];

const V6_NON_PUBLIC: ReadonlyArray<readonly [string, number]> = [
  ['::', 96], // unspecified, loopback and the deprecated IPv4-compatible block
  ['::ffff:0:0', 96],
  ['64:ff9b::', 96], // NAT64 can embed any IPv4 address, private ones included
  ['64:ff9b:1::', 48],
  ['100::', 64],
  ['2001::', 32], // Teredo embeds an IPv4 address
  ['2001:db8::', 32],
  ['2002::', 16], // 6to4 embeds an IPv4 address
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // deprecated site-local
  ['ff00::', 8], // multicast
];

const NON_PUBLIC_NAMES: ReadonlySet<string> = new Set(['localhost']);
const NON_PUBLIC_SUFFIXES: readonly string[] = [
  '.localhost',
  '.local',
  '.localdomain',
  '.internal',
  '.home.arpa',
  '.lan',
];

/**
 * True when a host is loopback, private, link-local, unspecified or otherwise not a public internet address.
 * Fails closed: every reserved or special-purpose block that can reach local or internal networks counts.
 *
 * Security meaning: the preview proxy must reach only the session's own sandbox, at the address the backend
 * reports, never a host taken from a request. This check is a second wall for anything else (a Host header, a
 * redirect target, a configured upstream): it refuses 127/8, 0/8, 10/8, 172.16/12, 192.168/16, 169.254/16
 * (cloud metadata), 100.64/10, multicast and reserved IPv4; `::`, `::1`, fc00::/7, fe80::/10 and IPv6 blocks
 * that embed IPv4 (mapped, NAT64, 6to4, Teredo). For names it knows only names that are local by definition:
 * `localhost`, `*.localhost`, single-label names (resolved through search domains or Docker's DNS), and
 * `.local`, `.localdomain`, `.internal`, `.home.arpa`, `.lan`. Any other name must be resolved by the caller,
 * every address checked, and the connection made to the checked address (DNS rebinding).
 *
 * The input is canonicalised again, so a hand-built `{ kind: 'name', value: '0x7f.1' }` is still caught; a
 * string is accepted too. Throws HOST_INVALID for hosts that do not parse.
 */
export function isLoopbackOrPrivate(host: CanonicalHost | string): boolean {
  const c = canonicalizeHost(typeof host === 'string' ? host : host.value);
  if (c.kind === 'ipv4') {
    const ip = ipv4Number(c.value);
    return V4_NON_PUBLIC.some(([net, bits]) => inV4(ip, net, bits));
  }
  if (c.kind === 'ipv6') {
    const groups = parseIpv6(c.value) as number[];
    return V6_NON_PUBLIC.some(([net, bits]) => inV6(groups, net, bits));
  }
  if (NON_PUBLIC_NAMES.has(c.value) || !c.value.includes('.')) return true;
  return NON_PUBLIC_SUFFIXES.some((suffix) => c.value.endsWith(suffix));
}
