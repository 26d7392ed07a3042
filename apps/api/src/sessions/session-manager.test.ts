import { Store, sql } from '@studio/db';
import { freshPglite } from '@studio/db/testing';
import { createRateLimiter, defaultPolicy, sessionCreateInput } from '@studio/policy';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newId } from '../core/ids.ts';
import { createLogger } from '../core/logger.ts';
import { FakeBackend } from '../testing/fake-backend.ts';
import { type AuditContext, defaultResources, SessionManager } from './session-manager.ts';

const audit: AuditContext = { actorId: null, ip: '127.0.0.1', requestId: 'req_test' };
const input = sessionCreateInput.parse({ image: 'studio-sandbox:latest' });

describe('SessionManager', () => {
  let store: Store;
  let backend: FakeBackend;
  let manager: SessionManager;
  let owner: string;

  beforeEach(async () => {
    store = await Store.open(await freshPglite());
    backend = new FakeBackend('docker', 'test');
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
    expect(info?.labels).toEqual({
      'studio.test': 'unit',
      'studio.session': s.id,
      'studio.owner': owner,
      'studio.instance': 'test',
    });
  });

  it('asks a backend whether it is available once for a burst of creates, and again once it was seen down', async () => {
    let asked = 0;
    const available = backend.available.bind(backend);
    backend.available = () => {
      asked += 1;
      return available();
    };
    for (let i = 0; i < 3; i += 1) await manager.create(owner, input, audit);
    expect(asked).toBe(1);
    backend.available_ = { ok: false, reason: 'daemon down' };
    expect((await manager.ready()).ok).toBe(false);
    await expect(manager.create(owner, input, audit)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
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
    await store.db.orm.execute(
      sql`UPDATE sessions SET created_at = now() - interval '9 hours' WHERE id = ${s.id}`,
    );
    await expect(manager.start(owner, s.id, audit)).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });

  it('reconciliation removes a fork capture a crash left behind (after the transition bound), not a named snapshot', async () => {
    const s = await manager.create(owner, input, audit);
    const named = await manager.snapshot(owner, s.id, 'kept', audit);
    // What a process that died mid-fork leaves: an unnamed snapshot, recorded, with its copy on the backend.
    const sandbox = await backend.get((await store.getSessionById(s.id))?.sandboxId as string);
    const capture = await sandbox.snapshot('snp-00000000000000aa');
    await store.createSnapshot(
      { ...named, id: capture.id, name: null, bytes: 0, memory: false },
      Number.MAX_SAFE_INTEGER,
    );
    const t0 = Date.now();
    expect((await manager.reconcile(t0)).capturesRemoved).toEqual([]);
    expect((await manager.reconcile(t0 + 11 * 60_000)).capturesRemoved).toEqual([capture.id]);
    expect((await backend.listSnapshots()).map((x) => x.id)).toEqual([named.id]);
    expect((await store.allSnapshots('test')).map((x) => x.id)).toEqual([named.id]);
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

  describe('reconcile', () => {
    it('adopts running sessions and marks one whose sandbox vanished failed with a reason', async () => {
      const a = await manager.create(owner, input, audit);
      const b = await manager.create(owner, input, audit);
      await backend.destroy(b.sandboxId as string); // behind the API's back
      const report = await manager.reconcile();
      expect(report.adopted).toEqual([a.id]);
      expect(report.failed).toEqual([b.id]);
      const failed = await manager.get(owner, b.id, audit);
      expect(failed.state).toBe('failed');
      expect(failed.failureReason).toMatch(/vanished/);
      expect((await store.listAudit({ limit: 50 })).some((e) => e.action === 'session.fail')).toBe(true);
    });

    it('fails a session whose workspace went read-only: logged, audited, told, and counted for /readyz', async () => {
      const told: [string, string][] = [];
      const lines: string[] = [];
      const watched = new SessionManager({
        store,
        backends: [backend],
        policy: defaultPolicy,
        instanceId: 'test',
        images: ['studio-sandbox:latest'],
        createLimiter: createRateLimiter({ limit: 1000, windowMs: 60_000 }),
        logger: createLogger({ level: 'warn', write: (line) => lines.push(line) }),
        onFailed: (id, reason) => told.push([id, reason]),
      });
      const healthy = await watched.create(owner, input, audit);
      const broken = await watched.create(owner, input, audit);
      const sandbox = backend.sandboxes.get(broken.sandboxId as string);
      if (!sandbox) throw new Error('no sandbox');
      sandbox.state = 'failed';
      // What the loop-workspace backends report (WORKSPACE_READ_ONLY_FAILURE in @studio/workspaces).
      sandbox.failure = {
        code: 'INTERNAL',
        workspace: 'read-only',
        reason: 'the workspace filesystem went read-only after a write error on the host',
      };
      expect(watched.readOnlyWorkspaces).toBe(0);

      const report = await watched.reconcile();
      expect(report.failed).toEqual([broken.id]);
      expect(report.adopted).toEqual([healthy.id]);
      const failed = await watched.get(owner, broken.id, audit);
      expect(failed.state).toBe('failed');
      expect(failed.failureReason).toMatch(/workspace filesystem went read-only/);
      expect(told).toEqual([[broken.id, failed.failureReason]]);
      expect(lines.join('\n')).toMatch(/workspace filesystem went read-only: check the host disk/);
      expect((await store.listAudit({ limit: 50 })).some((e) => e.action === 'session.fail')).toBe(true);
      expect((await watched.ready()).readOnlyWorkspaces).toBe(1);

      // Counted until its sandbox is gone; then readiness is no longer degraded.
      await watched.destroy(owner, broken.id, audit);
      await watched.reconcile();
      expect(watched.readOnlyWorkspaces).toBe(0);
      await watched.close();
    });

    it('removes orphans of this instance after the grace period, never pool sandboxes or other instances', async () => {
      const spec = { image: 'i', resources: defaultResources(defaultPolicy), network: 'none' as const };
      const orphan = await backend.create({ ...spec, labels: { 'studio.session': 'ses_x' } });
      const pooled = await backend.create({ ...spec, labels: { 'studio.session': 'pool' } });
      const foreign = await backend.plant(spec, 'other');
      const t0 = Date.now();
      expect((await manager.reconcile(t0)).orphansRemoved).toEqual([]); // first seen: within the grace period
      expect((await manager.reconcile(t0 + 61_000)).orphansRemoved).toEqual([orphan.id]);
      expect([...backend.sandboxes.keys()].sort()).toEqual([pooled.id, foreign.id].sort());
    });

    describe('after a crash (another process of this instance: nothing in hand)', () => {
      // A second manager on the same store and backend is the API restarted after a kill -9 of the first.
      const restarted = () =>
        new SessionManager({
          store,
          backends: [backend],
          policy: defaultPolicy,
          instanceId: 'test',
          images: ['studio-sandbox:latest'],
          orphanGraceMs: 0,
          logger: createLogger({ level: 'silent' }),
        });

      it('never takes a sandbox made by a create that ran while it was listing for an orphan (grace 0)', async () => {
        // The reconciler reads owners and sessions, then lists sandboxes: a whole create in between shows a sandbox
        // the first reads did not know. Seen in CI with STUDIO_ORPHAN_GRACE_MS=0: the new session's first write
        // found its sandbox being removed.
        const eager = restarted();
        const list = backend.list.bind(backend);
        let made: string | undefined;
        backend.list = async (filter) => {
          if (made === undefined) made = (await manager.create(owner, input, audit)).id;
          return list(filter);
        };
        const report = await eager.reconcile();
        expect(report.orphansRemoved).toEqual([]);
        expect(backend.sandboxes.size).toBe(1);
        expect((await manager.get(owner, made as string, audit)).state).toBe('running');
        await eager.close();
      });

      it('rolls back a create killed before its sandbox was made: the session fails, its owner record goes', async () => {
        backend.createDelayMs = 60_000;
        void manager.create(owner, input, audit).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 50));
        const [record] = await store.listSessions(owner);
        expect(record?.state).toBe('creating');
        expect(record?.sandboxId, 'the id is recorded before the backend is called').toMatch(/^sbx-/);
        expect((await store.listSandboxOwners('test')).map((o) => o.id)).toEqual([record?.sandboxId]);

        // The creating process (still waiting here) is not asked: it has it in hand, so it is left alone.
        expect((await manager.reconcile()).rolledBack).toEqual([]);
        const after = restarted();
        const report = await after.reconcile();
        expect(report.rolledBack).toEqual([record?.id]);
        const failed = await store.getSessionById(record?.id as string);
        expect(failed?.state).toBe('failed');
        expect(failed?.failureReason).toMatch(/interrupted .* undone: destroy it and create another/);
        expect(await store.listSandboxOwners('test')).toEqual([]);
        expect(await store.countLiveSessions(owner), 'no longer counts against the limit').toBe(0);
        await after.close();
      });

      it('completes a create killed after its sandbox was running', async () => {
        const s = await manager.create(owner, input, audit);
        // As if the process died between the backend's create and recording `running`.
        await store.db.orm.execute(sql`UPDATE sessions SET state = 'creating' WHERE id = ${s.id}`);
        const after = restarted();
        expect((await after.reconcile()).completed).toEqual([s.id]);
        expect((await store.getSessionById(s.id))?.state).toBe('running');
        expect(backend.sandboxes.has(s.sandboxId as string)).toBe(true);
        await after.close();
      });

      it('completes a start killed after the sandbox was running: running, not stopped with a live sandbox', async () => {
        const s = await manager.create(owner, input, audit);
        // As if the process died between the backend's start and recording `running`.
        await store.transitionSession(s.id, ['running'], 'stopped');
        const after = restarted();
        expect((await after.reconcile()).adopted).toEqual([s.id]);
        expect((await store.getSessionById(s.id))?.state).toBe('running');
        await after.close();
      });

      it('rolls back a create killed while its sandbox was half made (listed, not running)', async () => {
        const s = await manager.create(owner, input, audit);
        await store.db.orm.execute(sql`UPDATE sessions SET state = 'creating' WHERE id = ${s.id}`);
        (backend.sandboxes.get(s.sandboxId as string) as { state: string }).state = 'creating';
        const after = restarted();
        expect((await after.reconcile()).rolledBack).toEqual([s.id]);
        expect(backend.sandboxes.size).toBe(0);
        await after.close();
      });

      it('finishes a destroy killed half-way: destroyed, never "removed outside Studio"', async () => {
        const s = await manager.create(owner, input, audit);
        await store.transitionSession(s.id, ['running'], 'destroying');
        // The sandbox went, the process died before recording `destroyed`.
        await backend.destroy(s.sandboxId as string);
        const after = restarted();
        const report = await after.reconcile();
        expect(report.destroyed).toEqual([s.id]);
        expect(report.failed).toEqual([]);
        const done = await store.getSessionById(s.id);
        expect(done?.state).toBe('destroyed');
        expect(done?.failureReason).toBeNull();
        expect(await store.listSandboxOwners('test')).toEqual([]);
        await after.close();
      });

      it('removes a recorded sandbox no session or pool holds (a pool member of the dead process)', async () => {
        const spec = { image: 'i', resources: defaultResources(defaultPolicy), network: 'none' as const };
        const member = await backend.create({ ...spec, labels: { 'studio.session': 'pool' } });
        await store.recordSandbox({ id: member.id, backend: 'docker', instanceId: 'test', sessionId: null });
        await store.recordSandbox({
          id: 'sbx-00000000000000ff',
          backend: 'docker',
          instanceId: 'test',
          sessionId: null,
        });
        const kept = await manager.create(owner, input, audit);
        const after = restarted();
        expect((await after.reconcile()).leftoversRemoved.sort()).toEqual(
          [member.id, 'sbx-00000000000000ff'].sort(),
        );
        expect([...backend.sandboxes.keys()]).toEqual([kept.sandboxId]);
        expect((await store.listSandboxOwners('test')).map((o) => o.id)).toEqual([kept.sandboxId]);
        await after.close();
      });
    });

    it('a sandbox that failed fails its session and is kept (not an orphan) until the session is destroyed', async () => {
      const s = await manager.create(owner, input, audit);
      (backend.sandboxes.get(s.sandboxId as string) as { state: string }).state = 'failed';
      expect((await manager.reconcile()).failed).toEqual([s.id]);
      expect((await manager.get(owner, s.id, audit)).failureReason).toMatch(/sandbox failed/);
      const t0 = Date.now();
      await manager.reconcile(t0);
      expect((await manager.reconcile(t0 + 120_000)).orphansRemoved).toEqual([]);
      expect(backend.sandboxes.has(s.sandboxId as string)).toBe(true);
      await manager.destroy(owner, s.id, audit);
      expect(backend.sandboxes.size).toBe(0);
    });

    it('detects a backend restart: sessions whose sandboxes were stopped by it become stopped and start again', async () => {
      const s = await manager.create(owner, input, audit);
      backend.available_ = { ok: false, reason: 'Cannot connect to the Docker daemon' };
      expect((await manager.reconcile()).backendsDown).toEqual(['docker']);
      expect((await manager.get(owner, s.id, audit)).state).toBe('running'); // left alone while down
      // The daemon is back; like dockerd, it left the container stopped (no restart policy).
      (backend.sandboxes.get(s.sandboxId as string) as { state: string }).state = 'stopped';
      backend.available_ = { ok: true };
      expect((await manager.reconcile()).stopped).toEqual([s.id]);
      expect((await manager.get(owner, s.id, audit)).state).toBe('stopped');
      expect((await manager.start(owner, s.id, audit)).state).toBe('running');
      const r = await manager.withSandbox(owner, s.id, audit, (sb) =>
        sb.exec(['echo', 'hi'], { timeoutMs: 5000, maxOutputBytes: 1024 }),
      );
      expect(r.exitCode).toBe(0);
    });
  });
});
