import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADMIN_PASSWORD, startTestApi, type TestApi } from '@studio/api/testing';
import { openDb } from '@studio/db';
import { createTestDatabase, type TestDatabase } from '@studio/db/testing';
import { DockerBackend } from '@studio/isolation-docker';
import { createRateLimiter } from '@studio/policy';
import { runClientProcess } from './client-process.ts';
import { SECCOMP_PROFILE } from './paths.ts';
import { onCleanup, type Row, ratioOf, skippedRow, type TargetId } from './report.ts';
import { summarize } from './stats.ts';

const IMAGE = process.env.STUDIO_SANDBOX_IMAGE ?? 'studio-sandbox:latest';
const root = fileURLToPath(new URL('..', import.meta.url));
const labels = { 'studio.test': 'bench-cluster' };

/** The section's rows and their targets (run.ts names them when the section is skipped or fails). */
export const clusterRows: [string, TargetId | undefined][] = [
  ['cluster: exec round trip (`true`) through an API replica to a node', 'clusterExec'],
  ['cluster: create → first exec output through an API replica, placed on a node', 'clusterCreate'],
];

type Samples = { ours: number[]; raw: number[] };

/** Runs bench/cluster-client.ts in its own process and returns its samples. */
function runClient(job: object): Promise<{ exec: Samples; create: Samples }> {
  return runClientProcess('cluster-client.ts', job);
}

/**
 * Issue 23: the cluster path against the single box on the same machine. A node service (STUDIO_ROLE=node, its
 * own Docker backend) and an API replica (STUDIO_ROLE=api) on one PostgreSQL database, as in
 * apps/api/src/cluster/cluster.docker.test.ts; the baseline is a single box (STUDIO_ROLE=all) with its own Docker
 * backend on another database of the same PostgreSQL server, so the ratio is the cost of the replica → signed
 * forward → node path, not of the store. Measured by a client in another process: exec round trip on a live
 * session, and create → first output.
 */
export async function benchCluster(options: {
  quick: boolean;
  databaseUrl: string | undefined;
}): Promise<Row[]> {
  const { databaseUrl } = options;
  if (!databaseUrl)
    return clusterRows.map(([name, target]) =>
      skippedRow(
        name,
        target,
        'STUDIO_TEST_DATABASE_URL is not set (the cluster needs PostgreSQL): export STUDIO_TEST_DATABASE_URL=$(bash infra/setup-postgres.sh)',
      ),
    );
  const execs = options.quick ? 40 : 200;
  const creates = options.quick ? 4 : 12;
  const dataDir = `${root}.cache/bench-data/cluster`;
  const backendOf = (instanceId: string) => {
    const dir = join(dataDir, instanceId);
    mkdirSync(dir, { recursive: true });
    return new DockerBackend({
      dataDir: join(dir, 'docker'),
      instanceId,
      seccompProfile: SECCOMP_PROFILE,
    });
  };
  const nodeBackend = backendOf('bench-node');
  const singleBackend = backendOf('bench-single');
  const databases: TestDatabase[] = [];
  const servers: TestApi[] = [];
  const removeSandboxes = async () => {
    for (const b of [nodeBackend, singleBackend])
      for (const s of await b.list({ labels }).catch(() => [])) await b.destroy(s.id).catch(() => undefined);
  };
  // One undo for everything, in order: the servers (replica first), their sandboxes, then the databases. Run
  // once: on Ctrl-C the client dies with us and this section ends while run.ts's cleanup is still at it, so the
  // section waits for that same run rather than let run.ts exit under it.
  let tornDown: Promise<void> | undefined;
  const tearDown = () =>
    (tornDown ??= (async () => {
      await removeSandboxes();
      for (const s of servers.reverse()) await s.close().catch(() => undefined);
      await removeSandboxes();
      for (const d of databases) await d.dispose().catch(() => undefined);
    })());
  const teardown = onCleanup(tearDown);
  try {
    const clusterDb = await createTestDatabase('postgres', { databaseUrl, ci: false });
    databases.push(clusterDb);
    const singleDb = await createTestDatabase('postgres', { databaseUrl, ci: false });
    databases.push(singleDb);
    const clusterUrl = clusterDb.options.databaseUrl as string;
    const singleUrl = singleDb.options.databaseUrl as string;
    const createLimiter = () => createRateLimiter({ limit: 100_000, windowMs: 60_000 });
    const shared = {
      STUDIO_CLUSTER_SECRET: randomBytes(48).toString('base64'),
      STUDIO_SECRETS_KEY: randomBytes(32).toString('base64'),
    };
    const start = async (
      db: string,
      env: Record<string, string>,
      backends?: DockerBackend[],
    ): Promise<TestApi> => {
      mkdirSync(env.STUDIO_DATA_DIR as string, { recursive: true });
      const api = await startTestApi({
        ...(backends ? { backends, labels } : {}),
        db: await openDb({ databaseUrl: db }),
        createLimiter: createLimiter(),
        env: { DATABASE_URL: db, ...shared, ...env },
      });
      servers.push(api);
      return api;
    };
    const single = await start(
      singleUrl,
      { STUDIO_INSTANCE_ID: 'bench-single', STUDIO_DATA_DIR: join(dataDir, 'bench-single') },
      [singleBackend],
    );
    await start(
      clusterUrl,
      { STUDIO_ROLE: 'node', STUDIO_INSTANCE_ID: 'bench-node', STUDIO_DATA_DIR: join(dataDir, 'bench-node') },
      [nodeBackend],
    );
    const replica = await start(clusterUrl, {
      STUDIO_ROLE: 'api',
      STUDIO_INSTANCE_ID: 'bench-replica',
      STUDIO_DATA_DIR: join(dataDir, 'bench-replica'),
    });
    const r = await runClient({
      cluster: { url: replica.url, token: await replica.login('admin', ADMIN_PASSWORD) },
      single: { url: single.url, token: await single.login('admin', ADMIN_PASSWORD) },
      image: IMAGE,
      execs,
      creates,
    });
    const eo = summarize(r.exec.ours);
    const eb = summarize(r.exec.raw);
    const co = summarize(r.create.ours);
    const cb = summarize(r.create.raw);
    const baselineName = 'the same through a single box (STUDIO_ROLE=all, same PostgreSQL server)';
    return [
      {
        name: clusterRows[0]?.[0] as string,
        unit: 'ms',
        ours: eo,
        baseline: eb,
        baselineName,
        ratio: ratioOf(eo, eb),
        target: 'clusterExec',
      },
      {
        name: clusterRows[1]?.[0] as string,
        unit: 'ms',
        ours: co,
        baseline: cb,
        baselineName,
        ratio: ratioOf(co, cb),
        target: 'clusterCreate',
      },
    ];
  } finally {
    await teardown();
    await tearDown();
  }
}
