import { createHmac, generateKeyPairSync, sign as rsaSign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isPolicyError, type PolicyError } from './errors.ts';
import { MAX_TOKEN_LENGTH } from './limits.ts';
import {
  API_TOKEN_AUDIENCE,
  PREVIEW_TOKEN_AUDIENCE,
  type SessionTokenClaims,
  signSessionToken,
  TOKEN_ISSUER,
  verifySessionToken,
} from './tokens.ts';

// A fixed key and clock so every forged token below is reproducible.
const KEY = new Uint8Array(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 255));
const OTHER_KEY = new Uint8Array(Array.from({ length: 32 }, (_, i) => (i * 53 + 7) & 255));
const NOW = new Date('2026-01-01T12:00:00Z');
const NOW_S = Math.floor(NOW.getTime() / 1000);
const CLAIMS: SessionTokenClaims = {
  userId: 'user_1',
  sessionId: 'ses_abcdefghijklmnop',
  projectPath: 'apps/web',
};

const b64url = (data: string | Buffer): string => Buffer.from(data).toString('base64url');

/** Builds a compact JWS by hand: header and payload as given, HMAC-SHA256 over them with `key`. */
function forge(header: object, payload: object, key: Uint8Array | null = KEY, hash = 'sha256'): string {
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const sig = key === null ? '' : createHmac(hash, key).update(signingInput).digest('base64url');
  return `${signingInput}.${sig}`;
}

const goodHeader = { alg: 'HS256', typ: 'JWT' };
const goodPayload = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  sub: CLAIMS.userId,
  sid: CLAIMS.sessionId,
  projectPath: CLAIMS.projectPath,
  iss: TOKEN_ISSUER,
  aud: API_TOKEN_AUDIENCE,
  iat: NOW_S - 60,
  exp: NOW_S + 3600,
  ...overrides,
});
const without = (key: string): Record<string, unknown> => {
  const p = goodPayload();
  delete p[key];
  return p;
};

async function refusal(promise: Promise<unknown>): Promise<PolicyError> {
  try {
    await promise;
  } catch (e) {
    if (isPolicyError(e)) return e;
    throw e;
  }
  throw new Error('expected a PolicyError, but the call succeeded');
}

const verify = (token: unknown, key: Uint8Array = KEY, options = {}) =>
  verifySessionToken(token as string, key, { now: NOW, ...options });

describe('sign → verify round trip', () => {
  it('returns the claims with iat and exp', async () => {
    const token = await signSessionToken(CLAIMS, KEY, { now: NOW });
    const verified = await verify(token);
    expect(verified).toEqual({ ...CLAIMS, iat: NOW_S, exp: NOW_S + 3600 });
  });

  it('pins the header to HS256/JWT and puts userId in sub', async () => {
    const token = await signSessionToken(CLAIMS, KEY, { now: NOW });
    const [h, p] = token.split('.') as [string, string];
    expect(JSON.parse(Buffer.from(h, 'base64url').toString())).toEqual({ alg: 'HS256', typ: 'JWT' });
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
    expect(payload).toMatchObject({
      sub: 'user_1',
      sid: CLAIMS.sessionId,
      iss: TOKEN_ISSUER,
      aud: API_TOKEN_AUDIENCE,
    });
  });

  it('accepts a hand-made token that follows every rule (so the refusals below are meaningful)', async () => {
    await expect(verify(forge(goodHeader, goodPayload()))).resolves.toMatchObject(CLAIMS);
  });

  it('accepts the workspace root as projectPath', async () => {
    const token = await signSessionToken({ ...CLAIMS, projectPath: '' }, KEY, { now: NOW });
    expect((await verify(token)).projectPath).toBe('');
  });

  it('separates API and preview audiences', async () => {
    const preview = await signSessionToken(CLAIMS, KEY, { now: NOW, audience: PREVIEW_TOKEN_AUDIENCE });
    await expect(verify(preview, KEY, { audience: PREVIEW_TOKEN_AUDIENCE })).resolves.toMatchObject(CLAIMS);
    expect((await refusal(verify(preview))).code).toBe('TOKEN_CLAIMS');
    const api = await signSessionToken(CLAIMS, KEY, { now: NOW });
    expect((await refusal(verify(api, KEY, { audience: PREVIEW_TOKEN_AUDIENCE }))).code).toBe('TOKEN_CLAIMS');
  });

  it('honours a custom issuer on both sides', async () => {
    const token = await signSessionToken(CLAIMS, KEY, { now: NOW, issuer: 'studio-staging' });
    await expect(verify(token, KEY, { issuer: 'studio-staging' })).resolves.toMatchObject(CLAIMS);
    expect((await refusal(verify(token))).code).toBe('TOKEN_CLAIMS');
  });
});

describe('verifySessionToken refuses forged and broken tokens', () => {
  it.each(['none', 'None', 'NONE', 'nOnE'])('alg %j with an empty signature', async (alg) => {
    const e = await refusal(verify(forge({ alg, typ: 'JWT' }, goodPayload(), null)));
    expect(e.code).toBe('TOKEN_INVALID');
  });

  it.each(['none', 'None', 'NONE', 'nOnE'])('alg %j even with a valid HMAC attached', async (alg) => {
    const e = await refusal(verify(forge({ alg, typ: 'JWT' }, goodPayload()))); // signed with the real key
    expect(e.code).toBe('TOKEN_INVALID');
  });

  it.each([
    ['HS384', 'sha384'],
    ['HS512', 'sha512'],
  ])('alg %s correctly signed with the right key', async (alg, hash) => {
    const e = await refusal(verify(forge({ alg, typ: 'JWT' }, goodPayload(), KEY, hash)));
    expect(e.code).toBe('TOKEN_INVALID');
  });

  it('RS256 header (key confusion: HMAC keyed with a "public key")', async () => {
    const e = await refusal(verify(forge({ alg: 'RS256', typ: 'JWT' }, goodPayload())));
    expect(e.code).toBe('TOKEN_INVALID');
  });

  it('a real RS256 token from another issuer', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const input = `${b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT' }))}.${b64url(JSON.stringify(goodPayload()))}`;
    const sig = rsaSign('sha256', Buffer.from(input), privateKey).toString('base64url');
    expect((await refusal(verify(`${input}.${sig}`))).code).toBe('TOKEN_INVALID');
  });

  it('a tampered payload (sub swapped, signature kept)', async () => {
    const token = await signSessionToken(CLAIMS, KEY, { now: NOW });
    const [h, , s] = token.split('.') as [string, string, string];
    const evil = b64url(JSON.stringify(goodPayload({ sub: 'admin' })));
    expect((await refusal(verify(`${h}.${evil}.${s}`))).code).toBe('TOKEN_INVALID');
  });

  it('a tampered header', async () => {
    const token = await signSessionToken(CLAIMS, KEY, { now: NOW });
    const [, p, s] = token.split('.') as [string, string, string];
    const h = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: 'x' }));
    expect((await refusal(verify(`${h}.${p}.${s}`))).code).toBe('TOKEN_INVALID');
  });

  it('a tampered signature (one character flipped)', async () => {
    const token = await signSessionToken(CLAIMS, KEY, { now: NOW });
    const last = token.at(-2) === 'A' ? 'B' : 'A';
    const flipped = `${token.slice(0, -2)}${last}${token.slice(-1)}`;
    expect((await refusal(verify(flipped))).code).toBe('TOKEN_INVALID');
  });

  it('a token signed with another key', async () => {
    const token = await signSessionToken(CLAIMS, OTHER_KEY, { now: NOW });
    const e = await refusal(verify(token));
    expect(e.code).toBe('TOKEN_INVALID');
    expect(e.cause).toBeDefined();
  });

  it('an expired token → TOKEN_EXPIRED, with jose error as cause', async () => {
    const e = await refusal(verify(forge(goodHeader, goodPayload({ iat: NOW_S - 7200, exp: NOW_S - 60 }))));
    expect(e.code).toBe('TOKEN_EXPIRED');
    expect((e.cause as { code?: string }).code).toBe('ERR_JWT_EXPIRED');
  });

  it('an expired token within the 30 s tolerance is still accepted, beyond it is not', async () => {
    await expect(verify(forge(goodHeader, goodPayload({ exp: NOW_S - 20 })))).resolves.toBeDefined();
    expect((await refusal(verify(forge(goodHeader, goodPayload({ exp: NOW_S - 31 }))))).code).toBe(
      'TOKEN_EXPIRED',
    );
  });

  it('a token older than 4 h even if exp was set far ahead → refused', async () => {
    const e = await refusal(
      verify(forge(goodHeader, goodPayload({ iat: NOW_S - 5 * 3600, exp: NOW_S + 3600 }))),
    );
    expect(e.code).toBe('TOKEN_EXPIRED');
  });

  it('a lifetime over 4 h (exp - iat) → TOKEN_CLAIMS', async () => {
    const e = await refusal(verify(forge(goodHeader, goodPayload({ iat: NOW_S, exp: NOW_S + 5 * 3600 }))));
    expect(e.code).toBe('TOKEN_CLAIMS');
  });

  it('exp not after iat → TOKEN_CLAIMS', async () => {
    const e = await refusal(verify(forge(goodHeader, goodPayload({ iat: NOW_S + 20, exp: NOW_S + 10 }))));
    expect(e.code).toBe('TOKEN_CLAIMS');
    const e2 = await refusal(verify(forge(goodHeader, goodPayload({ iat: NOW_S, exp: NOW_S }))));
    expect(e2.code).toBe('TOKEN_CLAIMS');
  });

  it('a future iat → TOKEN_CLAIMS', async () => {
    const e = await refusal(verify(forge(goodHeader, goodPayload({ iat: NOW_S + 3600, exp: NOW_S + 7200 }))));
    expect(e.code).toBe('TOKEN_CLAIMS');
  });

  it('a future nbf → TOKEN_CLAIMS', async () => {
    const e = await refusal(verify(forge(goodHeader, goodPayload({ nbf: NOW_S + 600 }))));
    expect(e.code).toBe('TOKEN_CLAIMS');
  });

  it.each(['exp', 'iat', 'sub', 'iss', 'aud', 'sid', 'projectPath'])(
    'a missing %s → TOKEN_CLAIMS',
    async (claim) => {
      const e = await refusal(verify(forge(goodHeader, without(claim))));
      expect(e.code).toBe('TOKEN_CLAIMS');
    },
  );

  it.each<[string, Record<string, unknown>]>([
    ['wrong issuer', { iss: 'evil' }],
    ['wrong audience', { aud: 'claude-studio-preview' }],
    ['audience list including ours', { aud: [API_TOKEN_AUDIENCE, PREVIEW_TOKEN_AUDIENCE] }],
    ['non-numeric exp', { exp: String(NOW_S + 3600) }],
    ['fractional iat', { iat: NOW_S - 0.5 }],
    ['malformed sub', { sub: '../admin' }],
    ['numeric sub', { sub: 42 }],
    ['malformed sid', { sid: 'not-a-session' }],
    ['absolute projectPath', { projectPath: '/etc' }],
    ['traversing projectPath', { projectPath: '../other-user' }],
    ['encoded projectPath', { projectPath: '%2e%2e' }],
  ])('%s → TOKEN_CLAIMS', async (_, overrides) => {
    const e = await refusal(verify(forge(goodHeader, goodPayload(overrides))));
    expect(e.code).toBe('TOKEN_CLAIMS');
  });

  it('a wrong typ header → TOKEN_INVALID', async () => {
    const e = await refusal(verify(forge({ alg: 'HS256', typ: 'at+jwt' }, goodPayload())));
    expect(e.code).toBe('TOKEN_INVALID');
  });

  it('an unknown crit header → TOKEN_INVALID', async () => {
    const e = await refusal(
      verify(forge({ alg: 'HS256', typ: 'JWT', crit: ['exp2'], exp2: 1 }, goodPayload())),
    );
    expect(e.code).toBe('TOKEN_INVALID');
  });

  it('a 1 MB token is refused by length before any parsing', async () => {
    // Validly signed, so only the length rule can refuse it.
    const huge = forge(goodHeader, goodPayload({ pad: 'x'.repeat(1024 * 1024) }));
    const e = await refusal(verify(huge));
    expect(e.code).toBe('TOKEN_INVALID');
    expect(e.message).toMatch(/longer than 4096/);
    expect(e.cause).toBeUndefined(); // jose never saw it
  });

  it('a token of MAX_TOKEN_LENGTH + 1 is refused unparsed, one within the limit is parsed', async () => {
    const e = await refusal(verify('a'.repeat(MAX_TOKEN_LENGTH + 1)));
    expect(e.message).toMatch(/longer than/);
    const e2 = await refusal(verify(`${'a'.repeat(100)}.${'b'.repeat(100)}.${'c'.repeat(100)}`));
    expect(e2.code).toBe('TOKEN_INVALID');
    expect(e2.cause).toBeDefined();
  });

  it.each([
    ['empty', ''],
    ['two parts', 'a.b'],
    ['four parts', 'a.b.c.d'],
    ['JWE (five parts)', 'a.b.c.d.e'],
    ['padding', 'a=.b.c'],
    ['spaces', 'a .b.c'],
    ['garbage base64', '!!!.???.###'],
    ['JSON not an object', `${b64url('"x"')}.${b64url('1')}.abc`],
  ])('malformed (%s) → TOKEN_INVALID', async (_, token) => {
    expect((await refusal(verify(token))).code).toBe('TOKEN_INVALID');
  });

  it.each([undefined, null, 42, {}, ['a.b.c'], new String('a.b.c')])(
    'non-string %j → TOKEN_INVALID',
    async (token) => {
      expect((await refusal(verify(token))).code).toBe('TOKEN_INVALID');
    },
  );
});

describe('keys and options', () => {
  it.each<[string, unknown]>([
    ['a string', 'a'.repeat(64)],
    ['31 bytes', new Uint8Array(31).fill(1).map((_, i) => i)],
    ['an empty array', new Uint8Array(0)],
    ['all zero bytes', new Uint8Array(32)],
    ['one repeated byte', new Uint8Array(64).fill(7)],
    ['a plain array', Array.from({ length: 32 }, (_, i) => i)],
    ['undefined', undefined],
  ])('refuses a key that is %s (KEY_INVALID) for sign and verify', async (_, key) => {
    expect((await refusal(signSessionToken(CLAIMS, key as Uint8Array, { now: NOW }))).code).toBe(
      'KEY_INVALID',
    );
    const token = forge(goodHeader, goodPayload());
    expect((await refusal(verifySessionToken(token, key as Uint8Array, { now: NOW }))).code).toBe(
      'KEY_INVALID',
    );
  });

  it('accepts a Buffer key', async () => {
    const key = Buffer.from(KEY);
    const token = await signSessionToken(CLAIMS, key, { now: NOW });
    await expect(verify(token, key)).resolves.toMatchObject(CLAIMS);
  });

  it.each([0, 999, 4 * 3600 * 1000 + 1, 1.5, Number.NaN])('refuses lifetimeMs %s', async (lifetimeMs) => {
    const e = await refusal(signSessionToken(CLAIMS, KEY, { now: NOW, lifetimeMs }));
    expect(e.code).toBe('TOKEN_CLAIMS');
  });

  it('accepts the 4 h maximum lifetime', async () => {
    const token = await signSessionToken(CLAIMS, KEY, { now: NOW, lifetimeMs: 4 * 3600 * 1000 });
    expect((await verify(token)).exp).toBe(NOW_S + 4 * 3600);
  });

  it.each<[string, SessionTokenClaims]>([
    ['a bad userId', { ...CLAIMS, userId: '' }],
    ['a bad sessionId', { ...CLAIMS, sessionId: 'abc' }],
    ['an absolute projectPath', { ...CLAIMS, projectPath: '/var/lib/studio' }],
    ['a non-canonical projectPath', { ...CLAIMS, projectPath: './apps' }],
    ['a projectPath with ..', { ...CLAIMS, projectPath: 'a/../b' }],
  ])('refuses to sign %s', async (_, claims) => {
    expect((await refusal(signSessionToken(claims, KEY, { now: NOW }))).code).toBe('TOKEN_CLAIMS');
  });

  it('refuses to sign a token verify would refuse as too long', async () => {
    const projectPath = Array.from({ length: 16 }, () => 'a'.repeat(250)).join('/');
    const e = await refusal(signSessionToken({ ...CLAIMS, projectPath }, KEY, { now: NOW }));
    expect(e.code).toBe('TOKEN_CLAIMS');
  });

  it.each<[string, object]>([
    ['an empty issuer', { issuer: '' }],
    ['a control char in audience', { audience: 'a\nb' }],
    ['an invalid date', { now: new Date(Number.NaN) }],
    ['a numeric now', { now: 5 }],
  ])('refuses %s in options', async (_, options) => {
    const token = forge(goodHeader, goodPayload());
    expect((await refusal(verifySessionToken(token, KEY, options as never))).code).toBe('INPUT_INVALID');
    expect((await refusal(signSessionToken(CLAIMS, KEY, options as never))).code).toBe('INPUT_INVALID');
  });

  it('never puts the key or token in the error message', async () => {
    const token = await signSessionToken(CLAIMS, OTHER_KEY, { now: NOW });
    const e = await refusal(verify(token));
    expect(e.message).not.toContain(token.split('.')[2]);
    expect(e.message).not.toContain(Buffer.from(KEY).toString('base64'));
  });
});
