import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isPolicyError, type PolicyErrorCode } from './errors.ts';
import { escapeHtml, securityHeaders } from './html.ts';

function codeOf(fn: () => unknown): PolicyErrorCode | 'NO_THROW' {
  try {
    fn();
  } catch (e) {
    if (isPolicyError(e)) return e.code;
    throw e;
  }
  return 'NO_THROW';
}

const NONCE = 'rAnd0mN0nce+/AAAAAAAAA=='; // 24 chars: base64 of 16 bytes

function directives(csp: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const part of csp.split(';')) {
    const [name, ...values] = part.trim().split(/\s+/);
    if (name) {
      expect(map.has(name)).toBe(false); // a repeated directive would be ignored by browsers
      map.set(name, values);
    }
  }
  return map;
}

describe('escapeHtml', () => {
  it('escapes the characters that end a text node or a quoted attribute', () => {
    expect(escapeHtml(`<script>alert("x")</script>`)).toBe(
      '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;',
    );
    expect(escapeHtml(`' onmouseover='x`)).toBe('&#39; onmouseover=&#39;x');
    expect(escapeHtml('a & b')).toBe('a &amp; b');
    expect(escapeHtml('`x`')).toBe('&#96;x&#96;');
  });

  it('escapes & first, so existing entities are shown literally, not decoded', () => {
    expect(escapeHtml('&lt;')).toBe('&amp;lt;');
    expect(escapeHtml('&amp;')).toBe('&amp;amp;');
  });

  it('leaves other text, including terminal escapes and unicode, unchanged', () => {
    const text = 'hello \u001b[31mred\u001b[0m café 😀 \n\t';
    expect(escapeHtml(text)).toBe(text);
  });

  it('refuses non-strings', () => {
    expect(codeOf(() => escapeHtml(undefined as unknown as string))).toBe('INPUT_INVALID');
    expect(codeOf(() => escapeHtml({ toString: () => '<b>' } as unknown as string))).toBe('INPUT_INVALID');
  });

  it('property: output never contains a raw markup-significant character and decodes back', () => {
    const decode = (s: string) =>
      s
        .replaceAll('&lt;', '<')
        .replaceAll('&gt;', '>')
        .replaceAll('&quot;', '"')
        .replaceAll('&#39;', "'")
        .replaceAll('&#96;', '`')
        .replaceAll('&amp;', '&');
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        const out = escapeHtml(s);
        expect(/[<>"'`]/.test(out)).toBe(false);
        expect(/&(?!amp;|lt;|gt;|quot;|#39;|#96;)/.test(out)).toBe(false);
        expect(decode(out)).toBe(s);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('securityHeaders', () => {
  it('returns a strict CSP with every directive', () => {
    const headers = securityHeaders({ nonce: NONCE });
    const csp = directives(headers['Content-Security-Policy'] ?? '');
    expect(csp.get('default-src')).toEqual(["'self'"]);
    expect(csp.get('script-src')).toEqual(["'self'", `'nonce-${NONCE}'`, "'strict-dynamic'"]);
    expect(csp.get('style-src')).toEqual(["'self'", `'nonce-${NONCE}'`]);
    expect(csp.get('object-src')).toEqual(["'none'"]);
    expect(csp.get('base-uri')).toEqual(["'none'"]);
    expect(csp.get('frame-ancestors')).toEqual(["'none'"]);
    expect(csp.get('form-action')).toEqual(["'self'"]);
    expect(csp.get('img-src')).toEqual(["'self'", 'data:', 'blob:']);
    expect(csp.get('font-src')).toEqual(["'self'"]);
    expect(csp.get('worker-src')).toEqual(["'self'", 'blob:']);
    expect(csp.get('connect-src')).toEqual(["'self'"]);
    expect(csp.get('frame-src')).toEqual(["'none'"]);
  });

  it('never allows unsafe-inline, unsafe-eval, wildcards or scheme-only script sources', () => {
    const headers = securityHeaders({
      nonce: NONCE,
      connectSrc: ['wss://studio.example.com'],
      frameSrc: ['https://*.preview.example.com'],
      frameAncestors: ["'self'"],
    });
    const csp = headers['Content-Security-Policy'] ?? '';
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|unsafe-hashes|wasm-unsafe-eval/);
    const script = directives(csp).get('script-src') ?? [];
    expect(script).not.toContain('*');
    expect(script).not.toContain('https:');
    expect(script).not.toContain('data:');
  });

  it('sets the other security headers', () => {
    const headers = securityHeaders({ nonce: NONCE });
    expect(headers['X-Content-Type-Options']).toBe('nosniff');
    expect(headers['Referrer-Policy']).toBe('no-referrer');
    expect(headers['X-Frame-Options']).toBe('DENY');
    expect(headers['Cross-Origin-Opener-Policy']).toBe('same-origin');
    expect(headers['Cross-Origin-Resource-Policy']).toBe('same-origin');
    expect(headers['Permissions-Policy']).toMatch(/camera=\(\)/);
    expect(headers['Permissions-Policy']).toMatch(/microphone=\(\)/);
  });

  it('adds given connect, frame and frame-ancestor origins', () => {
    const headers = securityHeaders({
      nonce: NONCE,
      connectSrc: ['wss://studio.example.com', 'https://api.example.com:8443'],
      frameSrc: ['https://*.preview.example.com', 'http://127.0.0.1:4000', 'http://[::1]:4000'],
      frameAncestors: ['https://studio.example.com'],
    });
    const csp = directives(headers['Content-Security-Policy'] ?? '');
    expect(csp.get('connect-src')).toEqual([
      "'self'",
      'wss://studio.example.com',
      'https://api.example.com:8443',
    ]);
    expect(csp.get('frame-src')).toEqual([
      'https://*.preview.example.com',
      'http://127.0.0.1:4000',
      'http://[::1]:4000',
    ]);
    expect(csp.get('frame-ancestors')).toEqual(['https://studio.example.com']);
    expect(headers['X-Frame-Options']).toBeUndefined(); // cannot express an origin; CSP governs
  });

  it("uses SAMEORIGIN when only 'self' may frame", () => {
    expect(securityHeaders({ nonce: NONCE, frameAncestors: ["'self'"] })['X-Frame-Options']).toBe(
      'SAMEORIGIN',
    );
  });

  it('accepts base64url nonces and 22-128 characters', () => {
    expect(() => securityHeaders({ nonce: 'a'.repeat(22) })).not.toThrow();
    expect(() => securityHeaders({ nonce: `${'a'.repeat(126)}==` })).not.toThrow();
    expect(() => securityHeaders({ nonce: 'abc-_DEF0123456789abcdef' })).not.toThrow();
  });

  it.each([
    '',
    'short',
    'a'.repeat(21),
    'a'.repeat(129),
    `${NONCE}'`,
    `${NONCE}' 'unsafe-inline`,
    `${NONCE}; script-src *`,
    `${NONCE} 'unsafe-eval'`,
    `${NONCE},x`,
    `${NONCE}\n`,
    `abc=def${'a'.repeat(20)}`,
    `${'a'.repeat(22)}===`,
  ])('refuses the nonce %j (CSP_INVALID)', (nonce) => {
    expect(codeOf(() => securityHeaders({ nonce }))).toBe('CSP_INVALID');
  });

  it.each([
    "'unsafe-inline'",
    "'unsafe-eval'",
    "'none'",
    '*',
    'https:',
    'data:',
    'https://a.example.com; script-src *',
    'https://a.example.com script-src',
    'https://a.example.com,https://b.example.com',
    'https://a.example.com\n',
    "https://a.example.com'",
    'https://a.example.com"',
    'https://a.example.com/path',
    'https://user@a.example.com',
    'javascript:alert(1)',
    'ftp://a.example.com',
    'https://*',
    'https://a.*.example.com',
    '',
  ])('refuses the source %j in connectSrc, frameSrc and frameAncestors', (source) => {
    for (const key of ['connectSrc', 'frameSrc', 'frameAncestors'] as const) {
      expect(codeOf(() => securityHeaders({ nonce: NONCE, [key]: [source] }))).toBe('CSP_INVALID');
    }
  });

  it('refuses malformed options', () => {
    expect(codeOf(() => securityHeaders(undefined as never))).toBe('CSP_INVALID');
    expect(codeOf(() => securityHeaders({ nonce: 5 } as never))).toBe('CSP_INVALID');
    expect(
      codeOf(() => securityHeaders({ nonce: NONCE, connectSrc: 'https://a.example.com' } as never)),
    ).toBe('CSP_INVALID');
    expect(codeOf(() => securityHeaders({ nonce: NONCE, frameSrc: [5] as never }))).toBe('CSP_INVALID');
    const many = Array.from({ length: 33 }, (_, i) => `https://a${i}.example.com`);
    expect(codeOf(() => securityHeaders({ nonce: NONCE, frameSrc: many }))).toBe('CSP_INVALID');
  });

  it('property: no source list can add a directive or a keyword', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 40 }), { maxLength: 4 }), (sources) => {
        let headers: Record<string, string>;
        try {
          headers = securityHeaders({ nonce: NONCE, connectSrc: sources });
        } catch (e) {
          expect(isPolicyError(e)).toBe(true);
          return;
        }
        const csp = headers['Content-Security-Policy'] ?? '';
        expect(csp.split(';')).toHaveLength(12);
        expect(csp).not.toMatch(/unsafe/);
      }),
      { numRuns: 2000 },
    );
  });
});
