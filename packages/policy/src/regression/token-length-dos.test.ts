// A megabyte "token" in a WebSocket auth message or header must be rejected by a length check before any
// base64 or JSON work, so unauthenticated clients cannot make verification expensive (CWE-400).
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_TOKEN_LENGTH } from '../limits.ts';
import { terminalAuthMessage } from '../schemas.ts';
import { verifySessionToken } from '../tokens.ts';

const KEY = new Uint8Array(Array.from({ length: 32 }, (_, i) => 255 - i));

describe('regression: oversized token', () => {
  it('a validly signed 1 MB token is refused unparsed', async () => {
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ pad: 'x'.repeat(1 << 20) })}`;
    const token = `${input}.${createHmac('sha256', KEY).update(input).digest('base64url')}`;
    const error = await verifySessionToken(token, KEY).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'TOKEN_INVALID' });
    expect((error as Error).cause).toBeUndefined();
  });

  it('the WebSocket auth message bounds the token too', () => {
    expect(
      terminalAuthMessage.safeParse({ type: 'auth', token: 'x'.repeat(MAX_TOKEN_LENGTH + 1) }).success,
    ).toBe(false);
  });
});
