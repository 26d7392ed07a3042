// `npm run bench`: every figure beside a raw baseline measured in the same run. `--quick` for fewer samples.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DockerBackend } from '@studio/isolation-docker';
import { GVisorBackend } from '@studio/isolation-gvisor';
import { benchApi } from './api.bench.ts';
import { benchDocker } from './docker.bench.ts';
import { benchGvisor } from './gvisor.bench.ts';
import { formatRows, type Row } from './stats.ts';
import { benchTasks } from './tasks.bench.ts';

const quick = process.argv.includes('--quick');
const root = fileURLToPath(new URL('..', import.meta.url));
const image = process.env.STUDIO_SANDBOX_IMAGE ?? 'studio-sandbox:latest';

const rows: Row[] = [];
rows.push(...(await benchDocker({ image, dataDir: `${root}.cache/bench-data/docker`, quick })));
rows.push(...(await benchApi({ quick })));

const rootfs = execFileSync('bash', [`${root}infra/image/build.sh`, '--print-rootfs'], {
  encoding: 'utf8',
}).trim();
rows.push(...(await benchGvisor({ image, rootfs, dataDir: `${root}.cache/bench-data/gvisor`, quick })));
const docker = new DockerBackend({ dataDir: `${root}.cache/bench-data/docker`, instanceId: 'bench' });
const gvisor = new GVisorBackend({
  dataDir: `${root}.cache/bench-data/gvisor`,
  instanceId: 'bench',
  images: { [image]: rootfs },
});
rows.push(...(await benchTasks({ docker, gvisor, image, quick })));
await Promise.all([docker.close(), gvisor.close()]);

const table = formatRows(rows);
console.log(
  `\nClaude Studio benchmarks (${new Date().toISOString()}, ${quick ? 'quick' : 'full'})\n\n${table}\n`,
);
mkdirSync(`${root}bench/results`, { recursive: true });
writeFileSync(
  `${root}bench/results/latest.json`,
  JSON.stringify({ at: new Date().toISOString(), rows }, null, 2),
);
writeFileSync(`${root}bench/results/latest.md`, `${table}\n`);
