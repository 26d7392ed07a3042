import { previewPathSchema } from '@studio/policy';
import { describe, expect, it } from 'vitest';
import { loadPreviewPlace, previewAddress, previewPath, savePreviewPlace } from './preview-path.ts';

const ORIGIN = 'http://8000-abc.localhost:4001';

describe('the preview path bar', () => {
  it('accepts what the preview proxy accepts, adding the leading slash', () => {
    for (const typed of ['/', 'about', '/api/items?x=1', '/a%20b']) {
      const path = previewPath(typed);
      expect(path).not.toBeNull();
      expect(previewPathSchema.safeParse(path).success).toBe(true);
    }
    expect(previewPath('')).toBe('/');
    expect(previewPath('docs/index.html')).toBe('/docs/index.html');
  });

  it('refuses what would leave the preview origin or that the proxy refuses', () => {
    for (const typed of ['//evil.example/x', '/\\evil', '/a b', '/x#frag', `/${'a'.repeat(2048)}`]) {
      expect(previewPath(typed)).toBeNull();
    }
    expect(previewAddress(ORIGIN, '//evil.example/')).toBeNull();
    // A typed URL is a path on the preview's own host, never another site.
    expect(previewAddress(ORIGIN, 'http://evil.example/')).toBe(`${ORIGIN}/http://evil.example/`);
    expect(previewAddress(ORIGIN, '/about?x=1')).toBe(`${ORIGIN}/about?x=1`);
  });

  it('keeps the port and path per session, ignoring anything unreadable', () => {
    const map = new Map<string, string>();
    const storage = {
      getItem: (k: string) => map.get(k) ?? null,
      setItem: (k: string, v: string) => map.set(k, v),
    };
    expect(loadPreviewPlace('ses_a', storage)).toEqual({ port: '8000', path: '/' });
    savePreviewPlace('ses_a', { port: '5173', path: '/about' }, storage);
    expect(loadPreviewPlace('ses_a', storage)).toEqual({ port: '5173', path: '/about' });
    expect(loadPreviewPlace('ses_b', storage)).toEqual({ port: '8000', path: '/' });
    map.set('studio.ide.ses_c.preview', '{"port":"x","path":"//evil"}');
    expect(loadPreviewPlace('ses_c', storage)).toEqual({ port: '8000', path: '/' });
    map.set('studio.ide.ses_d.preview', 'not json');
    expect(loadPreviewPlace('ses_d', storage)).toEqual({ port: '8000', path: '/' });
  });
});
