import { defaultPolicy } from '@studio/policy';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../core/logger.ts';
import { FakeBackend } from '../testing/fake-backend.ts';
import { defaultResources } from './session-manager.ts';
import { WarmPool } from './warm-pool.ts';

const IMAGE = 'studio-sandbox:latest';
const resources = defaultResources(defaultPolicy);
const until = async (ok: () => boolean) => {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(ok()).toBe(true);
};

function make(backend: FakeBackend, sizes: Record<string, number> = { docker: 2 }) {
  return new WarmPool({
    backends: [backend],
    sizes,
    images: [IMAGE],
    resources,
    instanceId: 'test',
    logger: createLogger({ level: 'silent' }),
  });
}

describe('WarmPool', () => {
  it('fills to size, claims only default resources, resets the workspace, refills, destroys the rest on close', async () => {
    const backend = new FakeBackend('docker', 'test');
    const pool = make(backend);
    await pool.start(new Set());
    await until(() => pool.status()[`docker/${IMAGE}`]?.ready === 2);
    expect([...backend.sandboxes.values()].every((s) => s.spec.labels?.['studio.session'] === 'pool')).toBe(
      true,
    );
    expect(await pool.claim('docker', IMAGE, { ...resources, pids: resources.pids - 1 })).toBeUndefined();
    expect(await pool.claim('gvisor', IMAGE, resources)).toBeUndefined();
    for (const s of backend.sandboxes.values())
      await s.writeFile('left/over.txt', 'x', { createParents: true });
    const claimed = await pool.claim('docker', IMAGE, resources);
    expect(claimed).toBeDefined();
    expect(await claimed?.list('')).toEqual([]);
    await until(() => backend.sandboxes.size === 3 && pool.status()[`docker/${IMAGE}`]?.ready === 2);
    await pool.close();
    expect([...backend.sandboxes.keys()]).toEqual([claimed?.id]);
  });

  it('adopts unclaimed pool sandboxes of a previous run and leaves claimed ones alone', async () => {
    const backend = new FakeBackend('docker', 'test');
    const spec = { image: IMAGE, resources, network: 'none' as const, labels: { 'studio.session': 'pool' } };
    const free = await backend.create(spec);
    const taken = await backend.create(spec);
    const pool = make(backend, { docker: 1 });
    await pool.start(new Set([taken.id]));
    expect(pool.status()[`docker/${IMAGE}`]).toEqual({ size: 1, ready: 1, filling: 0 });
    expect((await pool.claim('docker', IMAGE, resources))?.id).toBe(free.id);
    await until(() => pool.status()[`docker/${IMAGE}`]?.ready === 1);
    await pool.close();
    expect(backend.sandboxes.has(taken.id)).toBe(true);
  });

  it('has no pool for a size of 0', () => {
    expect(make(new FakeBackend(), { docker: 0 }).enabled).toBe(false);
  });
});
