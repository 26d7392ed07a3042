// `npm run bench -w @studio/api` (add `-- --quick` for fewer samples): the API beside raw baselines.
import { benchApi, type Row } from './api.bench.ts';

const quick = process.argv.includes('--quick');
const rows: Row[] = await benchApi({ quick });
const f = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(2));
const lines = [
  '| measure | API median | API p95 | baseline | baseline median | baseline p95 | ratio (median) |',
  '|---|---|---|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.name} (${r.unit}) | ${f(r.ours.median)} | ${f(r.ours.p95)} | ${r.baselineName} | ${f(r.baseline.median)} | ${f(r.baseline.p95)} | ${(r.ours.median / r.baseline.median).toFixed(2)}× |`,
  ),
];
console.log(
  `\nAPI benchmarks (${new Date().toISOString()}, ${quick ? 'quick' : 'full'})\n\n${lines.join('\n')}\n`,
);
process.exit(0);
