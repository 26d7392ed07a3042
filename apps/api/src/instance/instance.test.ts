import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb, Store } from '@studio/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireLock, dataDirInstanceId, leaseInstance, legacyInstanceId } from './instance.ts';

const dir = () => mkdtempSync(join(tmpdir(), 'studio-instance-'));

describe('acquireLock', () => {
  it('holds until released; a second holder is refused with who holds it and the fix', () => {
    const path = join(dir(), 'x.lock');
    const release = acquireLock(path, 'thing', 'use another');
    expect(() => acquireLock(path, 'thing', 'use another')).toThrow(
      expect.objectContaining({
        code: 'INVALID_STATE',
        message: expect.stringMatching(/^thing is in use by process \d+ on .+: use another$/),
      }),
    );
    release();
    acquireLock(path, 'thing', 'use another')();
  });

  it('takes over a lock left by a process of this host that no longer runs (kill -9)', () => {
    const path = join(dir(), 'x.lock');
    // pid 2^22 + 1 is above the kernel's pid_max limit: never a live process
    writeFileSync(path, JSON.stringify({ pid: 4_194_305, host: hostname(), since: 'then' }));
    const release = acquireLock(path, 'thing', 'fix');
    expect(JSON.parse(readFileSync(path, 'utf8')).pid).toBe(process.pid);
    release();
  });

  it('does not take over a lock of another host (a shared folder): that process may be alive', () => {
    const path = join(dir(), 'x.lock');
    writeFileSync(path, JSON.stringify({ pid: 4_194_305, host: `${hostname()}-other`, since: 'then' }));
    expect(() => acquireLock(path, 'thing', 'fix')).toThrow(/in use by process 4194305 on/);
  });
});

describe('dataDirInstanceId', () => {
  it('makes a random id once and keeps it', async () => {
    const d = dir();
    const id = await dataDirInstanceId(d, async () => false);
    expect(id).toMatch(/^api-[0-9a-f]{16}$/);
    expect(await dataDirInstanceId(d, async () => false)).toBe(id);
  });

  it('keeps the host-name id of an earlier release when the store still has sessions under it', async () => {
    const d = dir();
    const seen: string[] = [];
    const id = await dataDirInstanceId(d, async (legacy) => {
      seen.push(legacy);
      return true;
    });
    expect(id).toBe(legacyInstanceId());
    expect(seen).toEqual([legacyInstanceId()]);
    expect(readFileSync(join(d, 'instance-id'), 'utf8')).toBe(`${id}\n`);
  });

  it('refuses a hand-edited id that could not be a label', async () => {
    const d = dir();
    writeFileSync(join(d, 'instance-id'), '../../etc\n');
    await expect(dataDirInstanceId(d, async () => false)).rejects.toMatchObject({ code: 'INPUT_INVALID' });
  });
});

// Hosts sharing one PostgreSQL: the host lock cannot see another host, the store's lease can.
describe('leaseInstance', () => {
  let store: Store;
  beforeAll(async () => {
    store = await Store.open(await openDb({}));
  });
  afterAll(() => store.close());
  const noLoss = () => {
    throw new Error('lost');
  };

  it('refuses a second holder of the same id while the first is alive, naming it and the fix', async () => {
    const release = await leaseInstance(store, {
      instanceId: 'inst-a',
      dataDir: '/data/one',
      onLost: noLoss,
    });
    await expect(
      leaseInstance(store, { instanceId: 'inst-a', dataDir: '/data/two', onLost: noLoss }),
    ).rejects.toMatchObject({
      code: 'INVALID_STATE',
      message: expect.stringContaining('(data dir /data/one,'),
    });
    await release();
    const again = await leaseInstance(store, { instanceId: 'inst-a', dataDir: '/data/two', onLost: noLoss });
    await again();
  });

  it('takes over at once from a holder of this host whose process is gone; refuses a live one of another host', async () => {
    await store.claimInstance({
      id: 'inst-b',
      holder: 'crashed',
      host: hostname(),
      pid: 4_194_305,
      dataDir: '/d',
      leaseMs: 60_000,
    });
    const release = await leaseInstance(store, {
      instanceId: 'inst-b',
      dataDir: '/data/one',
      onLost: noLoss,
    });
    await release();

    await store.claimInstance({
      id: 'inst-c',
      holder: 'remote',
      host: `${hostname()}-elsewhere`,
      pid: 7,
      dataDir: '/srv/studio',
      leaseMs: 60_000,
    });
    await expect(
      leaseInstance(store, { instanceId: 'inst-c', dataDir: '/data/one', onLost: noLoss }),
    ).rejects.toMatchObject({
      code: 'INVALID_STATE',
      message: expect.stringMatching(
        /^instance id inst-c is in use by process 7 on \S+-elsewhere \(data dir \/srv\/studio, .*STUDIO_INSTANCE_ID$/,
      ),
    });
  });

  it('tells its owner when another process took the id over', async () => {
    let lost = '';
    const release = await leaseInstance(store, {
      instanceId: 'inst-d',
      dataDir: '/data/one',
      leaseMs: 3000,
      onLost: (m) => {
        lost = m;
      },
    });
    await store.claimInstance({
      id: 'inst-d',
      holder: 'thief',
      host: 'other',
      pid: 1,
      dataDir: '/x',
      leaseMs: 3000,
      replace: { host: hostname(), pid: process.pid },
    });
    const end = Date.now() + 10_000;
    while (!lost && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    expect(lost).toContain('instance id inst-d was taken over');
    await release();
  });
});
