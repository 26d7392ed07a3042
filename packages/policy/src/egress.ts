import { parse } from 'tldts';
import { PolicyError } from './errors.ts';
import { inV4, inV6, ipv4Number, parseIpv6 } from './lib/ip.ts';
import { type CanonicalHost, canonicalizeHost, isLoopbackOrPrivate } from './preview.ts';

/**
 * A session's network modes. Security meaning: `none` (the default) lets nothing out; `allowlist` lets out only
 * connections to the names (and CIDRs) on the session's list; `open` lets out any public name, and only where
 * the operator's policy (`egress.allowOpen`) permits it. In every mode the sandbox itself has no route out:
 * traffic leaves only through Studio's egress proxy, which applies these rules and the address checks below.
 */
export const NETWORK_MODES = Object.freeze(['none', 'allowlist', 'open'] as const);

/** One of {@link NETWORK_MODES}. */
export type NetworkMode = (typeof NETWORK_MODES)[number];

/** The ports an allowlist entry without a port allows: HTTP and HTTPS. */
export const DEFAULT_EGRESS_PORTS: readonly number[] = Object.freeze([80, 443]);

/** Most entries one session's allowlist holds. */
export const MAX_EGRESS_RULES = 256;

/**
 * One parsed allowlist entry. `name`: exactly that host; `wildcard`: any name below `host` (`*.example.com`
 * matches `a.example.com` and `a.b.example.com`, not `example.com`); `cidr`: IP-literal destinations in that
 * block. `port` null means {@link DEFAULT_EGRESS_PORTS}.
 */
export interface EgressRule {
  readonly kind: 'name' | 'wildcard' | 'cidr';
  /** The canonical name, the wildcard's suffix (without `*.`), or the block's network address. */
  readonly host: string;
  /** CIDR only: the prefix length. */
  readonly bits?: number;
  /** CIDR only: the family. */
  readonly family?: 'ipv4' | 'ipv6';
  readonly port: number | null;
}

/** A session's network settings as stored and as the egress proxy reads them. */
export interface NetworkSettings {
  readonly mode: NetworkMode;
  /** Allowlist entries as the user wrote them (canonicalised), e.g. `registry.npmjs.org`, `*.pypi.org:443`. */
  readonly allow: readonly string[];
}

/** The settings of a session created without any: nothing goes out. */
export const NO_NETWORK: NetworkSettings = Object.freeze({ mode: 'none', allow: Object.freeze([]) });

/**
 * Why the egress proxy refused a connection, as a closed list carried in events and in the proxy's answer to the
 * sandbox. Security meaning: each names the rule that refused, never a secret or an address the sandbox could
 * not already see.
 */
export const EGRESS_DENY_REASONS = Object.freeze([
  'mode_none',
  'open_not_permitted',
  'not_allowed',
  'port_not_allowed',
  'ip_literal',
  'local_name',
  'private_address',
  'own_address',
  'resolve_failed',
  'sni_mismatch',
  'host_mismatch',
  'not_tls',
  'bad_request',
  'connection_limit',
  'byte_limit',
  'rate_limit',
  'upstream_failed',
] as const);

/** One of {@link EGRESS_DENY_REASONS}. */
export type EgressDenyReason = (typeof EGRESS_DENY_REASONS)[number];

/** A refusal: the reason code and a message for people naming the fix. */
export interface EgressDenial {
  readonly reason: EgressDenyReason;
  readonly message: string;
}

/** What {@link checkEgressTarget} decided for a destination. */
export type EgressTargetDecision =
  | { readonly allowed: true; readonly host: CanonicalHost; readonly port: number }
  | ({ readonly allowed: false } & EgressDenial);

const PORT = /^[1-9][0-9]{0,4}$/;

function parsePort(text: string, entry: string): number {
  const port = PORT.test(text) ? Number(text) : Number.NaN;
  if (!(port >= 1 && port <= 65_535)) {
    throw new PolicyError('HOST_INVALID', `allowlist entry "${entry}": the port must be 1-65535`);
  }
  return port;
}

function splitPort(entry: string): { host: string; port: number | null } {
  if (entry.startsWith('[')) {
    const close = entry.indexOf(']');
    if (close === -1) throw new PolicyError('HOST_INVALID', `allowlist entry "${entry}": missing ']'`);
    const rest = entry.slice(close + 1);
    const cidr = /^\/[0-9]{1,3}/.exec(rest)?.[0] ?? '';
    const after = rest.slice(cidr.length);
    if (after !== '' && !after.startsWith(':')) {
      throw new PolicyError('HOST_INVALID', `allowlist entry "${entry}": expected ':port' after ']'`);
    }
    return {
      host: entry.slice(1, close) + cidr,
      port: after === '' ? null : parsePort(after.slice(1), entry),
    };
  }
  // A bare IPv6 address or block has several colons and no port.
  if ((entry.match(/:/g) ?? []).length > 1) return { host: entry, port: null };
  const colon = entry.lastIndexOf(':');
  if (colon === -1) return { host: entry, port: null };
  return { host: entry.slice(0, colon), port: parsePort(entry.slice(colon + 1), entry) };
}

function parseCidr(text: string, entry: string): EgressRule & { kind: 'cidr' } {
  const slash = text.indexOf('/');
  const address = canonicalizeHost(text.slice(0, slash));
  const bitsText = text.slice(slash + 1);
  const max = address.kind === 'ipv6' ? 128 : 32;
  const bits = /^[0-9]{1,3}$/.test(bitsText) ? Number(bitsText) : Number.NaN;
  if (address.kind === 'name' || !(bits >= 0 && bits <= max)) {
    throw new PolicyError(
      'HOST_INVALID',
      `allowlist entry "${entry}": a block is an IP address and a prefix length, such as 203.0.113.0/24`,
    );
  }
  return { kind: 'cidr', host: address.value, bits, family: address.kind, port: null };
}

/**
 * Parses one allowlist entry: `name`, `*.name`, `a.b.c.d/n` or `ipv6/n` (in brackets when followed by a port),
 * each with an optional `:port`. Throws HOST_INVALID naming the entry.
 *
 * Security meaning: names are canonicalised once here (lowercase, no trailing dot, punycode only), so the list
 * and the destination are compared in one spelling. A single IP address is refused (write it as a /32 or /128
 * block, so allowing an address is always explicit); so are names that are local by definition (`localhost`,
 * `*.internal`, single labels) and wildcards over a public suffix (`*.com`, `*.co.uk`), which would allow the
 * whole internet under one entry.
 */
export function parseEgressRule(entry: string): EgressRule {
  if (typeof entry !== 'string' || entry.length === 0 || entry.length > 300) {
    throw new PolicyError(
      'HOST_INVALID',
      'an allowlist entry is a host such as example.com, at most 300 characters',
    );
  }
  const { host, port } = splitPort(entry.trim());
  if (host.includes('/')) return { ...parseCidr(host, entry), port };
  const wildcard = host.startsWith('*.');
  const canonical = canonicalizeHost(wildcard ? host.slice(2) : host);
  if (canonical.kind !== 'name') {
    throw new PolicyError(
      'HOST_INVALID',
      `allowlist entry "${entry}" is an IP address: allow it as a block (${canonical.value}/${canonical.kind === 'ipv4' ? 32 : 128})`,
    );
  }
  if (wildcard) {
    // Checked before the local-name check, so `*.com` is told it covers a public suffix, not a local host.
    const parsed = parse(canonical.value, { allowPrivateDomains: false });
    if (parsed.publicSuffix === canonical.value) {
      throw new PolicyError(
        'HOST_INVALID',
        `allowlist entry "${entry}" covers a public suffix; name a domain below it, such as *.example.com`,
      );
    }
  }
  if (isLoopbackOrPrivate(canonical)) {
    throw new PolicyError(
      'HOST_INVALID',
      `allowlist entry "${entry}" names a local host, which egress never reaches`,
    );
  }
  if (wildcard) {
    const parsed = parse(canonical.value, { allowPrivateDomains: false });
    if (parsed.domain === null) {
      throw new PolicyError(
        'HOST_INVALID',
        `allowlist entry "${entry}" covers a public suffix; name a domain below it, such as *.example.com`,
      );
    }
    return { kind: 'wildcard', host: canonical.value, port };
  }
  return { kind: 'name', host: canonical.value, port };
}

/** The entry's canonical text (what is stored and shown). */
export function formatEgressRule(rule: EgressRule): string {
  const host =
    rule.kind === 'wildcard'
      ? `*.${rule.host}`
      : rule.kind === 'cidr'
        ? rule.family === 'ipv6' && rule.port !== null
          ? `[${rule.host}]/${rule.bits}`
          : `${rule.host}/${rule.bits}`
        : rule.host;
  return rule.port === null ? host : `${host}:${rule.port}`;
}

function portAllowed(rule: EgressRule, port: number): boolean {
  return rule.port === null ? DEFAULT_EGRESS_PORTS.includes(port) : rule.port === port;
}

function inCidr(address: CanonicalHost, rule: EgressRule): boolean {
  if (rule.kind !== 'cidr' || address.kind !== rule.family) return false;
  if (address.kind === 'ipv4') return inV4(ipv4Number(address.value), rule.host, rule.bits ?? 32);
  return inV6(parseIpv6(address.value) as number[], rule.host, rule.bits ?? 128);
}

function nameMatches(rule: EgressRule, name: string): boolean {
  if (rule.kind === 'name') return rule.host === name;
  return rule.kind === 'wildcard' && name.endsWith(`.${rule.host}`);
}

/** What {@link checkEgressTarget} needs from the operator's policy. */
export interface EgressTargetOptions {
  /** The operator permits `open` mode (`policy.egress.allowOpen`). */
  readonly allowOpen: boolean;
}

/**
 * Decides by name whether a sandbox may open a connection to `host:port` under the session's settings; the
 * first of the egress proxy's checks, before anything is resolved.
 *
 * Security meaning: the destination is canonicalised with {@link canonicalizeHost} (so `2130706433`,
 * `0x7f.1` and `[::ffff:127.0.0.1]` are IP literals, not names), then: mode `none` refuses everything; `open`
 * is refused unless the operator permits it; IP literals pass only a `cidr` entry of the list (in any mode);
 * names local by definition never pass; a name passes `allowlist` only when an entry matches it and the port.
 * Allowed is not yet reachable: the proxy must still resolve the name itself and refuse it when
 * {@link checkEgressAddress} refuses any of its addresses.
 */
export function checkEgressTarget(
  settings: NetworkSettings,
  host: string,
  port: number,
  options: EgressTargetOptions,
): EgressTargetDecision {
  const deny = (reason: EgressDenyReason, message: string): EgressTargetDecision => ({
    allowed: false,
    reason,
    message,
  });
  let canonical: CanonicalHost;
  try {
    canonical = canonicalizeHost(host);
  } catch {
    return deny('bad_request', `"${host.slice(0, 100)}" is not a host name`);
  }
  const shown = canonical.kind === 'ipv6' ? `[${canonical.value}]` : canonical.value;
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    return deny('bad_request', `port ${port} is not a TCP port`);
  }
  if (settings.mode === 'none') {
    return deny(
      'mode_none',
      `this session has no network access (mode none); to reach ${shown}, set the session's network to allowlist with ${shown} on it (sessions.setNetwork)`,
    );
  }
  if (settings.mode === 'open' && !options.allowOpen) {
    return deny(
      'open_not_permitted',
      `this server does not permit open network access; put ${shown} on the session's allowlist instead`,
    );
  }
  const rules = settings.allow.map(parseEgressRule);
  if (canonical.kind !== 'name') {
    const rule = rules.find((r) => inCidr(canonical, r));
    if (!rule) {
      return deny(
        'ip_literal',
        `${shown} is an IP address; connect by name, or allow the address as a block such as ${canonical.value}/${canonical.kind === 'ipv4' ? 32 : 128}`,
      );
    }
    if (!portAllowed(rule, port)) {
      return deny(
        'port_not_allowed',
        `port ${port} of ${shown} is not allowed; add ${formatEgressRule({ ...rule, port })}`,
      );
    }
    return { allowed: true, host: canonical, port };
  }
  if (isLoopbackOrPrivate(canonical)) {
    return deny('local_name', `${shown} is a local name, which the sandbox never reaches`);
  }
  if (settings.mode === 'open') return { allowed: true, host: canonical, port };
  const matching = rules.filter((r) => nameMatches(r, canonical.value));
  if (matching.length === 0) {
    return deny(
      'not_allowed',
      `${shown} is not on this session's allowlist; add it with sessions.setNetwork (or ask the session's owner)`,
    );
  }
  if (!matching.some((r) => portAllowed(r, port))) {
    return deny(
      'port_not_allowed',
      `port ${port} of ${shown} is not allowed; add ${shown}:${port} to the allowlist`,
    );
  }
  return { allowed: true, host: canonical, port };
}

/** What {@link checkEgressAddress} needs from the host and the operator. */
export interface EgressAddressOptions {
  /** The host's own addresses (every interface), refused whatever else says. */
  readonly ownAddresses: readonly string[];
  /**
   * Blocks the operator declared reachable although not public (an internal package mirror, the tests' network
   * namespace), as CIDR text. Never overrides the host's own addresses.
   */
  readonly reachableNets: readonly string[];
}

/**
 * Decides whether the egress proxy may dial one resolved address; `null` when it may.
 *
 * Security meaning (CWE-918, DNS rebinding): every address a name resolves to is checked, and the proxy dials
 * only an address this accepted, never the name again. Loopback, private, link-local (cloud metadata),
 * multicast, reserved and IPv4-embedding IPv6 blocks are refused by {@link isLoopbackOrPrivate}, and the host's
 * own addresses always; the operator's `reachableNets` may open a non-public block and nothing else.
 */
export function checkEgressAddress(address: string, options: EgressAddressOptions): EgressDenial | null {
  let canonical: CanonicalHost;
  try {
    canonical = canonicalizeHost(address);
  } catch {
    return { reason: 'resolve_failed', message: 'the name resolved to something that is not an address' };
  }
  if (canonical.kind === 'name') {
    return { reason: 'resolve_failed', message: 'the name resolved to something that is not an address' };
  }
  if (canonical.value === '0.0.0.0' || canonical.value === '::') {
    return {
      reason: 'own_address',
      message: 'the destination is this server itself, which the sandbox never reaches',
    };
  }
  if (isLoopbackOrPrivate(canonical)) {
    const declared = options.reachableNets.some((net) => inCidr(canonical, parseEgressRule(net)));
    if (!declared) {
      return {
        reason: 'private_address',
        message: 'the destination resolves to a private or local address, which the sandbox never reaches',
      };
    }
  }
  const own = options.ownAddresses.some((a) => {
    try {
      return canonicalizeHost(a).value === canonical.value;
    } catch {
      return false;
    }
  });
  if (own) {
    return {
      reason: 'own_address',
      message: 'the destination is this server itself, which the sandbox never reaches',
    };
  }
  return null;
}

/**
 * Parses and canonicalises a list of allowlist entries (dropping duplicates, keeping order), or throws
 * HOST_INVALID naming the first bad one. Security meaning: what is stored is what {@link parseEgressRule}
 * accepts, so the proxy never meets an entry it would read differently.
 */
export function canonicalEgressList(entries: readonly string[]): string[] {
  if (entries.length > MAX_EGRESS_RULES) {
    throw new PolicyError('HOST_INVALID', `an allowlist holds at most ${MAX_EGRESS_RULES} entries`);
  }
  return [...new Set(entries.map((e) => formatEgressRule(parseEgressRule(e))))];
}
