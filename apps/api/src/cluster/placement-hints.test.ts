import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { AppDeps } from '../core/context.ts';
import { AppError } from '../core/errors.ts';
import { createPlacementHints } from './placement-hints.ts';

const DIGEST = 'ab'.repeat(32);
const BASE = 'cd'.repeat(32);

/** Alice (token `good`) has template `tools` (built) whose base is `base` (built), and a snapshot of a `tools` session on node-b. */
const deps = {
  auth: {
    authenticate: async (raw: string) => {
      if (raw !== 'good') throw new AppError('UNAUTHENTICATED', 'no');
      return { userId: 'usr_alice' };
    },
  },
  templates: {
    find: async (userId: string, ref: string) => {
      if (userId !== 'usr_alice') throw new AppError('TEMPLATE_NOT_FOUND', ref);
      if (ref === 'tools' || ref === 'tpl_tools')
        return { id: 'tpl_tools', digest: DIGEST, spec: { base: 'base' } };
      if (ref === 'base') return { id: 'tpl_base', digest: BASE, spec: {} };
      throw new AppError('TEMPLATE_NOT_FOUND', ref);
    },
    baseDigest: async (_userId: string, spec: { base?: string }) =>
      spec.base === 'base' ? `sha256:${BASE}` : null,
  },
  store: {
    getSnapshot: async (ownerId: string, ref: string) =>
      ownerId === 'usr_alice' && ref === 'kept'
        ? { id: 'snp-1', name: 'kept', instanceId: 'node-b', templateId: 'tpl_tools' }
        : undefined,
    getTemplate: async (id: string) => (id === 'tpl_tools' ? { digest: DIGEST } : undefined),
  },
} as unknown as Pick<AppDeps, 'auth' | 'templates' | 'store'>;

const request = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;
const bearer = (token: string) => request({ authorization: `Bearer ${token}` });

describe('placement hints', () => {
  const hints = createPlacementHints(deps);

  it('resolve what a call names for its caller: a template’s build, a build’s base, a snapshot’s node', async () => {
    const alice = bearer('good');
    expect(await hints(alice, 'sessions.create', { template: 'tools' })).toEqual({
      template: `sha256:${DIGEST}`,
    });
    expect(await hints(alice, 'sessions.create', {})).toEqual({ template: null });
    expect(await hints(alice, 'sessions.create', { template: 'default' })).toEqual({ template: null });
    expect(await hints(alice, 'sessions.create', { fromSnapshot: 'kept' })).toEqual({
      node: 'node-b',
      template: `sha256:${DIGEST}`,
    });
    expect(await hints(alice, 'snapshots.delete', { snapshot: 'kept' })).toMatchObject({ node: 'node-b' });
    expect(await hints(alice, 'templates.create', { spec: { base: 'base' } })).toEqual({
      template: `sha256:${BASE}`,
    });
    expect(await hints(alice, 'templates.build', { template: 'tools' })).toEqual({
      template: `sha256:${BASE}`,
    });
    // E2B's SDKs authenticate with X-API-Key; `base` is E2B's name for the default template.
    const sdk = request({ 'x-api-key': 'good' });
    expect(await hints(sdk, 'e2b.create', { templateID: 'tpl_tools' })).toEqual({
      template: `sha256:${DIGEST}`,
    });
    expect(await hints(sdk, 'e2b.create', { templateID: 'base' })).toEqual({ template: null });
  });

  it('give nothing to a caller not signed in, or for what the caller may not use', async () => {
    for (const req of [request({}), bearer('forged'), request({ 'x-api-key': 'forged' })]) {
      expect(await hints(req, 'sessions.create', { template: 'tools' })).toBeUndefined();
      expect(await hints(req, 'snapshots.delete', { snapshot: 'kept' })).toBeUndefined();
    }
    // A bearer token is not read as E2B's key, nor the other way round.
    expect(await hints(bearer('good'), 'e2b.create', { templateID: 'tools' })).toBeUndefined();
    const alice = bearer('good');
    expect(await hints(alice, 'sessions.create', { template: 'someone-elses' })).toEqual({ template: null });
    expect(await hints(alice, 'snapshots.delete', { snapshot: 'not-mine' })).toBeUndefined();
    expect(await hints(alice, 'users.list', {})).toBeUndefined();
  });
});
