import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LoopWorkspaces } from './loop-workspaces.ts';

// The quota itself (mkfs + loop mount, root only) is proven by the backends' conformance cases
// resources.disk-fill and resources.inode-fill; here, what needs no root.
const dataDir = mkdtempSync(join(tmpdir(), 'studio-workspaces-test-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('LoopWorkspaces', () => {
  const workspaces = new LoopWorkspaces(dataDir);

  it('keeps every image and mount point under <dataDir>/workspaces, named after the sandbox', () => {
    expect(workspaces.imagePath('sbx-0123456789abcdef')).toBe(
      join(dataDir, 'workspaces', 'sbx-0123456789abcdef.img'),
    );
    expect(workspaces.mountPath('sbx-0123456789abcdef')).toBe(
      join(dataDir, 'workspaces', 'sbx-0123456789abcdef'),
    );
  });

  it('reports a workspace that was never made as absent and unmounted; destroying it is a no-op', async () => {
    expect(await workspaces.exists('sbx-0000000000000000')).toBe(false);
    expect(await workspaces.usage('sbx-0000000000000000')).toBeNull();
    await workspaces.destroy('sbx-0000000000000000');
    expect(await workspaces.exists('sbx-0000000000000000')).toBe(false);
  });
});

describe('LoopWorkspaces pool', () => {
  const shape = { sizeBytes: 8 * 1024 * 1024, inodes: 1024 };
  const poolDir = join(dataDir, 'pool-test', 'workspaces', '.pool');
  const list = () => readdirSync(poolDir).sort();

  it('keeps `size` images ready, adopts them after a restart and removes what a dead process half made', async () => {
    const first = new LoopWorkspaces(join(dataDir, 'pool-test'), { pool: { size: 2, ...shape } });
    await first.fillPool();
    expect(first.pooled).toBe(2);
    expect(list().filter((n) => n.startsWith('ready-'))).toHaveLength(2);
    await first.close();
    writeFileSync(join(poolDir, 'making-deadbeef.img'), 'half made');
    const second = new LoopWorkspaces(join(dataDir, 'pool-test'), { pool: { size: 2, ...shape } });
    await second.fillPool();
    expect(second.pooled).toBe(2);
    expect(list()).not.toContain('making-deadbeef.img');
    expect(list()).toHaveLength(2);
    await second.close();
  });

  it.skipIf(process.getuid?.() !== 0)(
    'a create of the pool’s shape takes a ready image (and the pool refills); another shape makes its own (needs root to mount)',
    async () => {
      const workspaces = new LoopWorkspaces(join(dataDir, 'pool-test'), { pool: { size: 2, ...shape } });
      await workspaces.fillPool();
      const before = list();
      await workspaces.create('sbx-pooled00000000', shape.sizeBytes, shape.inodes);
      expect(list().filter((n) => before.includes(n))).toHaveLength(1);
      await workspaces.fillPool();
      expect(workspaces.pooled).toBe(2);
      const kept = list();
      await workspaces.create('sbx-otherpool00000', shape.sizeBytes * 2, shape.inodes);
      expect(list()).toEqual(kept);
      expect((await workspaces.usage('sbx-pooled00000000'))?.limit).toBeGreaterThan(0);
      await workspaces.destroy('sbx-pooled00000000');
      await workspaces.destroy('sbx-otherpool00000');
      await workspaces.close();
    },
  );
});

describe('LoopWorkspaces copies (snapshots, issue 20)', () => {
  it.skipIf(process.getuid?.() !== 0)(
    'copyOut copies what the workspace holds (sparsely), createFrom mounts it preallocated; thawAll thaws a frozen one (needs root)',
    async () => {
      const { execFileSync } = await import('node:child_process');
      const { readFileSync, statSync } = await import('node:fs');
      const workspaces = new LoopWorkspaces(join(dataDir, 'copy-test'));
      const size = 64 * 1024 * 1024;
      const source = await workspaces.create('sbx-c0c0c0c0c0c0c0c0', size, 4096);
      try {
        writeFileSync(join(source, 'kept.txt'), 'kept');
        const copy = join(dataDir, 'copy-test', 'copy.img');
        const bytes = await workspaces.copyOut('sbx-c0c0c0c0c0c0c0c0', copy);
        // Sparse: what the filesystem uses (its metadata and the file), far below the 64 MiB quota.
        expect(bytes).toBeLessThan(size / 4);
        // The source was thawed after the copy: it takes writes again.
        writeFileSync(join(source, 'after.txt'), 'after');
        const restored = await workspaces.createFrom('sbx-c1c1c1c1c1c1c1c1', copy);
        expect(readFileSync(join(restored, 'kept.txt'), 'utf8')).toBe('kept');
        expect(readdirSync(restored)).not.toContain('after.txt');
        // Preallocated again, like every workspace: no holes to ask the host for on write.
        const image = statSync(workspaces.imagePath('sbx-c1c1c1c1c1c1c1c1'));
        expect(image.blocks * 512).toBeGreaterThanOrEqual(size);
        // A copy a crash cut short leaves its workspace frozen: thawAll makes it writable again.
        execFileSync('fsfreeze', ['--freeze', source]);
        await workspaces.thawAll();
        // Asynchronous, with a deadline: a write to a frozen filesystem blocks until it is thawed.
        const { writeFile } = await import('node:fs/promises');
        const wrote = await Promise.race([
          writeFile(join(source, 'thawed.txt'), 'thawed').then(() => true),
          new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5_000)),
        ]);
        expect(wrote, 'the write went through: the workspace was thawed').toBe(true);
      } finally {
        try {
          execFileSync('fsfreeze', ['--unfreeze', source], { stdio: 'ignore' });
        } catch {
          // not frozen (the case passed)
        }
        await workspaces.destroy('sbx-c0c0c0c0c0c0c0c0');
        await workspaces.destroy('sbx-c1c1c1c1c1c1c1c1');
      }
    },
  );
});
