import { describe, expect, it } from 'vitest';
import { PreviewGrants, previewHostLabel, previewHostName, requestHostName } from './preview.ts';

describe('preview host names', () => {
  it('labels are 16 lower-case hex digits, stable per session and distinct across sessions', () => {
    expect(previewHostLabel('ses_AbC-123')).toMatch(/^[0-9a-f]{16}$/);
    expect(previewHostLabel('ses_AbC-123')).toBe(previewHostLabel('ses_AbC-123'));
    // Case matters in session ids but not in host names: the label must not collapse them.
    expect(previewHostLabel('ses_AbC-123')).not.toBe(previewHostLabel('ses_abc-123'));
    expect(previewHostName('ses_x', 8080, 'preview.example.com')).toMatch(
      /^8080-[0-9a-f]{16}\.preview\.example\.com$/,
    );
  });

  it('reads the Host header as browsers send it, and refuses what is not a DNS name', () => {
    expect(requestHostName('3000-ABCDEF.Preview.Example.com:443')).toBe('3000-abcdef.preview.example.com');
    expect(requestHostName('a.example.com.')).toBe('a.example.com');
    for (const bad of [
      undefined,
      '',
      'a..b',
      '-a.b',
      'a_b.example',
      'a.example.com/x',
      'a b',
      `${'a'.repeat(300)}.com`,
    ]) {
      expect(requestHostName(bad)).toBeUndefined();
    }
  });

  it('a grant is allowed only on its own host in host mode, on any host in port mode', () => {
    const hosts = new PreviewGrants({ hostMode: { domain: 'preview.example.com', scheme: 'https' } });
    const grant = { userId: 'u', sessionId: 'ses_a', port: 3000, expiresAt: Date.now() + 1000 };
    const own = previewHostName('ses_a', 3000, 'preview.example.com');
    expect(hosts.hostAllows(grant, own)).toBe(true);
    expect(hosts.hostAllows(grant, `${own.toUpperCase()}:443`)).toBe(true);
    expect(hosts.hostAllows(grant, previewHostName('ses_a', 3001, 'preview.example.com'))).toBe(false);
    expect(hosts.hostAllows(grant, previewHostName('ses_b', 3000, 'preview.example.com'))).toBe(false);
    expect(hosts.hostAllows(grant, `${own}.evil.example`)).toBe(false);
    expect(hosts.hostAllows(grant, undefined)).toBe(false);
    expect(new PreviewGrants().hostAllows(grant, 'anything')).toBe(true);
  });

  it('links: off until the server listens; host mode puts session and port in the host', () => {
    const hosts = new PreviewGrants({ hostMode: { domain: 'preview.example.com', scheme: 'https' } });
    expect(hosts.linkFor({ sessionId: 'ses_a', port: 3000, token: 't' })).toBeNull();
    hosts.baseUrl = 'http://127.0.0.1:4001';
    expect(hosts.linkFor({ sessionId: 'ses_a', port: 3000, token: 't' })).toBe(
      `https://${previewHostName('ses_a', 3000, 'preview.example.com')}/__studio/auth?token=t`,
    );
    const ports = new PreviewGrants();
    ports.baseUrl = 'http://127.0.0.1:4001';
    expect(ports.linkFor({ sessionId: 'ses_a', port: 3000, token: 't' })).toBe(
      'http://127.0.0.1:4001/__studio/auth?token=t',
    );
  });
});
