import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb, Store } from '@studio/db';
import type { RootfsBuildOptions, RootfsBuildResult } from '@studio/isolation-gvisor';
import { parsePolicy, templateCreateInput } from '@studio/policy';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../core/logger.ts';
import type { EgressProxy } from '../egress/egress-proxy.ts';
import { type TemplateBuilder, TemplateManager, templateImage, templateRootfs } from './template-manager.ts';

// The manager's bookkeeping with a stand-in builder (fast, no runtime): queueing, caching by content, failures,
// what is kept and collected. The real builds, on both backends, are in templates.{docker,gvisor}.test.ts.

/** A builder that writes a tiny root filesystem named by its steps, and can be held mid-build. */
class StandInBuilder implements TemplateBuilder {
  builds = 0;
  running = 0;
  most = 0;
  hold: Promise<void> | undefined;
  async build(o: RootfsBuildOptions): Promise<RootfsBuildResult> {
    this.builds++;
    this.running++;
    this.most = Math.max(this.most, this.running);
    try {
      await this.hold;
      const script = o.steps.map((s) => s.description).join('\n');
      if (script.includes('fail')) throw new Error('step 1 (run 1: fail) failed with exit code 1');
      mkdirSync(join(o.output, 'rootfs', 'usr'), { recursive: true });
      writeFileSync(join(o.output, 'rootfs.tar'), script);
      writeFileSync(join(o.output, '.complete'), '');
      const digest = createHash('sha256').update(script).digest('hex');
      return {
        output: o.output,
        rootfs: join(o.output, 'rootfs'),
        tar: join(o.output, 'rootfs.tar'),
        digest,
        bytes: 1234,
        durationMs: 1,
      } as RootfsBuildResult;
    } finally {
      this.running--;
    }
  }
  async cleanup(): Promise<string[]> {
    return [];
  }
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function setup(policy: unknown = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'studio-templates-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'operator', 'usr'), { recursive: true });
  const store = await Store.open(await openDb({}));
  const user = await store.createUser({
    id: 'usr_alice',
    username: 'alice',
    passwordHash: 'x',
    role: 'user',
  });
  const builder = new StandInBuilder();
  const manager = new TemplateManager({
    store,
    policy: parsePolicy(policy),
    dir: join(dir, 'templates'),
    builder,
    operatorImages: ['studio-sandbox:latest'],
    operatorRootfs: () => join(dir, 'operator'),
    egress: { handle() {} } as unknown as EgressProxy,
    trustPem: [],
    logger: createLogger({ level: 'silent' }),
  });
  const actor = { userId: user.id, role: 'user' as const };
  const create = (name: string, spec: unknown) =>
    manager.create(actor, templateCreateInput.parse({ name, spec }));
  const settled = async (name: string) => {
    for (;;) {
      const t = await manager.find(actor.userId, name);
      if (t.state !== 'building') return t;
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  return { dir, store, builder, manager, actor, create, settled };
}

describe('TemplateManager', () => {
  it('runs at most templates.concurrentBuilds builds at once; the others wait their turn and say so', async () => {
    const { builder, manager, create, settled } = await setup({ templates: { concurrentBuilds: 1 } });
    let release = () => {};
    builder.hold = new Promise<void>((r) => {
      release = r;
    });
    const a = await create('a', { run: ['echo a'] });
    await create('b', { run: ['echo b'] });
    await expect.poll(() => manager.follow((a as { id: string }).id)?.text() ?? '').toContain('from default');
    release();
    expect((await settled('a')).state).toBe('ready');
    const b = await settled('b');
    expect(b.state).toBe('ready');
    expect(b.log).toContain('waiting for another build to finish');
    expect(builder.most).toBe(1);
  });

  it('reuses the build of an unchanged recipe, and builds a changed one', async () => {
    const { builder, manager, actor, create, settled } = await setup();
    await create('a', { run: ['echo a'], env: { X: '1' } });
    const first = await settled('a');
    expect(first.state).toBe('ready');
    await manager.build(actor, 'a');
    const again = await settled('a');
    expect(again.digest).toBe(first.digest);
    expect(again.log).toContain('unchanged since its last build');
    // The same steps under another name: the same image, built once.
    await create('b', { run: ['echo a'] });
    expect((await settled('b')).digest).toBe(first.digest);
    expect(builder.builds).toBe(1);
    await create('c', { run: ['echo c'] });
    expect((await settled('c')).digest).not.toBe(first.digest);
    expect(builder.builds).toBe(2);
    // A new spec for an existing template: the same id, a new build, the new settings.
    await manager.build(
      actor,
      'a',
      templateCreateInput.shape.spec.parse({ run: ['echo a2'], env: { X: '2' } }),
    );
    const changed = await settled('a');
    expect(changed).toMatchObject({ id: first.id, state: 'ready' });
    expect(changed.digest).not.toBe(first.digest);
    expect((await manager.forSession(actor.userId, { template: 'a' })).runtime?.env).toEqual({ X: '2' });
  });

  it('keeps a failed build out (state failed, the reason), and a template its last good build', async () => {
    const { dir, manager, actor, create, settled, store } = await setup();
    await create('a', { run: ['fail'] });
    const failed = await settled('a');
    expect(failed).toMatchObject({ state: 'failed', digest: null });
    expect(failed.failure).toMatch(/step 1 \(run 1: fail\) failed with exit code 1/);
    await expect(manager.forSession(actor.userId, { template: 'a' })).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_READY',
      message: /its build failed \(step 1/,
    });
    expect(readdirSync(join(dir, 'templates', 'building'))).toEqual([]);
    // A good build, then a failing one: sessions keep the good one.
    await create('b', { run: ['echo b'] });
    const good = await settled('b');
    await store.updateTemplate(good.id, { spec: { run: ['fail'] } });
    await manager.build(actor, 'b');
    const after = await settled('b');
    expect(after).toMatchObject({ state: 'failed', digest: good.digest });
    expect((await manager.forSession(actor.userId, { template: 'b' })).image).toBe(
      templateImage(good.digest as string),
    );
  });

  it('resolves what a session asks for, and collects images nothing names', async () => {
    const { dir, manager, actor, create, settled } = await setup();
    expect(await manager.forSession(actor.userId, {})).toEqual({
      image: 'studio-sandbox:latest',
      templateId: null,
      runtime: undefined,
    });
    expect(await manager.forSession(actor.userId, { template: 'default' })).toMatchObject({
      image: 'studio-sandbox:latest',
    });
    await expect(
      manager.forSession(actor.userId, { image: 'studio-template:0123456789abcdef0123' }),
    ).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
    });
    await expect(manager.forSession(actor.userId, { template: 'nope' })).rejects.toMatchObject({
      code: 'TEMPLATE_NOT_FOUND',
    });
    await create('a', { run: ['echo a'], env: { A: '1' }, workdir: 'w' });
    const t = await settled('a');
    const chosen = await manager.forSession(actor.userId, { template: t.id });
    expect(chosen).toMatchObject({ templateId: t.id, runtime: { env: { A: '1' }, workdir: 'w' } });
    const rootfs = templateRootfs(join(dir, 'templates'), chosen.image);
    expect(rootfs && existsSync(rootfs)).toBe(true);
    await manager.delete(actor, 'a');
    expect(templateRootfs(join(dir, 'templates'), chosen.image)).toBeUndefined();
    await expect(manager.build(actor, 'default')).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });
});
