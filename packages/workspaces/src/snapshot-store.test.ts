import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SnapshotStore } from './snapshot-store.ts';

const info = {
  sandboxId: 'sbx-test',
  image: 'studio-sandbox:test',
  memory: false,
  diskBytes: 1 << 20,
  inodes: 1000,
};

describe('a snapshot directory shared by two nodes', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });
  const stores = async () => {
    const shared = await mkdtemp(join(tmpdir(), 'studio-snapshots-'));
    dirs.push(shared);
    return [
      new SnapshotStore('/nonexistent-a', { root: shared, owner: 'node-a' }),
      new SnapshotStore('/nonexistent-b', { root: shared, owner: 'node-b' }),
      shared,
    ] as const;
  };

  it('shows each node the other’s snapshots, and each cleans only what it left', async () => {
    const [a, b, shared] = await stores();
    const made = await a.begin('snp-00000000000000a1');
    await writeFile(made.workspaceImage, 'workspace');
    await made.commit(info);
    // node-b starts the snapshot it is making; node-a, restarting, cleans its own leftovers only.
    const making = await b.begin('snp-00000000000000b1');
    await writeFile(making.workspaceImage, 'half');
    const left = await a.begin('snp-00000000000000a2');
    expect(await a.clean()).toEqual([expect.stringMatching(/^\.making-node-a-snp-00000000000000a2-/)]);
    await making.commit(info);
    expect((await b.list()).map((s) => s.id)).toEqual(['snp-00000000000000a1', 'snp-00000000000000b1']);
    expect((await a.get('snp-00000000000000b1')).info.image).toBe(info.image);
    await left.abort();
    // A delete by either node removes it for both.
    await b.delete('snp-00000000000000a1');
    expect((await a.list()).map((s) => s.id)).toEqual(['snp-00000000000000b1']);
    expect((await readdir(shared)).sort()).toEqual(['snp-00000000000000b1']);
  });

  it('keeps snapshots under the data directory when no root is given', async () => {
    const data = await mkdtemp(join(tmpdir(), 'studio-data-'));
    dirs.push(data);
    const store = new SnapshotStore(data);
    const draft = await store.begin('snp-00000000000000c1');
    await draft.commit(info);
    expect(await readdir(join(data, 'snapshots'))).toEqual(['snp-00000000000000c1']);
  });
});
