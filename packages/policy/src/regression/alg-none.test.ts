// The classic JWT attack (CVE-2015-9235 family): a token whose header says `alg: none` and carries no
// signature, or an RS256 header verified with an HMAC secret. The algorithm is pinned to HS256.
import { describe, expect, it } from 'vitest';
import { verifySessionToken } from '../tokens.ts';

const KEY = new Uint8Array(Array.from({ length: 32 }, (_, i) => i + 1));
const NOW = new Date('2026-01-01T00:00:00Z');
const now = Math.floor(NOW.getTime() / 1000);
const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
const payload = b64({
  sub: 'admin',
  sid: 'ses_0123456789abcdef',
  projectPath: '',
  iss: 'claude-studio',
  aud: 'claude-studio-api',
  iat: now,
  exp: now + 60,
});

describe('regression: alg none', () => {
  it.each(['none', 'None', 'NONE', 'nOnE'])('unsigned token with alg %j is refused', async (alg) => {
    for (const sig of ['', 'AAAA']) {
      await expect(
        verifySessionToken(`${b64({ alg, typ: 'JWT' })}.${payload}.${sig}`, KEY, { now: NOW }),
      ).rejects.toMatchObject({
        code: 'TOKEN_INVALID',
      });
    }
  });

  it('a header without alg is refused', async () => {
    await expect(
      verifySessionToken(`${b64({ typ: 'JWT' })}.${payload}.AAAA`, KEY, { now: NOW }),
    ).rejects.toMatchObject({
      code: 'TOKEN_INVALID',
    });
  });
});
