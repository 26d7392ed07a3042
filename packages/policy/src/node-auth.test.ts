import { createHash, createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isPolicyError } from './errors.ts';
import {
  checkNodeSecret,
  EMPTY_BODY_SHA256,
  type NodeRequestClaims,
  nodeSecretSchema,
  signNodeRequest,
  verifyNodeRequest,
} from './node-auth.ts';

// A fixed secret and clock so every header below is reproducible.
const SECRET = new Uint8Array(Array.from({ length: 48 }, (_, i) => (i * 29 + 3) & 255));
const NOW = 1_800_000_000_000;
const BODY = '{"path":"src/app.ts","content":"x"}';
const CLAIMS: NodeRequestClaims = {
  method: 'POST',
  path: '/sessions/ses_abcdefghijklmnop/files?op=write',
  bodySha256: createHash('sha256').update(BODY).digest('hex'),
  principal: '{"userId":"user_1","role":"member"}',
  at: NOW,
  nonce: 'n0nce-AAAAAAAAAAAAAAAA',
};
const { at: _at, nonce: _nonce, ...EXPECTED } = CLAIMS;

const verify = (header: string, expected = EXPECTED, now = NOW, maxSkewMs?: number) =>
  verifyNodeRequest(SECRET, header, expected, { now, ...(maxSkewMs === undefined ? {} : { maxSkewMs }) });

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isPolicyError(e)) return e.code;
    throw e;
  }
  throw new Error('expected a PolicyError');
}

describe('sign → verify', () => {
  it('round trip returns at and nonce', () => {
    const header = signNodeRequest(SECRET, CLAIMS);
    expect(header).toMatch(/^v1\.1800000000000\.n0nce-AAAAAAAAAAAAAAAA\.[A-Za-z0-9_-]{43}$/);
    expect(verify(header)).toEqual({ ok: true, at: NOW, nonce: CLAIMS.nonce });
  });

  it('is deterministic for the same claims (the nonce is what makes headers unique)', () => {
    expect(signNodeRequest(SECRET, CLAIMS)).toBe(signNodeRequest(SECRET, CLAIMS));
  });

  it('a request without a body signs the empty hash', () => {
    expect(EMPTY_BODY_SHA256).toBe(createHash('sha256').update('').digest('hex'));
    const get = { ...CLAIMS, method: 'GET', bodySha256: EMPTY_BODY_SHA256 };
    const { at: _a, nonce: _n, ...expected } = get;
    expect(verify(signNodeRequest(SECRET, get), expected).ok).toBe(true);
  });

  it('the MAC is over a JSON array, not a concatenation', () => {
    const header = signNodeRequest(SECRET, CLAIMS);
    const message = JSON.stringify([
      'studio-node-request',
      'v1',
      CLAIMS.method,
      CLAIMS.path,
      CLAIMS.bodySha256,
      CLAIMS.principal,
      CLAIMS.at,
      CLAIMS.nonce,
    ]);
    expect(header.split('.')[3]).toBe(createHmac('sha256', SECRET).update(message).digest('base64url'));
  });
});

describe('each claim is covered', () => {
  it.each<[string, Partial<NodeRequestClaims>]>([
    ['method', { method: 'DELETE' }],
    ['path', { path: '/sessions/ses_abcdefghijklmnop/files?op=remove' }],
    ['query only', { path: '/sessions/ses_abcdefghijklmnop/files?op=write&x=1' }],
    ['body', { bodySha256: EMPTY_BODY_SHA256 }],
    ['principal', { principal: '{"userId":"admin","role":"admin"}' }],
  ])('%s changed → mismatch', (_name, change) => {
    const header = signNodeRequest(SECRET, CLAIMS);
    expect(verify(header, { ...EXPECTED, ...change })).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('at changed in the header → mismatch', () => {
    const [v, , nonce, mac] = signNodeRequest(SECRET, CLAIMS).split('.');
    expect(verify(`${v}.${NOW + 1}.${nonce}.${mac}`)).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('nonce changed in the header → mismatch', () => {
    const [v, at, , mac] = signNodeRequest(SECRET, CLAIMS).split('.');
    expect(verify(`${v}.${at}.n0nce-BBBBBBBBBBBBBBBB.${mac}`)).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('one MAC character changed → mismatch', () => {
    const header = signNodeRequest(SECRET, CLAIMS);
    const flipped = header.slice(0, -2) + (header.at(-2) === 'A' ? 'B' : 'A') + header.slice(-1);
    expect(verify(flipped)).toEqual({ ok: false, reason: 'mismatch' });
  });

  it('fields cannot slide into each other (path/principal boundaries)', () => {
    const a = { ...CLAIMS, path: '/a', principal: 'bc' };
    const b = { ...CLAIMS, path: '/ab', principal: 'c' };
    expect(signNodeRequest(SECRET, a)).not.toBe(signNodeRequest(SECRET, b));
    const { at: _a, nonce: _n, ...expectedB } = b;
    expect(verify(signNodeRequest(SECRET, a), expectedB).ok).toBe(false);
  });

  it('an expectation that could never be signed is a mismatch, not a throw', () => {
    const header = signNodeRequest(SECRET, CLAIMS);
    for (const bad of [
      { method: 'post' },
      { path: 'no-slash' },
      { path: `/${'a'.repeat(9000)}` },
      { path: '/a b' },
      { bodySha256: 'XYZ' },
      { principal: '' },
      { principal: '\ud800' },
    ]) {
      expect(verify(header, { ...EXPECTED, ...bad })).toEqual({ ok: false, reason: 'mismatch' });
    }
  });
});

describe('clock skew', () => {
  const header = signNodeRequest(SECRET, CLAIMS);

  it('accepts up to 30 s either way', () => {
    expect(verify(header, EXPECTED, NOW + 30_000).ok).toBe(true);
    expect(verify(header, EXPECTED, NOW - 30_000).ok).toBe(true);
  });

  it('30.001 s old is expired, 30.001 s early is future', () => {
    expect(verify(header, EXPECTED, NOW + 30_001)).toEqual({ ok: false, reason: 'expired' });
    expect(verify(header, EXPECTED, NOW - 30_001)).toEqual({ ok: false, reason: 'future' });
  });

  it('honours maxSkewMs', () => {
    expect(verify(header, EXPECTED, NOW + 5_000, 4_000)).toEqual({ ok: false, reason: 'expired' });
    expect(verify(header, EXPECTED, NOW + 5_000, 6_000).ok).toBe(true);
  });

  it('bad options are the caller’s bug: INPUT_INVALID', () => {
    expect(code(() => verify(header, EXPECTED, Number.NaN))).toBe('INPUT_INVALID');
    expect(code(() => verify(header, EXPECTED, NOW, -1))).toBe('INPUT_INVALID');
  });
});

describe('malformed headers', () => {
  const header = signNodeRequest(SECRET, CLAIMS);
  const [, at, nonce, mac] = header.split('.') as [string, string, string, string];

  it.each([
    ['empty', ''],
    ['v2', `v2.${at}.${nonce}.${mac}`],
    ['V1', `V1.${at}.${nonce}.${mac}`],
    ['a leading zero in at', `v1.0${at}.${nonce}.${mac}`],
    ['a sign in at', `v1.+${at}.${nonce}.${mac}`],
    ['at in exponent form', `v1.1.8e12.${nonce}.${mac}`],
    ['a short nonce', `v1.${at}.short.${mac}`],
    ['a nonce with a dot', `v1.${at}.aaaaaaaa.bbbbbbbb.${mac}`],
    ['a short MAC', `v1.${at}.${nonce}.${mac.slice(1)}`],
    ['a padded MAC', `v1.${at}.${nonce}.${mac}=`],
    ['standard base64 MAC', `v1.${at}.${nonce}.${mac.slice(0, -1)}+`],
    ['trailing space', `${header} `],
    ['a trailing newline', `${header}\n`],
    ['a second header folded in', `${header}, ${header}`],
    ['megabytes', `v1.${at}.${nonce}.${'A'.repeat(1 << 20)}`],
  ])('%s', (_name, value) => {
    expect(verify(value)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('a non-string header', () => {
    for (const value of [undefined, null, 42, ['v1'], {}]) {
      expect(verify(value as unknown as string)).toEqual({ ok: false, reason: 'malformed' });
    }
  });

  it('fast-check: any string never throws and never verifies', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.string({ unit: 'binary', maxLength: 300 }),
          fc
            .tuple(
              fc.nat(),
              fc.stringMatching(/^[A-Za-z0-9_-]{16,40}$/),
              fc.stringMatching(/^[A-Za-z0-9_-]{43}$/),
            )
            .map(([t, n, m]) => `v1.${t}.${n}.${m}`),
        ),
        (value) => {
          const result = verify(value);
          expect(result.ok).toBe(false);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('the secret', () => {
  it('31 bytes is refused with a message naming how to make one', () => {
    const short = SECRET.slice(0, 31);
    expect(code(() => signNodeRequest(short, CLAIMS))).toBe('KEY_INVALID');
    expect(code(() => verifyNodeRequest(short, 'v1', EXPECTED, { now: NOW }))).toBe('KEY_INVALID');
    expect(() => checkNodeSecret(short)).toThrow(
      /openssl rand -base64 48 \| docker secret create studio_node_secret -/,
    );
  });

  it('32 bytes is enough', () => {
    expect(checkNodeSecret(SECRET.slice(0, 32))).toHaveLength(32);
  });

  it('a zero-filled buffer or a string is refused', () => {
    expect(code(() => checkNodeSecret(new Uint8Array(64)))).toBe('KEY_INVALID');
    expect(code(() => checkNodeSecret('a'.repeat(64)))).toBe('KEY_INVALID');
  });

  it('nodeSecretSchema reports the policy code', () => {
    expect(nodeSecretSchema.safeParse(SECRET).success).toBe(true);
    const result = nodeSecretSchema.safeParse(SECRET.slice(0, 31));
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]).toMatchObject({ code: 'custom', params: { policyCode: 'KEY_INVALID' } });
  });

  it('the secret file as written by openssl (base64 text and a newline) works', () => {
    const file = new TextEncoder().encode(`${Buffer.from(SECRET).toString('base64')}\n`);
    expect(verifyNodeRequest(file, signNodeRequest(file, CLAIMS), EXPECTED, { now: NOW }).ok).toBe(true);
  });
});

describe('signNodeRequest refuses claims it must not sign (INPUT_INVALID)', () => {
  it.each<[string, Partial<NodeRequestClaims>]>([
    ['lower-case method', { method: 'get' }],
    ['a path without /', { path: 'sessions' }],
    ['a path with a newline', { path: '/a\nb' }],
    ['a body hash in upper case', { bodySha256: EMPTY_BODY_SHA256.toUpperCase() }],
    ['an empty principal', { principal: '' }],
    ['a principal over 8192', { principal: 'x'.repeat(8193) }],
    ['a negative at', { at: -1 }],
    ['a fractional at', { at: 1.5 }],
    ['a short nonce', { nonce: 'abc' }],
    ['a nonce with a dot', { nonce: 'aaaaaaaa.bbbbbbbb' }],
  ])('%s', (_name, change) => {
    expect(code(() => signNodeRequest(SECRET, { ...CLAIMS, ...change }))).toBe('INPUT_INVALID');
  });
});
