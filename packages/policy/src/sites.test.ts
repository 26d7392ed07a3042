import { describe, expect, it } from 'vitest';
import { isSameSite, previewSiteProblem, siteOf } from './sites.ts';

describe('siteOf', () => {
  it('is the registrable domain, private suffixes included; IPs and bare suffixes are their own site', () => {
    expect(siteOf('studio.example.com')).toBe('example.com');
    expect(siteOf('8000-abc.preview.studio.example.com')).toBe('example.com');
    expect(siteOf('a.example.co.uk')).toBe('example.co.uk');
    expect(siteOf('alice.github.io')).toBe('alice.github.io');
    expect(siteOf('8000-abc.localhost')).toBe('8000-abc.localhost');
    expect(siteOf('localhost')).toBe('localhost');
    expect(siteOf('127.0.0.1')).toBe('127.0.0.1');
    expect(siteOf('Studio.Example.COM.:443')).toBe('example.com');
  });
});

describe('isSameSite', () => {
  it('is true for another port or another subdomain of the same registrable domain', () => {
    expect(isSameSite('127.0.0.1:3000', '127.0.0.1:4001')).toBe(true);
    expect(isSameSite('studio.example.com', 'x.preview.studio.example.com')).toBe(true);
    expect(isSameSite('studio.example.com', 'preview.example.com')).toBe(true);
    // Names the list does not know: one under the other counts as same-site (browsers disagree there).
    expect(isSameSite('localhost', '8000-abc.localhost')).toBe(true);
  });

  it('is false across registrable domains, private suffixes and IP versus name', () => {
    expect(isSameSite('studio.example.com', '8000-x.studio-preview.net')).toBe(false);
    expect(isSameSite('alice.github.io', 'bob.github.io')).toBe(false);
    expect(isSameSite('127.0.0.1', '8000-abc.localhost')).toBe(false);
    expect(isSameSite('8000-abc.localhost', '8000-def.localhost')).toBe(false);
  });
});

describe('previewSiteProblem', () => {
  it('refuses a preview domain on the IDE site and names the fix', () => {
    const problem = previewSiteProblem('preview.studio.example.com', ['https://studio.example.com']);
    expect(problem).toMatch(/same-site with studio\.example\.com/);
    expect(problem).toMatch(/STUDIO_PREVIEW_DOMAIN=example-preview\.com/);
    expect(previewSiteProblem('example.com', ['https://studio.example.com'])).not.toBeNull();
    expect(previewSiteProblem('localhost', ['http://localhost:3000'])).not.toBeNull();
    expect(previewSiteProblem('apps.example.co.uk', ['studio.example.co.uk'])).not.toBeNull();
  });

  it('accepts a registrable domain of its own, and *.localhost beside an IP IDE', () => {
    expect(previewSiteProblem('studio-preview.net', ['https://studio.example.com'])).toBeNull();
    expect(previewSiteProblem('localhost', ['http://127.0.0.1:3000', '127.0.0.1'])).toBeNull();
    expect(previewSiteProblem('preview.other.co.uk', ['https://studio.example.co.uk'])).toBeNull();
  });
});
