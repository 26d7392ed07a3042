import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isPolicyError, type PolicyErrorCode } from './errors.ts';
import {
  BLOCKED_PREVIEW_PORTS,
  type CanonicalHost,
  canonicalizeHost,
  isLoopbackOrPrivate,
  PREVIEW_PORT_RANGE,
  validatePreviewPort,
} from './preview.ts';

function codeOf(fn: () => unknown): PolicyErrorCode | 'NO_THROW' {
  try {
    fn();
  } catch (e) {
    if (isPolicyError(e)) return e.code;
    throw e;
  }
  return 'NO_THROW';
}

describe('validatePreviewPort', () => {
  it.each<[unknown, number]>([
    [3000, 3000],
    [9999, 9999],
    [5173, 5173],
    ['3000', 3000],
    ['8080', 8080],
    ['9999', 9999],
  ])('accepts %j', (input, port) => {
    expect(validatePreviewPort(input)).toBe(port);
  });

  it.each<[unknown, PolicyErrorCode]>([
    [2999, 'PORT_OUT_OF_RANGE'],
    [10000, 'PORT_OUT_OF_RANGE'],
    [0, 'PORT_OUT_OF_RANGE'],
    [-3000, 'PORT_OUT_OF_RANGE'],
    [65536, 'PORT_OUT_OF_RANGE'],
    ['1', 'PORT_OUT_OF_RANGE'],
    ['99999', 'PORT_OUT_OF_RANGE'],
    ['2999', 'PORT_OUT_OF_RANGE'],
    [22, 'PORT_BLOCKED'],
    [25, 'PORT_BLOCKED'],
    [80, 'PORT_BLOCKED'],
    [443, 'PORT_BLOCKED'],
    [3306, 'PORT_BLOCKED'],
    [5432, 'PORT_BLOCKED'],
    [6379, 'PORT_BLOCKED'],
    [27017, 'PORT_BLOCKED'],
    ['3306', 'PORT_BLOCKED'],
    ['6379', 'PORT_BLOCKED'],
    ['5432', 'PORT_BLOCKED'],
    [3000.5, 'PORT_INVALID'],
    [Number.NaN, 'PORT_INVALID'],
    [Number.POSITIVE_INFINITY, 'PORT_INVALID'],
    [2 ** 53, 'PORT_INVALID'],
    ['', 'PORT_INVALID'],
    [' 3000', 'PORT_INVALID'],
    ['3000 ', 'PORT_INVALID'],
    ['3000\n', 'PORT_INVALID'],
    ['+3000', 'PORT_INVALID'],
    ['-3000', 'PORT_INVALID'],
    ['03000', 'PORT_INVALID'],
    ['0x0BB8', 'PORT_INVALID'],
    ['3e3', 'PORT_INVALID'],
    ['1e4', 'PORT_INVALID'],
    ['3000.0', 'PORT_INVALID'],
    ['3000.', 'PORT_INVALID'],
    ['３０００', 'PORT_INVALID'],
    ['٣٠٠٠', 'PORT_INVALID'],
    ['3000abc', 'PORT_INVALID'],
    ['123456', 'PORT_INVALID'],
    [true, 'PORT_INVALID'],
    [null, 'PORT_INVALID'],
    [undefined, 'PORT_INVALID'],
    [[3000], 'PORT_INVALID'],
    [{ valueOf: () => 3000 }, 'PORT_INVALID'],
    [new Number(3000), 'PORT_INVALID'],
  ])('refuses %j with %s', (input, code) => {
    expect(codeOf(() => validatePreviewPort(input))).toBe(code);
  });

  it('refuses a bigint', () => {
    expect(codeOf(() => validatePreviewPort(3000n))).toBe('PORT_INVALID');
  });

  it('blocks every listed port, in or out of range, as number and string', () => {
    for (const port of BLOCKED_PREVIEW_PORTS) {
      expect(codeOf(() => validatePreviewPort(port))).toBe('PORT_BLOCKED');
      expect(codeOf(() => validatePreviewPort(String(port)))).toBe('PORT_BLOCKED');
    }
  });

  it('exposes frozen constants', () => {
    expect(PREVIEW_PORT_RANGE).toEqual({ min: 3000, max: 9999 });
    expect(Object.isFrozen(PREVIEW_PORT_RANGE)).toBe(true);
    expect(Object.isFrozen(BLOCKED_PREVIEW_PORTS)).toBe(true);
    expect([...BLOCKED_PREVIEW_PORTS].sort((a, b) => a - b)).toEqual([
      22, 25, 80, 443, 3306, 5432, 6379, 27017,
    ]);
  });

  it('property: accepts exactly the in-range unblocked integers, and their decimal strings', () => {
    fc.assert(
      fc.property(fc.integer({ min: -100_000, max: 100_000 }), (n) => {
        const ok = n >= 3000 && n <= 9999 && !BLOCKED_PREVIEW_PORTS.includes(n);
        expect(codeOf(() => validatePreviewPort(n)) === 'NO_THROW').toBe(ok);
        expect(codeOf(() => validatePreviewPort(String(n))) === 'NO_THROW').toBe(ok);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('canonicalizeHost: IPv4 in every inet_aton form', () => {
  it.each<[string, string]>([
    ['127.0.0.1', '127.0.0.1'],
    ['2130706433', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['0x7f.0.0.1', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['0X7F.1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['127.0.1', '127.0.0.1'],
    ['0x7f000001', '127.0.0.1'],
    ['017700000001', '127.0.0.1'],
    ['0x7f.0.0x0.01', '127.0.0.1'],
    ['127.0.0.1.', '127.0.0.1'],
    ['0', '0.0.0.0'],
    ['0x', '0.0.0.0'],
    ['00', '0.0.0.0'],
    ['4294967295', '255.255.255.255'],
    ['169.254.169.254', '169.254.169.254'],
    ['0xa9.0xfe.0xa9.0xfe', '169.254.169.254'],
    ['0251.0376.0251.0376', '169.254.169.254'],
    ['2852039166', '169.254.169.254'],
    ['10.1', '10.0.0.1'],
    ['192.168.257', '192.168.1.1'],
    ['1.2.3.4', '1.2.3.4'],
  ])('%j → %s', (input, value) => {
    expect(canonicalizeHost(input)).toEqual({ kind: 'ipv4', value });
  });

  it.each([
    '256.0.0.1',
    '1.2.3.256',
    '1.2.65536',
    '1.16777216',
    '4294967296',
    '1.2.3.4.5',
    '08.0.0.1',
    '0189.0.0.1',
    '1..2.3',
    '.1.2.3',
    '1.2.3.4..',
    '0x1g.0.0.1',
    'foo.0x10',
    'example.123',
    '-1.2.3.4',
    '1.2.3.-4',
    '١٢٧.0.0.1',
    '99999999999999999999999',
  ])('refuses the malformed numeric host %j', (input) => {
    expect(codeOf(() => canonicalizeHost(input))).toBe('HOST_INVALID');
  });

  it('property: every spelling of a 32-bit address canonicalises to the same dotted quad', () => {
    const spell = (n: number, radix: 8 | 10 | 16): string =>
      radix === 16 ? `0x${n.toString(16)}` : radix === 8 ? `0${n.toString(8)}` : n.toString(10);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.constantFrom<8 | 10 | 16>(8, 10, 16), { minLength: 4, maxLength: 4 }),
        (value, parts, radixes) => {
          const bytes = [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255];
          const head = bytes.slice(0, parts - 1);
          const rest = bytes.slice(parts - 1).reduce((acc, b) => acc * 256 + b, 0);
          const text = [...head, rest].map((n, i) => spell(n, radixes[i] ?? 10)).join('.');
          expect(canonicalizeHost(text)).toEqual({ kind: 'ipv4', value: bytes.join('.') });
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('canonicalizeHost: IPv6', () => {
  it.each<[string, CanonicalHost]>([
    ['::1', { kind: 'ipv6', value: '::1' }],
    ['[::1]', { kind: 'ipv6', value: '::1' }],
    ['[0:0:0:0:0:0:0:1]', { kind: 'ipv6', value: '::1' }],
    ['[0000:0000:0000:0000:0000:0000:0000:0001]', { kind: 'ipv6', value: '::1' }],
    ['::', { kind: 'ipv6', value: '::' }],
    ['[::]', { kind: 'ipv6', value: '::' }],
    ['2001:DB8::1', { kind: 'ipv6', value: '2001:db8::1' }],
    ['2001:db8:0:0:1:0:0:1', { kind: 'ipv6', value: '2001:db8::1:0:0:1' }],
    ['2001:0db8:0000:0000:0000:ff00:0042:8329', { kind: 'ipv6', value: '2001:db8::ff00:42:8329' }],
    ['2001:db8:0:1:1:1:1:1', { kind: 'ipv6', value: '2001:db8:0:1:1:1:1:1' }],
    ['fe80::1', { kind: 'ipv6', value: 'fe80::1' }],
    ['1::', { kind: 'ipv6', value: '1::' }],
    ['::2:3:4:5:6:7:8', { kind: 'ipv6', value: '0:2:3:4:5:6:7:8' }],
    ['::127.0.0.1', { kind: 'ipv6', value: '::7f00:1' }],
    ['64:ff9b::10.0.0.1', { kind: 'ipv6', value: '64:ff9b::a00:1' }],
    ['::ffff:127.0.0.1', { kind: 'ipv4', value: '127.0.0.1' }],
    ['[::ffff:127.0.0.1]', { kind: 'ipv4', value: '127.0.0.1' }],
    ['::ffff:7f00:1', { kind: 'ipv4', value: '127.0.0.1' }],
    ['[::FFFF:7F00:0001]', { kind: 'ipv4', value: '127.0.0.1' }],
    ['0:0:0:0:0:ffff:a9fe:a9fe', { kind: 'ipv4', value: '169.254.169.254' }],
  ])('%j → %j', (input, expected) => {
    expect(canonicalizeHost(input)).toEqual(expected);
  });

  it.each([
    '[::1',
    '::1]',
    '[[::1]]',
    '[::1]:3000',
    '[fe80::1%eth0]',
    'fe80::1%25eth0',
    ':::',
    '1::2::3',
    ':1',
    '1:',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7::8',
    '12345::',
    'g::1',
    '::1.2.3',
    '::1.2.3.256',
    '::01.2.3.4',
    '1.2.3.4::',
    '::1.2.3.4:5',
    '[1.2.3.4]',
    '[]',
    '[localhost]',
    'localhost:3000',
    '::ffff:0x7f.1',
  ])('refuses %j', (input) => {
    expect(codeOf(() => canonicalizeHost(input))).toBe('HOST_INVALID');
  });
});

describe('canonicalizeHost: names', () => {
  it.each<[string, string]>([
    ['example.com', 'example.com'],
    ['Example.COM', 'example.com'],
    ['example.com.', 'example.com'],
    ['LOCALHOST.', 'localhost'],
    ['xn--bcher-kva.example', 'xn--bcher-kva.example'],
    ['a-b.c-d', 'a-b.c-d'],
    ['123.com', '123.com'],
    ['1.2.3.4a', '1.2.3.4a'],
    [`${'a'.repeat(63)}.com`, `${'a'.repeat(63)}.com`],
  ])('%j → %s', (input, value) => {
    expect(canonicalizeHost(input)).toEqual({ kind: 'name', value });
  });

  it('accepts 253 characters and refuses 254', () => {
    const label = 'a'.repeat(63);
    const name253 = [label, label, label, 'a'.repeat(61)].join('.');
    expect(name253).toHaveLength(253);
    expect(canonicalizeHost(name253).value).toBe(name253);
    expect(canonicalizeHost(`${name253}.`).value).toBe(name253);
    expect(codeOf(() => canonicalizeHost(`${name253}a`))).toBe('HOST_INVALID');
  });

  it.each([
    '',
    '.',
    'example..com',
    'example.com..',
    '.example.com',
    '-example.com',
    'example-.com',
    `${'a'.repeat(64)}.com`,
    'exa mple.com',
    'example.com ',
    'exa_mple.com',
    'exämple.com',
    'ex\u0000ample.com',
    'example.com/evil',
    'user@example.com',
    'example.com:80',
    'example.com\\evil',
    '*.example.com',
    'a'.repeat(300),
  ])('refuses %j', (input) => {
    expect(codeOf(() => canonicalizeHost(input))).toBe('HOST_INVALID');
  });

  it('refuses non-strings', () => {
    expect(codeOf(() => canonicalizeHost(2130706433 as unknown as string))).toBe('HOST_INVALID');
    expect(codeOf(() => canonicalizeHost(null as unknown as string))).toBe('HOST_INVALID');
  });

  it('property: canonicalisation is idempotent', () => {
    const host = fc.oneof(
      fc.domain(),
      fc.ipV4().map(String),
      fc.ipV4Extended(),
      fc.ipV6(),
      fc.ipV6().map((a) => `[${a}]`),
      fc.string({ maxLength: 30 }),
    );
    fc.assert(
      fc.property(host, (input) => {
        let c: CanonicalHost;
        try {
          c = canonicalizeHost(input);
        } catch (e) {
          expect(isPolicyError(e)).toBe(true);
          return;
        }
        expect(canonicalizeHost(c.value)).toEqual(c);
      }),
      { numRuns: 2000 },
    );
  });

  it('property: every IPv4 and IPv6 address fast-check can spell is accepted', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV4Extended(), fc.ipV6()), (input) => {
        expect(['ipv4', 'ipv6']).toContain(canonicalizeHost(input).kind);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('isLoopbackOrPrivate', () => {
  it.each([
    '127.0.0.1',
    '127.255.255.254',
    '2130706433',
    '0x7f.1',
    '0177.0.0.1',
    '127.1',
    '0.0.0.0',
    '0',
    '10.0.0.1',
    '10.255.255.255',
    '172.16.0.1',
    '172.17.0.2',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '0xa9fea9fe',
    '100.64.0.1',
    '100.127.255.255',
    '224.0.0.1',
    '255.255.255.255',
    '::1',
    '[::1]',
    '::',
    '[::ffff:127.0.0.1]',
    '::ffff:7f00:1',
    '::ffff:10.0.0.1',
    '::127.0.0.1',
    'fc00::1',
    'fd12:3456::1',
    'fe80::1',
    'febf::1',
    'fec0::1',
    'ff02::1',
    '64:ff9b::7f00:1',
    '2002:7f00:1::',
    '2001:0:4136:e378::1',
    'localhost',
    'LOCALHOST.',
    'foo.localhost',
    'a.b.localhost',
    'db',
    'redis',
    'metadata.google.internal',
    'host.docker.internal',
    'printer.local',
    'router.home.arpa',
    'nas.lan',
    'x.localdomain',
  ])('%j is not public', (host) => {
    expect(isLoopbackOrPrivate(host)).toBe(true);
  });

  it.each([
    '8.8.8.8',
    '1.1.1.1',
    '172.15.255.255',
    '172.32.0.0',
    '100.63.255.255',
    '100.128.0.0',
    '169.253.255.255',
    '11.0.0.1',
    '192.169.0.1',
    '2606:4700:4700::1111',
    '2a00:1450:4001::200e',
    'fbff::1',
    'fe7f::1',
    'example.com',
    'localhost.example.com',
    'notlocalhost.com',
    'internal.example.com',
  ])('%j is public', (host) => {
    expect(isLoopbackOrPrivate(host)).toBe(false);
  });

  it('re-canonicalises a hand-built object instead of trusting it', () => {
    expect(isLoopbackOrPrivate({ kind: 'name', value: '0x7f.1' })).toBe(true);
    expect(isLoopbackOrPrivate({ kind: 'ipv6', value: '::ffff:127.0.0.1' })).toBe(true);
    expect(isLoopbackOrPrivate(canonicalizeHost('[::1]'))).toBe(true);
  });

  it('throws HOST_INVALID for hosts that do not parse', () => {
    expect(codeOf(() => isLoopbackOrPrivate('127.0.0.1:80'))).toBe('HOST_INVALID');
    expect(codeOf(() => isLoopbackOrPrivate({ kind: 'ipv4', value: '' }))).toBe('HOST_INVALID');
  });

  it('property: every address in 127/8, 10/8 and 192.168/16 is caught in any spelling', () => {
    fc.assert(
      fc.property(
        fc.constantFrom([127, 8], [10, 8], [192 * 256 + 168, 16]),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.constantFrom<8 | 10 | 16>(8, 10, 16),
        ([net, bits], noise, radix) => {
          const hostBits = 32 - (bits as number);
          const value = ((((net as number) << hostBits) >>> 0) + (noise % 2 ** hostBits)) >>> 0;
          const text =
            radix === 16 ? `0x${value.toString(16)}` : radix === 8 ? `0${value.toString(8)}` : `${value}`;
          expect(isLoopbackOrPrivate(text)).toBe(true);
          const mapped = `::ffff:${(value >>> 16).toString(16)}:${(value & 0xffff).toString(16)}`;
          expect(isLoopbackOrPrivate(mapped)).toBe(true);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
