import { randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createStudioClient, openTerminal, type StudioClient, StudioClientError } from '@studio/client';
import { openDb, Store } from '@studio/db';
import { createTestDatabase, type TestDatabase } from '@studio/db/testing';
import { runtimePaths } from '@studio/isolation/testing';
import { DockerBackend } from '@studio/isolation-docker';
import { NODE_AUTH_HEADER, signNodeRequest } from '@studio/policy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ADMIN_PASSWORD, startTestApi, TEST_DATA_DIR, type TestApi } from '../testing/api-fixture.ts';
import { dockerSkip, ES } from '../testing/docker-api.ts';
import { loopbackFetch } from '../testing/loopback-fetch.ts';
import { FORWARDED_CLIENT_HEADER } from './node-guard.ts';

// Scale-out on one machine (issue 23): two node services and two API replicas, each a real API process's
// server in this test process, on one real PostgreSQL, the nodes on the real Docker. What runs on Swarm is
// proven by the cluster tests under infra/; this proves the roles themselves: placement, forwarding through any
// replica, exec ids that find their node, a node's door, and a node that stops reporting.

const databaseUrl = process.env.STUDIO_TEST_DATABASE_URL;
const inCi = process.env.CI === 'true' || process.env.CI === '1';
if (inCi && !databaseUrl) throw new Error('STUDIO_TEST_DATABASE_URL is required in CI for the cluster tests');
const skip = dockerSkip ?? (databaseUrl ? undefined : 'STUDIO_TEST_DATABASE_URL is not set (PostgreSQL)');

const SECRET = randomBytes(48).toString('base64');
/** One snapshots folder both nodes mount (a shared filesystem in production): a snapshot outlives its node. */
const SNAPSHOTS_DIR = `${TEST_DATA_DIR}-cluster-snapshots`;
const labels = { 'studio.test': 'cluster' };
const nodeIds = ['node-a', 'node-b'] as const;

function backendOf(id: string): DockerBackend {
  return new DockerBackend({
    dataDir: join(`${TEST_DATA_DIR}-${id}`, 'docker'),
    instanceId: id,
    seccompProfile: runtimePaths().seccompProfile,
    snapshotsDir: join(SNAPSHOTS_DIR, 'docker'),
  });
}

describe.skipIf(skip !== undefined)(
  `a cluster of two nodes and two replicas${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let database: TestDatabase;
    let store: Store;
    const nodes: TestApi[] = [];
    const replicas: TestApi[] = [];
    const backends = nodeIds.map(backendOf);
    let clients: StudioClient[] = [];
    const sessions: { id: string; node: string }[] = [];

    beforeAll(async () => {
      database = await createTestDatabase('postgres', { databaseUrl, ci: inCi });
      const url = database.options.databaseUrl as string;
      store = await Store.open(await openDb({ databaseUrl: url }));
      const shared = {
        DATABASE_URL: url,
        STUDIO_CLUSTER_SECRET: SECRET,
        STUDIO_SECRETS_KEY: randomBytes(32).toString('base64'),
      };
      for (const [i, id] of nodeIds.entries()) {
        nodes.push(
          await startTestApi({
            backends: [backends[i] as DockerBackend],
            labels,
            db: await openDb({ databaseUrl: url }),
            env: {
              ...shared,
              STUDIO_ROLE: 'node',
              STUDIO_INSTANCE_ID: id,
              STUDIO_DATA_DIR: `${TEST_DATA_DIR}-${id}`,
              STUDIO_SNAPSHOTS_DIR: SNAPSHOTS_DIR,
            },
          }),
        );
      }
      for (const id of ['replica-1', 'replica-2']) {
        replicas.push(
          await startTestApi({
            db: await openDb({ databaseUrl: url }),
            env: { ...shared, STUDIO_ROLE: 'api', STUDIO_INSTANCE_ID: id },
          }),
        );
      }
      const token = await (replicas[0] as TestApi).login('admin', ADMIN_PASSWORD);
      clients = replicas.map((r) => createStudioClient({ url: r.url, token, EventSource: ES }));
    }, 300_000);

    afterAll(async () => {
      // Each session is destroyed by its own node (a replica refuses the one whose node the test silenced), so no
      // sandbox or workspace outlives the file.
      for (const s of sessions) {
        const record = await store.getSessionById(s.id);
        const node = nodes[nodeIds.indexOf(s.node as (typeof nodeIds)[number])];
        if (!record || !node) continue;
        await node.app.deps.sessions
          .destroy(record.ownerId, s.id, { actorId: null, ip: null, requestId: null })
          .catch((error: unknown) => console.warn(`could not destroy ${s.id}: ${String(error)}`));
      }
      for (const api of [...replicas, ...nodes]) await api.close().catch(() => undefined);
      for (const backend of backends) {
        for (const s of await backend.list({ labels })) await backend.destroy(s.id).catch(() => undefined);
      }
      await rm(SNAPSHOTS_DIR, { recursive: true, force: true });
      await store?.close();
      await database?.dispose();
    }, 300_000);

    it('places sessions on both nodes and serves each through either replica', async () => {
      const [one, two] = clients as [StudioClient, StudioClient];
      for (let i = 0; i < 4; i++) {
        const client = i % 2 === 0 ? one : two;
        const { id } = await client.sessions.create.mutate({ resources: { memoryMb: 256 } });
        const record = await store.getSessionById(id);
        sessions.push({ id, node: record?.instanceId ?? '' });
      }
      // Two nodes, two candidates: placement always weighs both, and the session count moves at once.
      expect(sessions.filter((s) => s.node === 'node-a')).toHaveLength(2);
      expect(sessions.filter((s) => s.node === 'node-b')).toHaveLength(2);
      // What an operator sees: both nodes, with their live sessions.
      const seen = await one.cluster.nodes.query();
      expect(seen.map((n) => [n.id, n.liveSessions, n.availability])).toEqual([
        ['node-a', 2, 'active'],
        ['node-b', 2, 'active'],
      ]);
      // Every node's sandboxes carry that node's instance id, on the node's own backend.
      for (const [i, id] of nodeIds.entries()) {
        const onBackend = (await (backends[i] as DockerBackend).list({ labels })).length;
        expect(onBackend, id).toBeGreaterThanOrEqual(2);
      }

      for (const [i, s] of sessions.entries()) {
        const writer = i % 2 === 0 ? two : one;
        const reader = i % 2 === 0 ? one : two;
        const ran = await writer.exec.run.mutate({
          sessionId: s.id,
          command: ['sh', '-c', 'echo "$((6 * 7))"'],
        });
        expect(ran.stdout).toBe('42\n');
        await writer.files.write.mutate({ sessionId: s.id, path: 'note.txt', content: `on ${s.node}` });
        expect((await reader.files.read.query({ sessionId: s.id, path: 'note.txt' })).content).toBe(
          `on ${s.node}`,
        );
        const listed = await reader.sessions.get.query({ sessionId: s.id });
        expect(listed.state).toBe('running');
      }
    });

    it('streams a session’s events and an exec through the other replica', async () => {
      const [one, two] = clients as [StudioClient, StudioClient];
      const session = sessions.find((s) => s.node === 'node-b') as { id: string };
      const seen: string[] = [];
      const sub = two.events.subscribe.subscribe(
        { sessionId: session.id },
        { onData: (e) => seen.push((e.data as { type: string }).type) },
      );
      try {
        await new Promise((r) => setTimeout(r, 300)); // subscribed before the exec starts
        const started = await one.exec.start.mutate({
          sessionId: session.id,
          command: ['sh', '-c', 'echo one; sleep 0.2; echo two'],
        });
        // The exec id names its node: exec.stream goes to node-b through replica 2, which never saw the start.
        const output: string[] = [];
        await new Promise<void>((resolve, reject) => {
          const stream = two.exec.stream.subscribe(
            { execId: started.execId, token: started.token },
            {
              onData: (e) => {
                const event = e.data as { type: string; data?: string };
                if (event.type === 'stdout' && event.data) output.push(event.data);
                if (event.type === 'exit') {
                  stream.unsubscribe();
                  resolve();
                }
              },
              onError: reject,
            },
          );
        });
        expect(output.join('')).toBe('one\ntwo\n');
        await waitFor(() => seen.includes('exec.exited'), 'exec.exited on the other replica');
        expect(seen).toContain('exec.started');
      } finally {
        sub.unsubscribe();
      }
    });

    it('relays a terminal through a replica, and the shell survives a replica that goes away', async () => {
      const session = sessions.find((s) => s.node === 'node-b') as { id: string };
      const token = await (replicas[1] as TestApi).login('admin', ADMIN_PASSWORD);
      const open = (url: string, more: { terminalId?: string; offset?: number } = {}) =>
        openTerminal({ url, token, sessionId: session.id, WebSocket: WebSocket as never, ...more });
      const first = open((replicas[1] as TestApi).url);
      let text = '';
      first.onData((c) => {
        text += Buffer.from(c).toString('utf8');
      });
      await first.ready;
      first.write('echo "relayed-$((40 + 2))"\n');
      await waitFor(() => text.includes('relayed-42'), 'terminal output through the replica');
      const terminalId = first.terminalId as string;
      // The socket drops without a goodbye (the replica's process died): the node keeps the shell to reattach.
      first.socket.close(4000, 'replica gone');
      await first.closed;
      const again = open((replicas[0] as TestApi).url, { terminalId, offset: 0 });
      let replayed = '';
      again.onData((c) => {
        replayed += Buffer.from(c).toString('utf8');
      });
      await again.ready;
      await waitFor(
        () => replayed.includes('relayed-42'),
        'the shell’s output replayed through the other replica',
      );
      again.close();
    });

    it('serves a preview of a node’s sandbox through a replica’s preview listener, and only that way', async () => {
      const [one] = clients as [StudioClient];
      for (const node of nodeIds) {
        const session = sessions.find((s) => s.node === node) as { id: string };
        await one.files.write.mutate({
          sessionId: session.id,
          path: 'site/index.html',
          content: `hello from ${node}`,
          createParents: true,
        });
        await one.exec.run.mutate({
          sessionId: session.id,
          command: ['sh', '-c', 'cd site && (nohup python3 -m http.server 3000 >/dev/null 2>&1 &)'],
        });
        const link = new URL((await one.previews.create.mutate({ sessionId: session.id, port: 3000 })).url);
        // The link names the preview host; any replica's preview listener serves it (Traefik in production).
        const replica = new URL((replicas[1] as TestApi).api.previewUrl as string);
        link.port = replica.port;
        const landed = await loopbackFetch(link.href, { redirect: 'manual' });
        expect(landed.status).toBe(302);
        const cookie = (landed.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
        let page = await loopbackFetch(`${link.origin}/`, { headers: { cookie } });
        for (let i = 0; i < 50 && page.status !== 200; i++) {
          await new Promise((r) => setTimeout(r, 200)); // the dev server is still starting
          page = await loopbackFetch(`${link.origin}/`, { headers: { cookie } });
        }
        expect(page.status).toBe(200);
        expect(await page.text()).toBe(`hello from ${node}`);
        // The node's own preview listener answers nobody but a replica.
        const nodePreview = new URL((nodes[nodeIds.indexOf(node)] as TestApi).api.previewUrl as string);
        const direct = await loopbackFetch(`http://${link.hostname}:${nodePreview.port}/`, {
          headers: { cookie },
        });
        expect(direct.status).toBe(403);
      }
    });

    it('serves E2B’s API through any replica: create is placed, a sandbox’s calls and envd reach its node', async () => {
      const [one] = clients as [StudioClient];
      const { token } = await one.tokens.create.mutate({ name: 'e2b-through-replicas' });
      const e2b = (replica: number, path: string, init: RequestInit = {}) =>
        fetch(`${(replicas[replica] as TestApi).url}/e2b${path}`, {
          ...init,
          headers: { 'x-api-key': token, 'content-type': 'application/json', ...(init.headers ?? {}) },
        });
      const created = await e2b(0, '/sandboxes', {
        method: 'POST',
        body: JSON.stringify({ templateID: 'base' }),
      });
      expect(created.status).toBe(201);
      const { sandboxID } = (await created.json()) as { sandboxID: string };
      const sessionId = `ses_${Buffer.from(sandboxID, 'hex').toString('base64url')}`;
      const node = (await store.getSessionById(sessionId))?.instanceId ?? '';
      sessions.push({ id: sessionId, node });
      expect(nodeIds).toContain(node);
      const got = await e2b(1, `/sandboxes/${sandboxID}`);
      expect(got.status).toBe(200);
      expect(((await got.json()) as { state: string }).state).toBe('running');
      // envd under /e2b/envd names its sandbox in a header: the replica sends it to the sandbox's node.
      const health = await e2b(1, '/envd/health', { headers: { 'e2b-sandbox-id': sandboxID } });
      expect(health.status).toBe(204);
      const listed = (await (await e2b(1, '/v2/sandboxes')).json()) as { sandboxID: string }[];
      expect(listed.map((s) => s.sandboxID)).toContain(sandboxID);
      expect((await e2b(1, `/sandboxes/${sandboxID}`, { method: 'DELETE' })).status).toBe(204);
      expect((await store.getSessionById(sessionId))?.state).toBe('destroyed');
    });

    it.skipIf(process.getuid?.() !== 0)(
      'builds a template on a node, shows its log through a replica, and places its sessions where the build is',
      async () => {
        const [admin] = clients as [StudioClient];
        const tag = randomBytes(4).toString('hex');
        // A user of its own (the admin's five live sessions are mostly taken by the tests above).
        const password = randomBytes(18).toString('base64url');
        await admin.users.create.mutate({ username: `builder-${tag}`, password });
        const userToken = await (replicas[0] as TestApi).login(`builder-${tag}`, password);
        const [one, two] = replicas.map((r) =>
          createStudioClient({ url: r.url, token: userToken, EventSource: ES }),
        ) as [StudioClient, StudioClient];
        const spec = { files: [{ path: '/opt/cluster/hello.txt', content: `built ${tag}\n` }] };
        const created = await one.templates.create.mutate({ name: `cluster-${tag}`, spec });
        // Replicas build nothing: the build was placed on a node, which the record names.
        const builder = (await store.getTemplate(created.id))?.builderId ?? '';
        expect(nodeIds).toContain(builder);
        // Its log through the other replica, as the builder stores it: to the end, ready.
        let log = '';
        const end = await new Promise<{ state: string; failure: string | null }>((resolve, reject) => {
          const sub = two.templates.logs.subscribe(
            { template: created.id },
            {
              onData: (item) => {
                if (item.type === 'log') log += item.text;
                if (item.type === 'end') {
                  sub.unsubscribe();
                  resolve({ state: item.state, failure: item.failure });
                }
              },
              onError: reject,
            },
          );
        });
        expect(end).toEqual({ state: 'ready', failure: null });
        expect(log).toMatch(/# ready in [\d.]+ s: image studio-template:/);
        const digest = `sha256:${(await store.getTemplate(created.id))?.digest}`;
        // The builder reports holding it (every 5 s); the other node does not have it.
        const holds = async (id: string) =>
          (await store.listNodes()).find((n) => n.id === id)?.capacity.templates.includes(digest) ?? false;
        const until = Date.now() + 15_000;
        while (!(await holds(builder)) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
        expect(await holds(builder)).toBe(true);
        expect(await holds(nodeIds.find((n) => n !== builder) as string)).toBe(false);
        await new Promise((r) => setTimeout(r, 1100)); // the replicas' list of nodes is a second old at most

        // Its sessions, through either replica (and E2B's create), all go to the node that holds the build.
        const made: string[] = [];
        for (const client of [one, two]) {
          made.push(
            (await client.sessions.create.mutate({ template: created.name, resources: { memoryMb: 256 } }))
              .id,
          );
        }
        const { token } = await one.tokens.create.mutate({ name: `e2b-template-${tag}` });
        const e2b = await fetch(`${(replicas[1] as TestApi).url}/e2b/sandboxes`, {
          method: 'POST',
          headers: { 'x-api-key': token, 'content-type': 'application/json' },
          body: JSON.stringify({ templateID: created.id }),
        });
        expect(e2b.status).toBe(201);
        const { sandboxID } = (await e2b.json()) as { sandboxID: string };
        made.push(`ses_${Buffer.from(sandboxID, 'hex').toString('base64url')}`);
        for (const id of made) {
          expect((await store.getSessionById(id))?.instanceId, id).toBe(builder);
        }
        const ran = await two.exec.run.mutate({
          sessionId: made[0] as string,
          command: ['cat', '/opt/cluster/hello.txt'],
        });
        expect(ran.stdout).toBe(`built ${tag}\n`);
        // A build from it goes where its base is too.
        const child = await two.templates.create.mutate({
          name: `cluster-child-${tag}`,
          spec: { base: created.name, run: ['true'] },
        });
        expect((await store.getTemplate(child.id))?.builderId).toBe(builder);

        // Nothing of it outlives the test: its sessions, the templates, and their builds on the node.
        for (const id of made) await one.sessions.destroy.mutate({ sessionId: id });
        await waitUntil(
          async () => (await store.getTemplate(child.id))?.state !== 'building',
          'the child build',
        );
        await one.templates.delete.mutate({ template: child.id });
        await one.templates.delete.mutate({ template: created.id });
        for (const node of nodes) await node.app.deps.templates.collect();
      },
      240_000,
    );

    it('sends a session made from a snapshot, and deleting it, to the node that took it, through any replica', async () => {
      const [one, two] = clients as [StudioClient, StudioClient];
      for (const node of nodeIds) {
        const from = sessions.find((s) => s.node === node) as { id: string; node: string };
        const snap = await one.snapshots.create.mutate({ sessionId: from.id, name: `pinned-${node}` });
        // The admin has one live session to spare: one at a time.
        for (const client of [two, one]) {
          const { id } = await client.sessions.create.mutate({ fromSnapshot: snap.name });
          try {
            expect((await store.getSessionById(id))?.instanceId).toBe(node);
          } finally {
            await client.sessions.destroy.mutate({ sessionId: id });
          }
        }
        expect((await two.snapshots.delete.mutate({ snapshot: snap.id })).id).toBe(snap.id);
        expect((await one.snapshots.list.query()).snapshots.map((s) => s.id)).not.toContain(snap.id);
      }
    });

    it('a node answers only requests a replica signed, once', async () => {
      const node = nodes[0] as TestApi;
      const token = await (replicas[1] as TestApi).login('admin', ADMIN_PASSWORD);
      const path = '/trpc/sessions.list';
      const direct = await fetch(`${node.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
      expect(direct.status).toBe(403);
      expect(((await direct.json()) as { error: { message: string } }).error.message).toMatch(/call the API/);

      const principal = JSON.stringify({ ip: '203.0.113.9', https: false });
      const sign = (secret: string, nonce: string) =>
        signNodeRequest(Buffer.from(secret, 'utf8'), {
          method: 'GET',
          path,
          bodySha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
          principal,
          at: Date.now(),
          nonce,
        });
      const send = (header: string) =>
        fetch(`${node.url}${path}`, {
          headers: {
            authorization: `Bearer ${token}`,
            [NODE_AUTH_HEADER]: header,
            [FORWARDED_CLIENT_HEADER]: principal,
          },
        });
      const nonce = randomBytes(16).toString('base64url');
      const signed = sign(SECRET, nonce);
      expect((await send(signed)).status).toBe(200);
      expect((await send(signed)).status).toBe(403); // the same request again: a replay
      expect(
        (await send(sign(randomBytes(48).toString('base64'), randomBytes(16).toString('base64url')))).status,
      ).toBe(403);
    });

    it('a node that stops reporting takes no new sessions, its sessions say why, and one is restored elsewhere', async () => {
      const [one] = clients as [StudioClient];
      const nodeB = nodes[1] as TestApi;
      const lost = sessions.find((s) => s.node === 'node-b') as { id: string };
      // Before node-b goes: a file in one of its sessions, kept in a snapshot (in the folder both nodes share).
      await one.files.write.mutate({ sessionId: lost.id, path: 'kept.txt', content: 'from node-b' });
      const snap = await one.snapshots.create.mutate({ sessionId: lost.id, name: 'before-the-loss' });
      await nodeB.app.node?.drain(); // its heartbeat stops (as when its process hangs or its host is gone)
      await store.setNodeDraining('node-b', false);
      await database.exec([`UPDATE nodes SET reported_at = now() - interval '1 minute' WHERE id = 'node-b'`]);
      await new Promise((r) => setTimeout(r, 1100)); // the replicas' list of nodes is a second old at most
      const refused = await one.exec.run.mutate({ sessionId: lost.id, command: ['true'] }).then(
        () => null,
        (e: unknown) => e as StudioClientError,
      );
      expect(refused).toBeInstanceOf(StudioClientError);
      expect(refused?.code).toBe('UNAVAILABLE');
      expect(refused?.message).toMatch(/node-b\) has not been heard from for \d+ s/);
      // Within a sweep (5 s), a replica fails the lost node's sessions with the reason: none looks running.
      const end = Date.now() + 15_000;
      while ((await store.getSessionById(lost.id))?.state !== 'failed' && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(await store.getSessionById(lost.id)).toMatchObject({
        state: 'failed',
        failureReason: expect.stringMatching(/^its node node-b stopped answering/),
      });
      expect((await one.sessions.get.query({ sessionId: lost.id })).state).toBe('failed');
      // Its owner can still end it: the record is destroyed; the node would remove the sandbox as an orphan.
      const lostNodeSession = sessions.splice(sessions.indexOf(lost as (typeof sessions)[number]), 1)[0];
      expect((await one.sessions.destroy.mutate({ sessionId: lost.id })).state).toBe('destroyed');
      // (the test's own node-b is still running: clean its sandbox now, as its reconciler would after the grace)
      const leftover = (await store.getSessionById(lost.id))?.sandboxId;
      if (leftover) await (backends[1] as DockerBackend).destroy(leftover).catch(() => undefined);
      expect(lostNodeSession?.id).toBe(lost.id);

      const { id } = await one.sessions.create.mutate({ resources: { memoryMb: 256 } });
      sessions.push({ id, node: (await store.getSessionById(id))?.instanceId ?? '' });
      expect(sessions.at(-1)?.node).toBe('node-a');

      // The lost session, restored from its snapshot on the node that is left, through the other replica.
      const two = clients[1] as StudioClient;
      const restored = await two.sessions.create.mutate({ fromSnapshot: snap.name });
      sessions.push({ id: restored.id, node: (await store.getSessionById(restored.id))?.instanceId ?? '' });
      expect(sessions.at(-1)?.node).toBe('node-a');
      expect((await two.files.read.query({ sessionId: restored.id, path: 'kept.txt' })).content).toBe(
        'from node-b',
      );
      // And deleted there too (node-b, which took it, is still silent).
      expect((await one.snapshots.delete.mutate({ snapshot: snap.id })).id).toBe(snap.id);
      expect(await readdir(join(SNAPSHOTS_DIR, 'docker'))).not.toContain(snap.id);

      // Swarm drains node-a too: nothing is left to place on, and the refusal says what to do.
      await store.reportNode({
        id: 'node-b',
        url: 'http://127.0.0.1:9',
        host: 'gone',
        swarmNodeId: null,
        capacity: (await store.listNodes()).find((n) => n.id === 'node-b')?.capacity as never,
      });
      await database.exec([`UPDATE nodes SET availability = 'drain'`]);
      await new Promise((r) => setTimeout(r, 1100));
      const none = await one.sessions.create.mutate({}).then(
        () => null,
        (e: unknown) => e as StudioClientError,
      );
      expect(none?.code).toBe('BACKEND_UNAVAILABLE');
      expect(none?.message).toMatch(/docker node update --availability active/);
      await database.exec([`UPDATE nodes SET availability = 'active'`]);
    });
  },
);

/** Waits (60 s at most) for an asynchronous `check`. */
async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
