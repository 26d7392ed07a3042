import { type ExecOptions, IsolationError } from '@studio/isolation';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, startTestApi, type TestApi } from '../../testing/api-fixture.ts';
import { FakeBackend, type FakeSandbox } from '../../testing/fake-backend.ts';

// Issue 16: a gVisor sandbox killed by a memory or fork bomb (its whole kernel is one process under the limit)
// answered the exec with RESOURCE_LIMIT, but its session stayed `running` until the next reconciliation, so the
// IDE offered commands that could only fail and no way to start it again. The fake sandbox does here what
// GVisorBackend does (the sandbox stops, the exec fails with RESOURCE_LIMIT); gvisor.gvisor.test.ts proves the
// same on runsc.

describe('regression: a sandbox that dies of a resource limit stops its session at once', () => {
  const backend = new FakeBackend('gvisor');
  let t: TestApi;
  let auth: Record<string, string>;
  let sessionId = '';

  beforeAll(async () => {
    t = await startTestApi({ backends: [backend], env: { STUDIO_BACKENDS: 'gvisor' } });
    auth = { authorization: `Bearer ${await t.login('admin', ADMIN_PASSWORD)}` };
    const created = await t.call('mutation', 'sessions.create', { image: 'studio-sandbox:latest' }, auth);
    sessionId = (created.body.result?.data as { id: string } | undefined)?.id ?? '';
    expect(sessionId).toMatch(/^ses_/);
  }, 120_000);
  afterAll(async () => {
    await t?.close();
  });

  it('stopped with the reason, announced and audited; sessions.start brings it back', async () => {
    const sandbox = [...backend.sandboxes.values()][0] as FakeSandbox;
    const exec = sandbox.exec.bind(sandbox);
    sandbox.exec = async (command: readonly string[], options: ExecOptions) => {
      if (command[0] !== 'bomb') return exec(command, options);
      sandbox.state = 'stopped';
      throw new IsolationError(
        'RESOURCE_LIMIT',
        `sandbox ${sandbox.id} ran out of memory and stopped; start it again`,
      );
    };
    const seen: unknown[] = [];
    const abort = new AbortController();
    const stream = t.app.deps.events.subscribe(sessionId, undefined, abort.signal);
    const reading = (async () => {
      for await (const event of stream) seen.push(event);
    })();

    const bombed = await t.call('mutation', 'exec.run', { sessionId, command: ['bomb'] }, auth);
    expect(bombed.body.error?.data.studioCode).toBe('RESOURCE_LIMIT');
    // At once: no reconciliation in between.
    const now = await t.call('query', 'sessions.get', { sessionId }, auth);
    expect(now.body.result?.data).toMatchObject({
      state: 'stopped',
      stopReason: expect.stringMatching(/ran out of memory/),
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toContainEqual(
      expect.objectContaining({
        type: 'session.status',
        state: 'stopped',
        reason: expect.stringMatching(/memory/),
      }),
    );
    const audit = await t.app.deps.store.listAudit({ action: 'session.stop' });
    expect(audit.some((a) => a.target === sessionId && a.outcome === 'failure')).toBe(true);

    const started = await t.call('mutation', 'sessions.start', { sessionId }, auth);
    expect(started.body.result?.data).toMatchObject({ state: 'running', stopReason: null });
    const ok = await t.call('mutation', 'exec.run', { sessionId, command: ['echo', 'back'] }, auth);
    expect(ok.body.result?.data).toMatchObject({ exitCode: 0 });
    abort.abort();
    await reading.catch(() => undefined);
  });

  it('an exec that fails while the sandbox keeps running leaves the session running', async () => {
    const sandbox = [...backend.sandboxes.values()][0] as FakeSandbox;
    const exec = sandbox.exec.bind(sandbox);
    sandbox.exec = async (command: readonly string[], options: ExecOptions) => {
      if (command[0] !== 'limited') return exec(command, options);
      throw new IsolationError('RESOURCE_LIMIT', 'output cap');
    };
    const r = await t.call('mutation', 'exec.run', { sessionId, command: ['limited'] }, auth);
    expect(r.body.error?.data.studioCode).toBe('RESOURCE_LIMIT');
    const now = await t.call('query', 'sessions.get', { sessionId }, auth);
    expect(now.body.result?.data).toMatchObject({ state: 'running', stopReason: null });
  });
});
