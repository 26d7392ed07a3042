import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IsolationBackend } from '@studio/isolation';
import { runClientProcess } from './client-process.ts';
import { type Harness, startHarness } from './harness.ts';
import { onCleanup, type Row, ratioOf, skippedRow, type TargetId } from './report.ts';
import { summarize } from './stats.ts';

type Samples = Record<string, { ours: number[]; raw: number[] }>;

/** The rows of this section and their targets (for rows skipped as a whole). */
export const templateRows: [string, TargetId | undefined][] = [
  ['templates: no-change rebuild', 'templateRebuild'],
  ['docker: create → first exec output, custom template', 'templateCreate'],
  ['gvisor: create → first exec output, custom template', 'templateCreate'],
];

/** Runs bench/templates-client.ts in its own process and returns its samples. */
function runClient(job: Record<string, unknown>): Promise<Samples> {
  return runClientProcess('templates-client.ts', job);
}

/**
 * Issue 19: a no-change rebuild of a template (its build reused by content) beside Docker's own build cache on an
 * unchanged Dockerfile; create → first output from a custom template beside the same from the default template,
 * on each backend (both cold: the API runs with no warm pool, which serves only the operator's images). The API
 * runs here, its client in its own process.
 */
export async function benchTemplates(options: {
  backends: { docker?: IsolationBackend | undefined; gvisor?: IsolationBackend | undefined };
  dataDir: string;
  image: string;
  quick: boolean;
}): Promise<Row[]> {
  const rounds = options.quick ? 3 : 12;
  const rebuilds = options.quick ? 5 : 20;
  const enabled = (['docker', 'gvisor'] as const).filter((b) => options.backends[b] !== undefined);
  const backends = enabled.map((b) => options.backends[b] as IsolationBackend);
  mkdirSync(options.dataDir, { recursive: true });
  const labels = { 'studio.test': 'bench-templates' };
  const h: Harness = await startHarness({
    backend: backends[0] as IsolationBackend,
    extraBackends: backends.slice(1),
    labels,
    sessions: 1,
    env: { STUDIO_INSTANCE_ID: 'bench-templates', STUDIO_DATA_DIR: options.dataDir },
  });
  const dockerfile = mkdtempSync(join(tmpdir(), 'studio-bench-dockerfile-'));
  onCleanup(async () => rmSync(dockerfile, { recursive: true, force: true }));
  try {
    const client = h.clients[0] as Harness['clients'][number];
    // A small custom template: a file and a build command (no package source is needed).
    await client.templates.create.mutate({
      name: 'bench',
      spec: {
        files: [{ path: '/opt/bench/hello.txt', content: 'hello\n' }],
        run: ['echo built > /opt/bench/built.txt'],
        env: { BENCH: '1' },
      },
    });
    for (;;) {
      const t = await client.templates.get.query({ template: 'bench' });
      if (t.state === 'ready') break;
      if (t.state === 'failed') throw new Error(`the bench template did not build: ${t.failure}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    writeFileSync(join(dockerfile, 'Dockerfile'), `FROM ${options.image}\nRUN echo built > /tmp/built.txt\n`);
    const samples = await runClient({
      url: h.t.url,
      token: h.token,
      template: 'bench',
      backends: enabled,
      rounds,
      rebuilds,
      dockerfile,
    });
    const rows: Row[] = [];
    const rebuild = samples.rebuild;
    if (rebuild) {
      const ours = summarize(rebuild.ours);
      const baseline = summarize(rebuild.raw);
      rows.push({
        name: templateRows[0]?.[0] as string,
        unit: 'ms',
        baselineName: 'docker build of an unchanged Dockerfile (its layer cache)',
        ours,
        baseline,
        ratio: ratioOf(ours, baseline),
        target: 'templateRebuild',
        note: 'templates.build, then templates.get until ready; the recipe hash names an existing build',
      });
    }
    for (const backend of ['docker', 'gvisor'] as const) {
      const s = samples[`create-${backend}`];
      const name = `${backend}: create → first exec output, custom template`;
      if (!s) {
        rows.push(skippedRow(name, 'templateCreate', `${backend} is not available`));
        continue;
      }
      const ours = summarize(s.ours);
      const baseline = summarize(s.raw);
      rows.push({
        name,
        unit: 'ms',
        baselineName: 'the same from the default template (both cold, no warm pool)',
        ours,
        baseline,
        ratio: ratioOf(ours, baseline),
        target: 'templateCreate',
      });
    }
    return rows;
  } finally {
    await h.close();
  }
}
