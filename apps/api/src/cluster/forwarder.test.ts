import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NodeRecord, Store } from '@studio/db';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../core/logger.ts';
import { Forwarder } from './forwarder.ts';
import type { PlacementHint, PlacementHints } from './placement-hints.ts';

const listen = (server: Server) =>
  new Promise<string>((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
    ),
  );

/** The test servers (nodes, replicas) of the running test, closed after it. */
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

describe('a call waiting on a node that stops reporting', () => {
  it('is ended with UNAVAILABLE naming the node, instead of waiting forever', async () => {
    // A frozen node: its port accepts connections (the kernel does that) and nothing ever answers.
    const frozen = createServer(() => undefined);
    servers.push(frozen);
    const nodeUrl = await listen(frozen);
    const heardAt = Date.now();
    // The store as far as routing reads it: one session on node-x, which reported once (just now) and never again.
    const store = {
      getSessionById: async (id: string) =>
        id === 'ses_AAAAAAAAAAAAAAAAAAAAAA' ? { instanceId: 'node-x' } : undefined,
      listNodes: async () => [{ id: 'node-x', url: nodeUrl, ageMs: Date.now() - heardAt } as NodeRecord],
    } as unknown as Store;
    const forwarder = new Forwarder({
      store,
      secret: randomBytes(32),
      logger: createLogger({ level: 'silent' }),
      routed: new Map([['exec.run', 'sessionId']]),
      defaultMemoryBytes: 512 * 2 ** 20,
      maxBodyBytes: 1 << 20,
      nodesTtlMs: 0,
      staleAfterMs: 400,
      watchdogMs: 100,
    });
    const replica = createServer((req, res) => {
      void forwarder.trpc(req, res, 'exec.run', { ip: '127.0.0.1', https: false });
    });
    servers.push(replica);
    const replicaUrl = await listen(replica);
    try {
      const t0 = Date.now();
      const answer = await fetch(`${replicaUrl}/trpc/exec.run`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sessionId: 'ses_AAAAAAAAAAAAAAAAAAAAAA', command: ['sleep', '1'] }),
        signal: AbortSignal.timeout(10_000),
      });
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(answer.status).toBe(502);
      const body = (await answer.json()) as { error: { message: string; data: { studioCode: string } } };
      expect(body.error.data.studioCode).toBe('UNAVAILABLE');
      expect(body.error.message).toMatch(/the node running this session \(node-x\) has not been heard from/);
      // The request to the frozen node was given up too.
      await new Promise((r) => setTimeout(r, 100));
      expect(await new Promise<number>((r) => frozen.getConnections((_e, n) => r(n)))).toBe(0);
    } finally {
      forwarder.close();
    }
  });
});

describe('placing by template and pinning by snapshot', () => {
  const DIGEST = `sha256:${'ab'.repeat(32)}`;

  /** Two nodes that answer with their own name; `b` holds the build DIGEST; `c` is known but silent. */
  async function cluster(hint: PlacementHints) {
    const node = async (name: string) => {
      const server = createServer((_req, res) => res.end(JSON.stringify({ node: name })));
      servers.push(server);
      return listen(server);
    };
    const capacity = (templates: string[]) => ({
      backends: ['docker'],
      templates,
      memoryTotalBytes: 8 * 2 ** 30,
      memoryFreeBytes: 6 * 2 ** 30,
      cpus: 4,
      load1: 0,
      maxSessions: null,
    });
    const list = [
      { id: 'node-a', url: await node('node-a'), ageMs: 100, capacity: capacity([]) },
      { id: 'node-b', url: await node('node-b'), ageMs: 100, capacity: capacity([DIGEST]) },
      { id: 'node-c', url: 'http://127.0.0.1:9', ageMs: 60_000, capacity: capacity([DIGEST]) },
    ].map(
      (n) => ({ availability: 'active', draining: false, liveSessions: 0, ...n }) as unknown as NodeRecord,
    );
    const forwarder = new Forwarder({
      store: { listNodes: async () => list } as unknown as Store,
      secret: randomBytes(32),
      logger: createLogger({ level: 'silent' }),
      routed: new Map(),
      defaultMemoryBytes: 512 * 2 ** 20,
      maxBodyBytes: 1 << 20,
      hints: hint,
    });
    const outcomes: string[] = [];
    const replica = createServer((req, res) => {
      const procedure = (req.url ?? '').replace(/^\/trpc\//, '').split('?')[0] as string;
      void forwarder.trpc(req, res, procedure, { ip: '127.0.0.1', https: false }).then((o) => {
        outcomes.push(o.kind === 'refused' ? `refused: ${o.error.message}` : o.kind);
        if (o.kind !== 'forwarded') res.end(JSON.stringify({ outcome: outcomes.at(-1) }));
      });
    });
    servers.push(replica);
    const url = await listen(replica);
    const call = async (procedure: string, input: unknown) =>
      (await (
        await fetch(`${url}/trpc/${procedure}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(input),
        })
      ).json()) as { node?: string; outcome?: string };
    return { forwarder, call };
  }

  it('sends a template’s sessions and builds to the live node holding its build', async () => {
    const seen: string[] = [];
    const { forwarder, call } = await cluster(async (_req, procedure, input) => {
      seen.push(`${procedure} ${JSON.stringify(input)}`);
      return { template: DIGEST };
    });
    try {
      for (let i = 0; i < 6; i++)
        expect(await call('sessions.create', { template: 'tools' })).toEqual({ node: 'node-b' });
      expect(await call('templates.create', { name: 'child' })).toEqual({ node: 'node-b' });
      expect(seen[0]).toBe('sessions.create {"template":"tools"}');
      // Not a placed call: no hint is asked for.
      expect(await call('users.list', {})).toEqual({ outcome: 'local' });
      expect(seen).toHaveLength(7);
    } finally {
      forwarder.close();
    }
  });

  it('refuses naming the fix when no live node holds the build', async () => {
    const { forwarder, call } = await cluster(async () => ({ template: `sha256:${'cd'.repeat(32)}` }));
    try {
      const { outcome } = await call('sessions.create', { template: 'gone' });
      expect(outcome).toMatch(
        /^refused: .*lack the build of template sha256:cdcd.*build it again with templates.build/,
      );
    } finally {
      forwarder.close();
    }
  });

  it('pins a snapshot’s calls to its node while it answers, else places them, and lets the replica answer the rest', async () => {
    let hint: PlacementHint | undefined = { node: 'node-a', template: null };
    const { forwarder, call } = await cluster(async () => hint);
    try {
      expect(await call('snapshots.delete', { snapshot: 'kept' })).toEqual({ node: 'node-a' });
      expect(await call('sessions.create', { fromSnapshot: 'kept' })).toEqual({ node: 'node-a' });
      // Its node is silent: placed like any call, by the snapshot's template (the node that gets it serves it from
      // a shared snapshot folder, or says it cannot).
      hint = { node: 'node-c', template: DIGEST };
      for (let i = 0; i < 4; i++)
        expect(await call('snapshots.delete', { snapshot: 'old' })).toEqual({ node: 'node-b' });
      // Nothing of the caller's by that name (or not signed in): the replica answers, NOT_FOUND as the node would.
      hint = undefined;
      expect(await call('snapshots.delete', { snapshot: 'nope' })).toEqual({ outcome: 'local' });
    } finally {
      forwarder.close();
    }
  });

  it('places without a hint when resolving it fails', async () => {
    const { forwarder, call } = await cluster(async () => {
      throw new Error('store down');
    });
    try {
      const { node } = await call('sessions.create', {});
      expect(['node-a', 'node-b']).toContain(node);
    } finally {
      forwarder.close();
    }
  });
});

describe('a node closing a kept-alive connection as a call goes down it', () => {
  it('sends the call once more on a new connection, body and all, and the caller never sees it', async () => {
    // The keep-alive race, made certain: the node answers the first call on each connection and drops the
    // connection, unanswered, when a second call arrives on it (as when its idle timer fires that moment).
    const calls = new WeakMap<object, number>();
    const bodies: string[] = [];
    const node = createServer((req, res) => {
      const n = (calls.get(req.socket) ?? 0) + 1;
      calls.set(req.socket, n);
      if (n > 1) {
        req.socket.destroy();
        return;
      }
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c;
      });
      req.on('end', () => {
        bodies.push(`${req.method} ${body}`);
        res.end(JSON.stringify({ ok: true }));
      });
    });
    servers.push(node);
    const nodeUrl = await listen(node);
    const store = {
      getSessionById: async () => ({ instanceId: 'node-x' }),
      listNodes: async () => [{ id: 'node-x', url: nodeUrl, ageMs: 10 } as NodeRecord],
    } as unknown as Store;
    const forwarder = new Forwarder({
      store,
      secret: randomBytes(32),
      logger: createLogger({ level: 'silent' }),
      routed: new Map([
        ['exec.run', 'sessionId'],
        ['sessions.get', 'sessionId'],
      ]),
      defaultMemoryBytes: 512 * 2 ** 20,
      maxBodyBytes: 1 << 20,
    });
    const replica = createServer((req, res) => {
      const procedure = (req.url ?? '').replace(/^\/trpc\//, '').split('?')[0] as string;
      void forwarder.trpc(req, res, procedure, { ip: '127.0.0.1', https: false });
    });
    servers.push(replica);
    const url = await listen(replica);
    const input = { sessionId: 'ses_AAAAAAAAAAAAAAAAAAAAAA', command: ['true'] };
    const post = () =>
      fetch(`${url}/trpc/exec.run`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(input),
      });
    try {
      for (let i = 0; i < 3; i++) expect((await post()).status).toBe(200);
      const get = await fetch(`${url}/trpc/sessions.get?input=${encodeURIComponent(JSON.stringify(input))}`);
      expect(get.status).toBe(200);
      expect(bodies).toEqual([...Array(3).fill(`POST ${JSON.stringify(input)}`), 'GET ']);
    } finally {
      forwarder.close();
    }
  });
});
