import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runIsolationConformance, runtimePaths, SMALL_LIMITS } from '@studio/isolation/testing';
import { DockerBackend } from './docker-backend.ts';

const dataDir = fileURLToPath(new URL('../../../.cache/test-data/docker', import.meta.url));
mkdirSync(dataDir, { recursive: true });
const { seccompProfile } = runtimePaths();

runIsolationConformance({
  // With a workspace pool of the destructive cases' shape, so their workspaces come from it, as in the API.
  createBackend: () =>
    new DockerBackend({
      dataDir,
      instanceId: 'conformance',
      seccompProfile,
      workspacePool: { size: 2, sizeBytes: SMALL_LIMITS.diskBytes, inodes: SMALL_LIMITS.inodes },
    }),
  image: process.env.STUDIO_SANDBOX_IMAGE ?? 'studio-sandbox:latest',
  // In CI a missing Docker daemon fails the run; on a laptop the cases skip with the reason.
  requireRuntime: process.env.CI === 'true',
  hostPath: dataDir,
});
