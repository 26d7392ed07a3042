import { describe, expect, it } from 'vitest';
import { isPolicyError } from './errors.ts';
import { secretCreateInput, sessionSecretsSchema } from './schemas.ts';
import {
  canonicalSecretHosts,
  checkSecretName,
  checkSecretValue,
  parseSecretHeader,
  renderSecretHeader,
  secretGoesTo,
} from './secrets.ts';

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return isPolicyError(error) ? error.code : 'other';
  }
  return 'none';
};

describe('secret names', () => {
  it.each(['OPENAI_API_KEY', 'GH_TOKEN', 'A'])('accepts %s', (name) => {
    expect(checkSecretName(name)).toBe(name);
  });
  it.each(['', 'lower', '1ABC', 'LD_PRELOAD', 'BASH_FUNC_X', 'BASH_ENV', 'A-B', 'A B', `A${'B'.repeat(64)}`])(
    'refuses %j',
    (name) => {
      expect(codeOf(() => checkSecretName(name))).toBe('SECRET_INVALID');
    },
  );
});

describe('secret values', () => {
  it('accepts printable text up to the limit', () => {
    expect(checkSecretValue('sk-abc.DEF_123 ~!')).toBe('sk-abc.DEF_123 ~!');
    expect(checkSecretValue('x'.repeat(8192))).toHaveLength(8192);
  });
  it.each(['', 'a\r\nX-Injected: 1', 'a\nb', 'a\u0000b', 'a\u007fb', 'x'.repeat(8193)])(
    'refuses %j (a value must not add headers)',
    (value) => {
      expect(codeOf(() => checkSecretValue(value))).toBe('SECRET_INVALID');
    },
  );
});

describe('header templates', () => {
  it('parses a header and renders the value once', () => {
    const h = parseSecretHeader('Authorization: Bearer {{value}}');
    expect(h).toEqual({ name: 'authorization', template: 'Bearer {{value}}' });
    expect(renderSecretHeader(h, 'sk-$&1')).toBe('Bearer sk-$&1');
    expect(parseSecretHeader('X-Api-Key:{{value}}')).toEqual({ name: 'x-api-key', template: '{{value}}' });
  });
  it.each([
    'Authorization: Bearer',
    'Authorization: {{value}} {{value}}',
    ': {{value}}',
    'Bad Name: {{value}}',
    'Host: {{value}}',
    'Content-Length: {{value}}',
    'Transfer-Encoding: {{value}}',
    'Proxy-Authorization: {{value}}',
    'X-A: {{value}}\r\nX-B: 1',
  ])('refuses %j', (text) => {
    expect(codeOf(() => parseSecretHeader(text))).toBe('SECRET_INVALID');
  });
});

describe('secret hosts', () => {
  it('canonicalises names, wildcards and ports', () => {
    expect(
      canonicalSecretHosts(['API.Example.com', '*.example.org', 'api.example.com', 'x.example.net:8443']),
    ).toEqual(['*.example.org', 'api.example.com', 'x.example.net:8443']);
  });
  it.each([[[]], [['10.0.0.0/8']], [['localhost']], [['*.com']], [['1.2.3.4']]])('refuses %j', (hosts) => {
    expect(['SECRET_INVALID', 'HOST_INVALID']).toContain(codeOf(() => canonicalSecretHosts(hosts)));
  });
  it('goes only to its hosts and ports', () => {
    const hosts = canonicalSecretHosts(['api.example.com', '*.example.org']);
    expect(secretGoesTo(hosts, 'api.example.com', 443)).toBe(true);
    expect(secretGoesTo(hosts, 'a.b.example.org', 443)).toBe(true);
    expect(secretGoesTo(hosts, 'example.org', 443)).toBe(false);
    expect(secretGoesTo(hosts, 'api.example.com.evil.test', 443)).toBe(false);
    expect(secretGoesTo(hosts, 'evil.test', 443)).toBe(false);
    expect(secretGoesTo(hosts, 'api.example.com', 8443)).toBe(false);
  });
});

describe('schemas', () => {
  it('secretCreateInput defaults the header and canonicalises hosts', () => {
    const parsed = secretCreateInput.parse({ name: 'TOKEN', value: 'v', hosts: ['Api.Example.com'] });
    expect(parsed).toEqual({
      name: 'TOKEN',
      value: 'v',
      hosts: ['api.example.com'],
      header: 'Authorization: Bearer {{value}}',
    });
    expect(secretCreateInput.safeParse({ name: 'TOKEN', value: 'v', hosts: ['10.0.0.0/8'] }).success).toBe(
      false,
    );
    expect(secretCreateInput.safeParse({ name: 'TOKEN', value: 'a\nb', hosts: ['a.example'] }).success).toBe(
      false,
    );
  });
  it('sessionSecretsSchema drops repeats and sorts', () => {
    expect(sessionSecretsSchema.parse(['B', 'A', 'B'])).toEqual(['A', 'B']);
    expect(sessionSecretsSchema.safeParse(['ld_x']).success).toBe(false);
  });
});
