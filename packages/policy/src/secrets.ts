import { checkEgressTarget, parseEgressRule } from './egress.ts';
import { isAllowedEnvName } from './env-names.ts';
import { PolicyError } from './errors.ts';

/**
 * Secrets (issue 18): a value that programs in a session use without ever holding it. The session's environment
 * carries a placeholder under the secret's name; the egress proxy, for an HTTPS request to one of the secret's
 * hosts, swaps the placeholder for the value in the request headers (and adds the secret's header when the
 * program did not send it). These rules decide what a secret may look like and where its value may go.
 */

/** Most secrets one owner stores. */
export const MAX_SECRETS = 100;
/** Most secrets one session is given. */
export const MAX_SESSION_SECRETS = 16;
/** Most hosts one secret may go to. */
export const MAX_SECRET_HOSTS = 32;
/** Longest value, in characters. */
export const MAX_SECRET_VALUE_LENGTH = 8_192;
/** The header a secret goes in when none is named. */
export const DEFAULT_SECRET_HEADER = 'Authorization: Bearer {{value}}';
/** What a header template must hold, once, where the value goes. */
export const SECRET_VALUE_MARK = '{{value}}';

const NAME = /^[A-Z][A-Z0-9_]{0,63}$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;
// Control characters (CR and LF above all) would let a value or template add headers of its own.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the check is exactly for control characters
const CONTROL = /[\u0000-\u001f\u007f]/;
/** Headers that decide where a request goes or how it is framed: a secret never goes in one of them. */
const FORBIDDEN_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'upgrade',
  'te',
  'trailer',
  'keep-alive',
  'proxy-authorization',
  'proxy-connection',
]);

/**
 * Checks a secret's name: an environment variable name (upper case, digits, `_`; at most 64), because the
 * session sees the placeholder under it. Security meaning: names the loader reads (`LD_*`, `BASH_FUNC_*`, ...)
 * are refused, so a secret's placeholder can never steer the program that receives it.
 */
export function checkSecretName(name: string): string {
  if (!NAME.test(name) || !isAllowedEnvName(name)) {
    throw new PolicyError(
      'SECRET_INVALID',
      `secret name "${name.slice(0, 80)}" must look like an environment variable: upper-case letters, digits and _, starting with a letter (e.g. OPENAI_API_KEY), and not one the loader reads`,
    );
  }
  return name;
}

/**
 * Checks a secret's value: 1 to {@link MAX_SECRET_VALUE_LENGTH} characters without control characters. Security
 * meaning: the value is written into an HTTP header by the proxy, so CR/LF (header injection) cannot occur in it.
 */
export function checkSecretValue(value: string): string {
  if (value.length === 0 || value.length > MAX_SECRET_VALUE_LENGTH || CONTROL.test(value)) {
    throw new PolicyError(
      'SECRET_INVALID',
      `a secret's value is 1 to ${MAX_SECRET_VALUE_LENGTH} characters with no line breaks or other control characters`,
    );
  }
  return value;
}

/** A parsed header template: the header's name (lower case) and its text with {@link SECRET_VALUE_MARK}. */
export interface SecretHeader {
  readonly name: string;
  readonly template: string;
}

/**
 * Parses a header template such as `Authorization: Bearer {{value}}` or `X-Api-Key: {{value}}`. Security
 * meaning: the header is a plain request header that holds the value once; headers that route or frame the
 * request (Host, Content-Length, Transfer-Encoding, ...) are refused, and so is any control character.
 */
export function parseSecretHeader(text: string): SecretHeader {
  const colon = text.indexOf(':');
  const name = colon > 0 ? text.slice(0, colon).trim() : '';
  const template = colon > 0 ? text.slice(colon + 1).trim() : '';
  const marks = template.split(SECRET_VALUE_MARK).length - 1;
  if (
    text.length > 512 ||
    CONTROL.test(text) ||
    !HEADER_NAME.test(name) ||
    FORBIDDEN_HEADERS.has(name.toLowerCase()) ||
    marks !== 1
  ) {
    throw new PolicyError(
      'SECRET_INVALID',
      `header "${text.slice(0, 80)}" must look like "Authorization: Bearer {{value}}": a request header name, a colon, and a text holding {{value}} once`,
    );
  }
  return { name: name.toLowerCase(), template };
}

/** The header's text with the value in place of {@link SECRET_VALUE_MARK}. */
export function renderSecretHeader(header: SecretHeader, value: string): string {
  return header.template.replace(SECRET_VALUE_MARK, () => value);
}

/**
 * Checks and canonicalises the hosts a secret may go to: names or wildcards (`api.example.com`,
 * `*.example.com`, with an optional port; default 443 only matters through HTTPS). Security meaning: an address
 * block is refused, because the proxy only hands the value over a TLS connection it verified for a name.
 */
export function canonicalSecretHosts(hosts: readonly string[]): string[] {
  if (hosts.length === 0 || hosts.length > MAX_SECRET_HOSTS) {
    throw new PolicyError('SECRET_INVALID', `a secret goes to 1 to ${MAX_SECRET_HOSTS} hosts`);
  }
  const out = new Set<string>();
  for (const entry of hosts) {
    let rule: ReturnType<typeof parseEgressRule>;
    try {
      rule = parseEgressRule(entry);
    } catch (error) {
      // The egress rule's words are about allowlists; a secret's host is told in its own.
      throw new PolicyError(
        'SECRET_INVALID',
        `secret host "${String(entry).slice(0, 80)}" must be a host name such as api.example.com or *.example.com (optionally :port), not an address or a local name`,
        { cause: error },
      );
    }
    if (rule.kind === 'cidr') {
      throw new PolicyError(
        'SECRET_INVALID',
        `secret host "${entry}" is an address block: a secret goes only to named hosts (HTTPS is verified by name)`,
      );
    }
    const host = rule.kind === 'wildcard' ? `*.${rule.host}` : rule.host;
    out.add(rule.port === null ? host : `${host}:${rule.port}`);
  }
  return [...out].sort();
}

/**
 * Whether a request to `host:port` may carry the secret whose hosts are `hosts` (as {@link canonicalSecretHosts}
 * wrote them). Security meaning: this is the only gate between a placeholder and its value; the host is the name
 * the proxy verified the upstream certificate for.
 */
export function secretGoesTo(hosts: readonly string[], host: string, port: number): boolean {
  return checkEgressTarget({ mode: 'allowlist', allow: hosts }, host, port, { allowOpen: false }).allowed;
}
