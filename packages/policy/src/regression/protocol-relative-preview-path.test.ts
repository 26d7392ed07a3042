// A preview path of '//evil.example/x' (or '/\evil.example') is read by URL parsers as another host: joined
// with `new URL(path, sandboxOrigin)` it would send the proxy to evil.example (SSRF / open redirect).
import { describe, expect, it } from 'vitest';
import { previewPathSchema } from '../schemas.ts';

describe('regression: protocol-relative preview path', () => {
  it.each(['//evil.example/x', '/\\evil.example/x', '///evil.example', '//127.0.0.1:22/'])(
    '%j is refused',
    (path) => {
      expect(new URL(path, 'http://sandbox:3000').host).not.toBe('sandbox:3000'); // why it matters
      expect(previewPathSchema.safeParse(path).success).toBe(false);
    },
  );

  it('an ordinary path stays on the sandbox origin', () => {
    const path = previewPathSchema.parse('/evil.example/x');
    expect(new URL(path, 'http://sandbox:3000').host).toBe('sandbox:3000');
  });
});
