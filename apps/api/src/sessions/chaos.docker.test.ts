import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runtimePaths } from '@studio/isolation/testing';
import { DockerBackend } from '@studio/isolation-docker';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../scripts/build.ts';
import { skipUnlessAvailable } from '../testing/api-fixture.ts';
import { imagesUnder, loopsUnder, mountsUnder, poolImagesUnder } from '../testing/chaos.ts';
import { expectCrashSafe, runChaos } from '../testing/chaos-run.ts';

// Issue 17, "crash-safe": the real API (main.ts as a child process, PGlite in a data dir of its own, the Docker
// backend with loop-mounted workspaces and a warm pool of one) is killed with SIGKILL at random moments of
// creates, execs (run and streamed), file writes, destroys and stop/start, 20 times, and started again each time.
// After the grace period: no session in a transitional state; no container, workspace image, mount or loop
// device of this instance without a live session (the pool's one member aside); no confirmed write or exec lost;
// no exec ran twice. Everything is counted for this instance only (its label, its data dir): other tests may
// run on the same Docker at the same time.

const INSTANCE = `api-test-chaos-${process.pid}`;
const IMAGE = 'studio-sandbox:latest';
const dataDir = mkdtempSync(join(tmpdir(), 'studio-chaos-'));
const workspaces = join(dataDir, 'data', 'docker', 'workspaces');
const docker = new Docker();
const backend = new DockerBackend({
  dataDir: join(dataDir, 'data', 'docker'),
  instanceId: INSTANCE,
  seccompProfile: runtimePaths().seccompProfile,
});
const skip =
  process.getuid?.() !== 0 ? 'needs root to loop-mount workspaces' : await skipUnlessAvailable(backend);
const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));

async function census() {
  const containers = await docker.listContainers({
    all: true,
    filters: { label: [`studio.instance=${INSTANCE}`] },
  });
  const [images, poolImages, mounts, loops] = await Promise.all([
    imagesUnder(workspaces),
    poolImagesUnder(workspaces),
    mountsUnder(dataDir),
    loopsUnder(dataDir),
  ]);
  return {
    sandboxes: new Map(
      containers.map(
        (c) =>
          [
            c.Labels['studio.sandbox'] ?? c.Id,
            { session: c.Labels['studio.session'], runtimeId: c.Id },
          ] as const,
      ),
    ),
    images,
    poolImages,
    mounts,
    loops,
  };
}

describe.skipIf(skip !== undefined)(
  `chaos: kill -9 of the API on Docker${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let bundle = '';
    beforeAll(async () => {
      // Beside dist/main.mjs (its packages resolve from the repository's node_modules), one per run.
      bundle = await buildApi(fileURLToPath(new URL(`../../dist/chaos-${process.pid}.mjs`, import.meta.url)));
    }, 60_000);
    afterAll(async () => {
      // Whatever a failed run left: this instance's containers, then its mounts (destroy unmounts its workspace).
      for (const s of await backend.list({ labels: { 'studio.instance': INSTANCE } }))
        await backend.destroy(s.id).catch(() => undefined);
      for (const id of await imagesUnder(workspaces)) await backend.destroy(id).catch(() => undefined);
      await backend.close();
      rmSync(dataDir, { recursive: true, force: true });
      for (const f of [bundle, `${bundle}.map`]) if (f) rmSync(f, { force: true });
    }, 120_000);

    it('leaves nothing behind and loses nothing confirmed after 20 kills', async () => {
      const result = await runChaos({
        api: { bundle, dataDir: join(dataDir, 'data'), instanceId: INSTANCE, backends: 'docker' },
        image: IMAGE,
        poolSize: 1,
        kills: 20,
        // A hard bound on the kill rounds after the first start: about 2 minutes on a quiet 2-core machine, where
        // a start takes 2-3 s; starts took 10-30 s (6 minutes in all) with other test runs sharing the machine.
        budgetMs: 450_000,
        seed,
        census,
        log: (line) => console.log(line),
      });
      expectCrashSafe(result, 20);
    }, 600_000);
  },
);
