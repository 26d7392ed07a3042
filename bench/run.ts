// `npm run bench`: every figure beside a raw baseline measured in the same run, interleaved.
// Flags: `--quick` for fewer samples;
// `--only=docker,api,realtime,gvisor,tasks,memory,egress,templates,pause,e2b,cluster`
// for some sections.
// `--out=DIR` writes elsewhere; `--with=FILE` adds the rows of an earlier run's latest.json for the sections this
// run left out (each such row says which run it came from: its baselines are from that same run).
// Writes bench/results/latest.json, latest.md and ratios.svg; progress goes to stderr.

import { mkdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { templateRootfs, templatesDir } from '@studio/api';
import type { IsolationBackend } from '@studio/isolation';
import { DockerBackend } from '@studio/isolation-docker';
import { GVisorBackend } from '@studio/isolation-gvisor';
import { defaultPolicy } from '@studio/policy';
import { benchApi, benchApiRealtime } from './api.bench.ts';
import { benchCluster, clusterRows } from './cluster.bench.ts';
import { benchE2b, e2bRows } from './e2b.bench.ts';
import { benchEgress, egressRows } from './egress.bench.ts';
import { benchMemory } from './memory.bench.ts';
import { SECCOMP_PROFILE, sandboxRootfs } from './paths.ts';
import { benchPause, pauseRows } from './pause.bench.ts';
import { rawDocker, rawGvisor, rawGvisorCheckpoints } from './raw.ts';
import {
  onCleanup,
  type Row,
  runCleanups,
  skippedRow,
  type TargetId,
  textTable,
  writeReports,
} from './report.ts';
import { benchRuntime } from './runtime.bench.ts';
import { benchTasks } from './tasks.bench.ts';
import { benchTemplates, templateRows } from './templates.bench.ts';

const quick = process.argv.includes('--quick');
const onlyArg = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const only = new Set(
  (onlyArg ?? 'docker,api,realtime,gvisor,tasks,memory,egress,templates,pause,e2b,cluster').split(','),
);
const root = fileURLToPath(new URL('..', import.meta.url));
const WORKSPACE_POOL = {
  size: 2,
  sizeBytes: defaultPolicy.sandbox.diskBytes,
  inodes: defaultPolicy.sandbox.inodes,
};
const image = process.env.STUDIO_SANDBOX_IMAGE ?? 'studio-sandbox:latest';
const dockerData = `${root}.cache/bench-data/docker`;
const gvisorData = `${root}.cache/bench-data/gvisor`;
const started = performance.now();
const loadAtStart = loadavg()[0] as number;
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);

// Ctrl-C reaches us twice (the terminal's process group and tsx relaying it): clean up once, then exit.
let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) return;
  interrupted = true;
  log('interrupted: cleaning up');
  void runCleanups().finally(() => process.exit(130));
});

/** A backend if it is available, else the reason it is not. */
async function open<B extends IsolationBackend>(make: () => B): Promise<B | string> {
  try {
    const b = make();
    const a = await b.available();
    if (a.ok) {
      onCleanup(() => b.close());
      return b;
    }
    await b.close().catch(() => undefined);
    return a.reason;
  } catch (error) {
    return (error as Error).message;
  }
}

const rows: Row[] = [];
/** Runs a section; on failure its rows say so instead of ending the run. */
async function section(name: string, targets: [string, TargetId | undefined][], fn: () => Promise<Row[]>) {
  log(`section ${name}`);
  try {
    rows.push(...(await fn()));
  } catch (error) {
    const reason = `failed: ${(error as Error).message.split('\n')[0]?.slice(0, 160)}`;
    log(`${name} ${reason}`);
    for (const [n, t] of targets) rows.push(skippedRow(n, t, reason));
  }
}

try {
  mkdirSync(dockerData, { recursive: true });
  mkdirSync(gvisorData, { recursive: true });
  const docker = await open(
    () =>
      new DockerBackend({
        dataDir: dockerData,
        instanceId: 'bench',
        seccompProfile: SECCOMP_PROFILE,
        // As the API runs it (STUDIO_WORKSPACE_POOL, default 2): images made ahead at the default shape.
        workspacePool: WORKSPACE_POOL,
      }),
  );
  let gvisorRootfs = '';
  const gvisor = await open(() => {
    gvisorRootfs = sandboxRootfs();
    return new GVisorBackend({
      dataDir: gvisorData,
      instanceId: 'bench',
      images: { [image]: gvisorRootfs },
      seccompProfile: SECCOMP_PROFILE,
      // As the API runs it, like the Docker backend above.
      workspacePool: WORKSPACE_POOL,
    });
  });
  const dockerRows: [string, TargetId | undefined][] = [
    ['docker: create → first exec output', 'createDocker'],
    ['docker: exec round trip', 'exec'],
    ['docker: memory per idle session', 'idleMemory'],
    ['docker: burst of concurrent creates', 'burst'],
  ];
  const ifDocker = async (
    name: string,
    targets: [string, TargetId | undefined][],
    fn: () => Promise<Row[]>,
  ) => {
    if (typeof docker === 'string')
      for (const [n, t] of targets) rows.push(skippedRow(n, t, `Docker: ${docker}`));
    else await section(name, targets, fn);
  };
  if (only.has('docker'))
    await ifDocker('docker', dockerRows, () =>
      benchRuntime({
        runtime: 'docker',
        backend: docker as DockerBackend,
        raw: rawDocker(image),
        image,
        quick,
      }),
    );
  if (only.has('api'))
    await ifDocker(
      'api',
      [
        ['api: no-op procedure latency', 'apiLatency'],
        ['api: no-op procedure requests/s', 'apiThroughput'],
      ],
      () => benchApi({ quick }),
    );
  if (only.has('realtime'))
    await ifDocker(
      'realtime',
      [
        ['api: warm-pool claim → first exec output', 'warmClaim'],
        ['terminal: throughput', 'terminal'],
      ],
      () => benchApiRealtime({ quick }),
    );
  if (only.has('memory'))
    await ifDocker(
      'memory',
      [
        ['api: resident memory, idle (npm start)', 'apiMemory'],
        ['api: RSS over an exec loop', 'noGrowth'],
      ],
      () => benchMemory({ quick }),
    );
  if (only.has('gvisor')) {
    const targets: [string, TargetId | undefined][] = [
      ['gvisor: create → first exec output', 'createGvisor'],
      ['gvisor: exec round trip', undefined],
      ['gvisor: exec round trip vs the in-sandbox spawn floor', 'execFloor'],
      ['gvisor: memory per idle session', 'idleMemory'],
    ];
    if (typeof gvisor === 'string')
      for (const [n, t] of targets) rows.push(skippedRow(n, t, `gVisor: ${gvisor}`));
    else
      await section('gvisor', targets, () =>
        benchRuntime({
          runtime: 'gvisor',
          backend: gvisor,
          raw: rawGvisor(gvisorRootfs, gvisorData, join(gvisorData, 'runsc')),
          image,
          quick,
        }),
      );
  }
  if (only.has('tasks')) {
    const targets: [string, TargetId | undefined][] = [
      ['task suite: geometric mean, gVisor / Docker', 'geomean'],
    ];
    if (typeof docker === 'string' || typeof gvisor === 'string')
      rows.push(
        skippedRow(
          targets[0]?.[0] as string,
          'geomean',
          typeof docker === 'string' ? `Docker: ${docker}` : `gVisor: ${gvisor}`,
        ),
      );
    // Fresh backends: the API sections close the ones they were given.
    else
      await section('tasks', targets, async () => {
        const d = new DockerBackend({
          dataDir: dockerData,
          instanceId: 'bench-tasks',
          seccompProfile: SECCOMP_PROFILE,
        });
        const g = new GVisorBackend({
          dataDir: gvisorData,
          instanceId: 'bench-tasks',
          images: { [image]: gvisorRootfs },
          seccompProfile: SECCOMP_PROFILE,
        });
        onCleanup(() => d.close());
        onCleanup(() => g.close());
        return benchTasks({ docker: d, gvisor: g, image, quick });
      });
  }
  if (only.has('egress'))
    await section('egress', [...egressRows('docker'), ...egressRows('gvisor')], () =>
      benchEgress({
        runtimes: [
          {
            runtime: 'docker',
            backend:
              typeof docker === 'string'
                ? `Docker: ${docker}`
                : (instanceId) =>
                    new DockerBackend({ dataDir: dockerData, instanceId, seccompProfile: SECCOMP_PROFILE }),
          },
          {
            runtime: 'gvisor',
            backend:
              typeof gvisor === 'string'
                ? `gVisor: ${gvisor}`
                : (instanceId) =>
                    new GVisorBackend({
                      dataDir: gvisorData,
                      instanceId,
                      images: { [image]: gvisorRootfs },
                      seccompProfile: SECCOMP_PROFILE,
                    }),
          },
        ],
        image,
        quick,
      }),
    );
  if (only.has('templates')) {
    const dataDir = `${root}.cache/bench-data/templates`;
    await section('templates', templateRows, () =>
      benchTemplates({
        backends: {
          docker:
            typeof docker === 'string'
              ? undefined
              : new DockerBackend({
                  dataDir: dockerData,
                  instanceId: 'bench-templates',
                  seccompProfile: SECCOMP_PROFILE,
                }),
          gvisor:
            typeof gvisor === 'string'
              ? undefined
              : new GVisorBackend({
                  dataDir: gvisorData,
                  instanceId: 'bench-templates',
                  images: { [image]: gvisorRootfs },
                  resolveImage: (i) => templateRootfs(templatesDir({ dataDir }), i),
                  seccompProfile: SECCOMP_PROFILE,
                }),
        },
        dataDir,
        image,
        quick,
      }),
    );
  }
  if (only.has('pause')) {
    const targets = pauseRows(quick);
    if (typeof gvisor === 'string')
      for (const [n, t] of targets) rows.push(skippedRow(n, t, `gVisor: ${gvisor}`));
    else
      await section('pause', targets, async () => {
        // Its own instance and data directory: it removes every sandbox and snapshot it finds there.
        const dataDir = join(gvisorData, 'pause');
        mkdirSync(dataDir, { recursive: true });
        const backend = new GVisorBackend({
          dataDir,
          instanceId: 'bench-pause',
          images: { [image]: gvisorRootfs },
          seccompProfile: SECCOMP_PROFILE,
        });
        const close = onCleanup(() => backend.close());
        try {
          return await benchPause({
            backend,
            dataDir,
            raw: rawGvisorCheckpoints(gvisorRootfs, dataDir),
            image,
            quick,
          });
        } finally {
          await close();
        }
      });
  }
  if (only.has('e2b'))
    await ifDocker('e2b', e2bRows, () =>
      benchE2b({
        backend: new DockerBackend({
          dataDir: dockerData,
          instanceId: 'bench-e2b',
          seccompProfile: SECCOMP_PROFILE,
        }),
        quick,
      }),
    );
  if (only.has('cluster'))
    await ifDocker('cluster', clusterRows, () =>
      benchCluster({ quick, databaseUrl: process.env.STUDIO_TEST_DATABASE_URL }),
    );
} finally {
  await runCleanups();
}
// Interrupted: what ran is cleaned up (the line above waited for it); no report from a partial run.
if (interrupted) process.exit(130);

const at = new Date().toISOString();
const wallSeconds = Math.round((performance.now() - started) / 1000);
const withFile = process.argv.find((a) => a.startsWith('--with='))?.slice('--with='.length);
if (withFile) {
  const earlier = JSON.parse(readFileSync(withFile, 'utf8')) as { at: string; rows: Row[] };
  const here = new Set(rows.map((r) => r.name));
  for (const r of earlier.rows) {
    // Rows of sections this run measured, and rows the earlier run could not measure, are not carried over.
    if (here.has(r.name) || r.skipped) continue;
    const { verdict: _verdict, ...row } = r as Row & { verdict?: string };
    rows.push({ ...row, note: `${row.note ? `${row.note}; ` : ''}from the run at ${earlier.at}` });
  }
}
const outDir =
  process.argv.find((a) => a.startsWith('--out='))?.slice('--out='.length) ?? `${root}bench/results`;
const title = `Claude Studio benchmarks, ${at} (${quick ? 'quick' : 'full'}, ${wallSeconds} s)`;
const machine = `${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}); 1-minute load average ${loadAtStart.toFixed(2)} at the start, ${(loadavg()[0] as number).toFixed(2)} at the end`;
console.log(`\n${title}\n\n${textTable(rows)}\n`);
writeReports(outDir, { at, quick, wallSeconds, machine, rows });
log(`wrote ${outDir}/latest.{json,md} and ratios.svg in ${wallSeconds} s`);
process.exit(0);
