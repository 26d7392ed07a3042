import { describe, expect, it } from 'vitest';
import { e2bSandboxIdSchema, e2bSchemas } from './e2b.ts';
import { defaultPolicy } from './limits.ts';

const s = e2bSchemas(defaultPolicy);
const issue = (r: { success: boolean; error?: { issues: { message: string }[] } }) =>
  r.success ? undefined : r.error?.issues[0]?.message;

describe('E2B schemas', () => {
  it('takes sandbox ids that are DNS labels only', () => {
    expect(e2bSandboxIdSchema.safeParse('0123456789abcdef0123456789abcdef').success).toBe(true);
    for (const bad of ['0123456789ABCDEF0123456789ABCDEF', 'abc', 'x.example.com', `${'a'.repeat(32)}:80`]) {
      expect(e2bSandboxIdSchema.safeParse(bad).success).toBe(false);
    }
  });

  it('bounds the timeout by the session lifetime', () => {
    const max = s.maxTimeoutSeconds;
    expect(max).toBe(defaultPolicy.session.ttlMs / 1000);
    expect(s.newSandbox.safeParse({ templateID: 'base', timeout: max }).success).toBe(true);
    expect(issue(s.newSandbox.safeParse({ templateID: 'base', timeout: max + 1 }))).toMatch(
      /session lifetime/,
    );
    expect(s.setTimeout.safeParse({ timeout: -1 }).success).toBe(false);
    expect(s.setTimeout.safeParse({ timeout: 1.5 }).success).toBe(false);
  });

  it('refuses the features Studio does not offer, naming what to do', () => {
    expect(issue(s.newSandbox.safeParse({ volumeMounts: [{ name: 'v', path: '/d' }] }))).toMatch(/volumes/);
    expect(issue(s.newSandbox.safeParse({ mcp: { x: {} } }))).toMatch(/MCP/);
    expect(issue(s.newSandbox.safeParse({ network: { denyOut: ['10.0.0.0/8'] } }))).toMatch(/allowOut/);
    // Empty or null forms of them are what SDKs send when unset.
    expect(s.newSandbox.safeParse({ volumeMounts: [], mcp: null }).success).toBe(true);
  });

  it('keeps env names that cannot hijack the loader, and bounded metadata', () => {
    expect(s.newSandbox.safeParse({ envVars: { LD_PRELOAD: '/x.so' } }).success).toBe(false);
    expect(s.newSandbox.safeParse({ envVars: { OK: 'v' }, metadata: { a: 'b' } }).success).toBe(true);
    expect(s.newSandbox.safeParse({ metadata: { a: 'line\nbreak' } }).success).toBe(false);
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
    expect(issue(s.newSandbox.safeParse({ metadata: many }))).toMatch(/64 metadata/);
  });

  it('parses list queries: metadata as a query of its own, states, limits', () => {
    const q = s.list.parse({ metadata: 'user=abc&app=prod%20x', state: 'running,paused', limit: '2' });
    expect(q).toMatchObject({
      metadata: { user: 'abc', app: 'prod x' },
      state: ['running', 'paused'],
      limit: 2,
    });
    expect(s.list.parse({}).limit).toBe(100);
    expect(issue(s.list.safeParse({ state: 'killed' }))).toMatch(/running, paused/);
    expect(s.list.safeParse({ limit: '101' }).success).toBe(false);
  });
});
