import { createRateLimiter, defaultPolicy, sessionCreateInput } from '@studio/policy';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newId } from './ids.ts';
import { createLogger } from './logger.ts';
import { type AuditContext, SessionManager } from './session-manager.ts';
import { openDb } from './store/db.ts';
import { Store } from './store/store.ts';
import { FakeBackend } from './testing/fake-backend.ts';

const audit: AuditContext = { actorId: null, ip: '127.0.0.1', requestId: 'req_test' };
const input = sessionCreateInput.parse({ image: 'studio-sandbox:latest' });

describe('SessionManager', () => {
  let store: Store;
  let backend: FakeBackend;
  let manager: SessionManager;
  let owner: string;

  beforeEach(async () => {
    store = await Store.open(await openDb({}));
    backend = new FakeBackend();
    manager = new SessionManager({
      store,
      backends: [backend],
      policy: defaultPolicy,
      instanceId: 'test',
      images: ['studio-sandbox:latest'],
      labels: { 'studio.test': 'unit' },
      createLimiter: createRateLimiter({ limit: 1000, windowMs: 60_000 }),
      logger: createLogger({ level: 'silent' }),
    });
    owner = (await store.createUser({ id: newId('usr_'), username: 'o', passwordHash: 'x', role: 'user' }))
      .id;
  });
  afterEach(async () => {
    await manager.close();
    await store.close();
  });

  it('labels every sandbox with session, owner and the extra labels', async () => {
    const s = await manager.create(owner, input, audit);
    const [info] = await backend.list();
    expect(info?.labels).toEqual({ 'studio.test': 'unit', 'studio.session': s.id, 'studio.owner': owner });
  });

  it('destroying a session while its sandbox is being created leaves no sandbox behind', async () => {
    backend.createDelayMs = 100;
    const creating = manager.create(owner, input, audit).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 30));
    const [record] = await manager.list(owner);
    expect(record?.state).toBe('creating');
    expect((await manager.destroy(owner, record?.id as string, audit)).state).toBe('destroyed');
    expect(await creating).toMatchObject({ code: 'INVALID_STATE' });
    expect(backend.sandboxes.size).toBe(0);
  });

  it('refuses to start a session past its TTL and the sweep stops it', async () => {
    const s = await manager.create(owner, input, audit);
    const later = new Date(Date.now() + defaultPolicy.session.ttlMs + 1000);
    expect(await manager.sweep(later)).toEqual([s.id]);
    await store.db.query(`UPDATE sessions SET created_at = now() - interval '9 hours' WHERE id = $1`, [s.id]);
    await expect(manager.start(owner, s.id, audit)).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });

  it('does not sweep active sessions', async () => {
    await manager.create(owner, input, audit);
    expect(await manager.sweep(new Date())).toEqual([]);
  });

  it('rate-limits session creation per user', async () => {
    const limited = new SessionManager({
      store,
      backends: [backend],
      policy: defaultPolicy,
      instanceId: 'test',
      images: ['studio-sandbox:latest'],
      createLimiter: createRateLimiter({ limit: 1, windowMs: 60_000 }),
      logger: createLogger({ level: 'silent' }),
    });
    await limited.create(owner, input, audit);
    await expect(limited.create(owner, input, audit)).rejects.toMatchObject({ code: 'RATE_LIMITED' });
  });
});
