// `npm run bench`: every figure beside a raw baseline measured in the same run.
// Flags: `--quick` for fewer samples; `--only=docker,api,realtime,gvisor,tasks` for some sections.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DockerBackend } from '@studio/isolation-docker';
import { GVisorBackend } from '@studio/isolation-gvisor';
import { benchApi, benchApiRealtime } from './api.bench.ts';
import { benchDocker } from './docker.bench.ts';
import { benchGvisor } from './gvisor.bench.ts';
import { formatRows, type Row } from './stats.ts';
import { benchTasks } from './tasks.bench.ts';

const quick = process.argv.includes('--quick');
const onlyArg = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const only = new Set((onlyArg ?? 'docker,api,realtime,gvisor,tasks').split(','));
const root = fileURLToPath(new URL('..', import.meta.url));
const image = process.env.STUDIO_SANDBOX_IMAGE ?? 'studio-sandbox:latest';
const dockerData = `${root}.cache/bench-data/docker`;
const gvisorData = `${root}.cache/bench-data/gvisor`;
const rootfs = (): string =>
  execFileSync('bash', [`${root}infra/image/build.sh`, '--print-rootfs'], { encoding: 'utf8' }).trim();

const rows: Row[] = [];
if (only.has('docker')) rows.push(...(await benchDocker({ image, dataDir: dockerData, quick })));
if (only.has('api')) rows.push(...(await benchApi({ quick })));
if (only.has('realtime')) rows.push(...(await benchApiRealtime({ quick })));
if (only.has('gvisor'))
  rows.push(...(await benchGvisor({ image, rootfs: rootfs(), dataDir: gvisorData, quick })));
if (only.has('tasks')) {
  const docker = new DockerBackend({ dataDir: dockerData, instanceId: 'bench' });
  const gvisor = new GVisorBackend({
    dataDir: gvisorData,
    instanceId: 'bench',
    images: { [image]: rootfs() },
  });
  try {
    rows.push(...(await benchTasks({ docker, gvisor, image, quick })));
  } finally {
    await Promise.all([docker.close(), gvisor.close()]);
  }
}

const table = formatRows(rows);
const at = new Date().toISOString();
console.log(`\nClaude Studio benchmarks (${at}, ${quick ? 'quick' : 'full'})\n\n${table}\n`);
mkdirSync(`${root}bench/results`, { recursive: true });
writeFileSync(`${root}bench/results/latest.json`, JSON.stringify({ at, quick, rows }, null, 2));
writeFileSync(`${root}bench/results/latest.md`, `${table}\n`);
