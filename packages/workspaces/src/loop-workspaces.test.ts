import { mkdtempSync, rmSync } from 'node:fs';
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
