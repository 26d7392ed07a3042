import { describe, expect, it } from 'vitest';
import { parseWebEnv } from './env.ts';

describe('parseWebEnv', () => {
  it('defaults to one machine: IDE on 127.0.0.1:3000, API on :4000, previews on *.localhost:4001', () => {
    expect(parseWebEnv({})).toEqual({
      host: '127.0.0.1',
      port: 3000,
      apiUrl: 'http://127.0.0.1:4000',
      previewOrigin: 'http://*.localhost:4001',
    });
  });

  it('takes the wildcard origin of host-name previews behind Traefik, and only a one-label wildcard', () => {
    expect(parseWebEnv({ STUDIO_PREVIEW_ORIGIN: 'https://*.preview.example.com' }).previewOrigin).toBe(
      'https://*.preview.example.com',
    );
    for (const bad of [
      'https://*',
      'https://a.*.example.com',
      '*://preview.example.com',
      'https://**.x.com',
    ]) {
      expect(() => parseWebEnv({ STUDIO_PREVIEW_ORIGIN: bad }), bad).toThrow(/STUDIO_PREVIEW_ORIGIN/);
    }
  });

  it('refuses origins with a path and names the variable', () => {
    expect(() => parseWebEnv({ STUDIO_PREVIEW_ORIGIN: 'http://x/evil' })).toThrow(/STUDIO_PREVIEW_ORIGIN/);
    expect(() => parseWebEnv({ STUDIO_WEB_PORT: 'abc' })).toThrow(/STUDIO_WEB_PORT/);
  });
});
