import { describe, expect, it } from 'vitest';
import {
  canonicalEgressList,
  checkEgressAddress,
  checkEgressTarget,
  type NetworkSettings,
  parseEgressRule,
} from './egress.ts';
import { parsePolicy } from './limits.ts';
import { sessionSetNetworkInput } from './schemas.ts';

const list = (...allow: string[]): NetworkSettings => ({ mode: 'allowlist', allow });
const strict = { allowOpen: false };
const reason = (d: ReturnType<typeof checkEgressTarget>) => (d.allowed ? 'allowed' : d.reason);

describe('parseEgressRule', () => {
  it('reads names, wildcards, blocks and ports in one canonical spelling', () => {
    expect(parseEgressRule('Registry.NPMJS.org.')).toEqual({
      kind: 'name',
      host: 'registry.npmjs.org',
      port: null,
    });
    expect(parseEgressRule('*.pypi.org:8443')).toEqual({ kind: 'wildcard', host: 'pypi.org', port: 8443 });
    expect(parseEgressRule('203.0.113.0/24:443')).toMatchObject({
      kind: 'cidr',
      host: '203.0.113.0',
      bits: 24,
      port: 443,
    });
    expect(parseEgressRule('2001:db8::/32')).toMatchObject({
      kind: 'cidr',
      family: 'ipv6',
      bits: 32,
      port: null,
    });
    expect(parseEgressRule('[2001:db8::]/32:443')).toMatchObject({ kind: 'cidr', family: 'ipv6', port: 443 });
    expect(canonicalEgressList(['A.example.com', 'a.example.com', '[2001:db8::]/32:443'])).toEqual([
      'a.example.com',
      '[2001:db8::]/32:443',
    ]);
  });

  it.each([
    ['a single IP address', '203.0.113.7'],
    ['a decimal IPv4 address', '3405803783'],
    ['localhost', 'localhost'],
    ['an internal name', 'metadata.google.internal'],
    ['a single label', 'intranet'],
    ['a wildcard over a public suffix', '*.com'],
    ['a wildcard over a two-label public suffix', '*.co.uk'],
    ['port 0', 'example.com:0'],
    ['a port with a sign', 'example.com:+80'],
    ['a scheme', 'https://example.com'],
    ['a path', 'example.com/x'],
    ['a prefix too long', '203.0.113.0/33'],
  ])('refuses %s', (_why, entry) => {
    expect(() => parseEgressRule(entry)).toThrow(expect.objectContaining({ code: 'HOST_INVALID' }));
  });

  it('tells a wildcard over a public suffix that, not that it names a local host', () => {
    expect(() => parseEgressRule('*.com')).toThrow(/covers a public suffix/);
    expect(() => parseEgressRule('intranet')).toThrow(/names a local host/);
  });
});

describe('checkEgressTarget', () => {
  it('lets nothing out in mode none, and names the fix', () => {
    const d = checkEgressTarget({ mode: 'none', allow: ['example.com'] }, 'example.com', 443, strict);
    expect(d).toMatchObject({ allowed: false, reason: 'mode_none' });
    expect(d.allowed === false && d.message).toContain('sessions.setNetwork');
  });

  it('matches names exactly and wildcards below their domain only, on ports 80 and 443 by default', () => {
    const s = list('example.com', '*.pypi.org', 'api.example.net:8443');
    expect(reason(checkEgressTarget(s, 'EXAMPLE.com.', 443, strict))).toBe('allowed');
    expect(reason(checkEgressTarget(s, 'example.com', 80, strict))).toBe('allowed');
    expect(reason(checkEgressTarget(s, 'example.com', 22, strict))).toBe('port_not_allowed');
    expect(reason(checkEgressTarget(s, 'www.example.com', 443, strict))).toBe('not_allowed');
    expect(reason(checkEgressTarget(s, 'files.pypi.org', 443, strict))).toBe('allowed');
    expect(reason(checkEgressTarget(s, 'a.b.pypi.org', 443, strict))).toBe('allowed');
    expect(reason(checkEgressTarget(s, 'pypi.org', 443, strict))).toBe('not_allowed');
    expect(reason(checkEgressTarget(s, 'evilpypi.org', 443, strict))).toBe('not_allowed');
    expect(reason(checkEgressTarget(s, 'api.example.net', 8443, strict))).toBe('allowed');
    expect(reason(checkEgressTarget(s, 'api.example.net', 443, strict))).toBe('port_not_allowed');
  });

  it.each([
    ['dotted', '127.0.0.1'],
    ['decimal', '2130706433'],
    ['hex', '0x7f000001'],
    ['octal', '0177.0.0.1'],
    ['short', '127.1'],
    ['IPv6 loopback', '[::1]'],
    ['IPv4-mapped IPv6', '[::ffff:127.0.0.1]'],
    ['a public address', '93.184.215.14'],
  ])('refuses an IP literal (%s) that no block allows', (_form, host) => {
    expect(reason(checkEgressTarget(list('example.com'), host, 443, strict))).toBe('ip_literal');
  });

  it('lets an IP literal through only inside an allowed block and port', () => {
    const s = list('203.0.113.0/24:443');
    expect(reason(checkEgressTarget(s, '203.0.113.9', 443, strict))).toBe('allowed');
    expect(reason(checkEgressTarget(s, '3405803785', 443, strict))).toBe('allowed');
    expect(reason(checkEgressTarget(s, '203.0.113.9', 80, strict))).toBe('port_not_allowed');
    expect(reason(checkEgressTarget(s, '203.0.114.9', 443, strict))).toBe('ip_literal');
  });

  it('permits open mode only where the operator does, and never for local names', () => {
    const open: NetworkSettings = { mode: 'open', allow: [] };
    expect(reason(checkEgressTarget(open, 'anything.example', 443, strict))).toBe('open_not_permitted');
    expect(reason(checkEgressTarget(open, 'anything.example', 443, { allowOpen: true }))).toBe('allowed');
    expect(reason(checkEgressTarget(open, 'localhost', 80, { allowOpen: true }))).toBe('local_name');
    expect(reason(checkEgressTarget(open, 'db.internal', 80, { allowOpen: true }))).toBe('local_name');
    expect(reason(checkEgressTarget(open, '10.0.0.1', 80, { allowOpen: true }))).toBe('ip_literal');
  });

  it('refuses what is not a host or a port', () => {
    expect(reason(checkEgressTarget(list('example.com'), 'exa mple.com', 443, strict))).toBe('bad_request');
    expect(reason(checkEgressTarget(list('example.com'), 'example.com', 70_000, strict))).toBe('bad_request');
  });
});

describe('checkEgressAddress', () => {
  const opts = { ownAddresses: ['198.51.100.1', '172.17.0.1', 'fe80::1'], reachableNets: [] };

  it('accepts a public address', () => {
    expect(checkEgressAddress('93.184.215.14', opts)).toBeNull();
    expect(checkEgressAddress('2606:2800:21f:cb07:6820:80da:af6b:8b2c', opts)).toBeNull();
  });

  it.each([
    '127.0.0.1',
    '10.1.2.3',
    '172.16.0.5',
    '192.168.1.1',
    '169.254.169.254',
    '100.100.100.200',
    '224.0.0.1',
    '::1',
    'fd00::1',
    'fe80::2',
    '::ffff:10.0.0.1',
    '64:ff9b::a00:1',
    '2002:a00:1::',
  ])('refuses the non-public address %s', (address) => {
    expect(checkEgressAddress(address, opts)?.reason).toBe('private_address');
  });

  it("refuses the host's own addresses, even inside a block the operator declared reachable", () => {
    expect(checkEgressAddress('0.0.0.0', opts)?.reason).toBe('own_address');
    expect(checkEgressAddress('198.51.100.1', { ...opts, reachableNets: ['198.51.100.0/24'] })?.reason).toBe(
      'own_address',
    );
    expect(checkEgressAddress('198.51.100.2', { ...opts, reachableNets: ['198.51.100.0/24'] })).toBeNull();
    expect(checkEgressAddress('198.51.100.2', opts)?.reason).toBe('private_address');
  });

  it('refuses a resolver answer that is not an address', () => {
    expect(checkEgressAddress('example.com', opts)?.reason).toBe('resolve_failed');
  });
});

describe('the schemas and the policy', () => {
  it('canonicalise a session network input and refuse a bad entry with its policy code', () => {
    const ok = sessionSetNetworkInput.parse({
      sessionId: 'ses_0123456789abcdef0123',
      network: { mode: 'allowlist', allow: ['Example.COM'] },
    });
    expect(ok.network).toEqual({ mode: 'allowlist', allow: ['example.com'] });
    const bad = sessionSetNetworkInput.safeParse({
      sessionId: 'ses_0123456789abcdef0123',
      network: { mode: 'allowlist', allow: ['localhost'] },
    });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]).toMatchObject({ params: { policyCode: 'HOST_INVALID' } });
  });

  it('take egress limits from the policy and refuse a reachable net that is not a block', () => {
    expect(parsePolicy({ egress: { reachableNets: ['10.20.0.0/16'] } }).egress.reachableNets).toEqual([
      '10.20.0.0/16',
    ]);
    expect(() => parsePolicy({ egress: { reachableNets: ['10.20.0.0'] } })).toThrow(/reachableNets/);
    expect(() => parsePolicy({ egress: { reachableNets: ['10.20.0.0/40'] } })).toThrow(/reachableNets/);
  });
});
