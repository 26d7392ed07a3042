import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb, Store } from '@studio/db';
import { createPolicySchemas, defaultPolicy } from '@studio/policy';
import { describe, expect, it } from 'vitest';
import { execNodeTag, newTaggedId, nodeTag } from '../core/ids.ts';
import { createLogger } from '../core/logger.ts';
import { createAppRouter } from '../router.ts';
import { routedProcedures } from './forwarder.ts';
import { SwarmAvailability } from './swarm-availability.ts';

describe('routing a call to its node', () => {
  it('routes by the session a call names, or by the node its exec id carries', () => {
    const routed = routedProcedures(createAppRouter(createPolicySchemas(defaultPolicy))._def.procedures);
    expect(routed.get('sessions.get')).toBe('sessionId');
    expect(routed.get('files.write')).toBe('sessionId');
    expect(routed.get('events.subscribe')).toBe('sessionId');
    expect(routed.get('exec.stream')).toBe('execId');
    expect(routed.get('exec.cancel')).toBe('execId');
    // Not a node's: served by the replica (sessions.create is placed, not routed).
    for (const name of [
      'auth.login',
      'tokens.create',
      'sessions.list',
      'sessions.create',
      'templates.list',
    ]) {
      expect(routed.has(name), name).toBe(false);
    }
  });

  it('an exec id carries its node in 4 bytes and keeps the usual shape and 96 random bits', () => {
    const id = newTaggedId('exe_', nodeTag('node-a'));
    expect(id).toMatch(/^exe_[A-Za-z0-9_-]{22}$/);
    expect(execNodeTag(id)).toBe(nodeTag('node-a').toString('hex'));
    expect(execNodeTag(id)).not.toBe(nodeTag('node-b').toString('hex'));
    expect(newTaggedId('exe_', nodeTag('node-a'))).not.toBe(id);
    expect(execNodeTag('exe_short')).toBeNull();
    expect(newTaggedId('exe_', null)).toMatch(/^exe_[A-Za-z0-9_-]{22}$/);
  });
});

describe('Swarm availability', () => {
  it("a manager's nodes set each node's availability; a worker's Docker ends the sync", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'studio-swarm-'));
    const socketPath = join(dir, 'docker.sock');
    let manager = true;
    const docker = createServer((req, res) => {
      if (req.url !== '/nodes') return void res.writeHead(404).end();
      if (!manager) return void res.writeHead(503).end('{"message":"This node is not a swarm manager."}');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify([
          { ID: 'sw1', Spec: { Availability: 'active' } },
          { ID: 'sw2', Spec: { Availability: 'drain' } },
          { ID: 'sw3', Spec: { Availability: 'bogus' } },
        ]),
      );
    });
    await new Promise<void>((resolve) => docker.listen(socketPath, resolve));
    const store = await Store.open(await openDb({}));
    try {
      const capacity = {
        backends: ['docker'],
        templates: [],
        memoryTotalBytes: 2 ** 33,
        memoryFreeBytes: 2 ** 32,
        cpus: 2,
        load1: 0,
        maxSessions: null,
      };
      for (const [id, swarmNodeId] of [
        ['n1', 'sw1'],
        ['n2', 'sw2'],
        ['n3', 'sw3'],
      ] as const) {
        await store.reportNode({ id, url: `http://${id}:4100`, host: id, swarmNodeId, capacity });
      }
      const sync = new SwarmAvailability({ store, logger: createLogger({ level: 'silent' }), socketPath });
      expect(await sync.sync()).toBe('manager');
      const byId = Object.fromEntries((await store.listNodes()).map((n) => [n.id, n.availability]));
      expect(byId).toEqual({ n1: 'active', n2: 'drain', n3: 'active' });
      manager = false;
      expect(await sync.sync()).toBe('worker');
      const gone = new SwarmAvailability({
        store,
        logger: createLogger({ level: 'silent' }),
        socketPath: join(dir, 'none.sock'),
      });
      expect(await gone.sync()).toBe('unreachable');
    } finally {
      await store.close();
      await new Promise<void>((resolve) => docker.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
