import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IN_CI, INFRA, run, tempDir } from './helpers.ts';

// A fresh clone on a machine whose Docker already has this recipe's image: `npm start` must not run mmdebstrap
// again (about 3 minutes) but take the rootfs from the image (seconds), and a second run does nothing.

const build = (cache: string, ...args: string[]) =>
  run('bash', [join(INFRA, 'image/build.sh'), ...args], { STUDIO_CACHE: cache });

const hash = build(tempDir(), '--print-hash').stdout.trim();
const present = run('docker', ['image', 'inspect', `studio-sandbox:${hash}`]).status === 0;
const skip = present
  ? undefined
  : `Docker has no studio-sandbox:${hash} (bash infra/setup-runtimes.sh builds it)`;
if (skip && IN_CI) throw new Error(`required in CI: ${skip}`);

describe.skipIf(skip !== undefined)(
  `image build in a fresh cache${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    const cache = tempDir('studio-image-cache-');
    afterAll(() => rmSync(cache, { recursive: true, force: true }));

    it('takes the rootfs from the Docker image instead of rebuilding, then finds everything up to date', () => {
      const first = build(cache);
      expect(first.status, first.stderr).toBe(0);
      expect(first.stderr).toContain('exporting the rootfs from Docker');
      expect(first.stderr).not.toContain('mmdebstrap');
      const rootfs = join(cache, 'image', hash, 'rootfs');
      for (const f of ['usr/bin/node', 'usr/bin/python3', 'usr/bin/tini'])
        expect(existsSync(join(rootfs, f))).toBe(true);
      // What Docker adds to a container is not part of the recipe.
      expect(existsSync(join(rootfs, '.dockerenv'))).toBe(false);

      const second = build(cache);
      expect(second.status).toBe(0);
      expect(second.stderr).toContain('image up to date');
    });
  },
);
