import type { IsolationBackend, Sandbox } from '@studio/isolation';
import { onCleanup, type Row, ratioOf } from './report.ts';
import { elapsed, geomean, interleaved, summarize } from './stats.ts';

const MiB = 1024 * 1024;
const resources = {
  memoryBytes: 1024 * MiB,
  cpus: 1,
  pids: 512,
  diskBytes: 512 * MiB,
  inodes: 50_000,
  tmpBytes: 64 * MiB,
};

/** A small agent task suite: what an agent does all day, run the same way on each backend. */
const TASKS: Record<string, string> = {
  // A local package: a git repository cloned into node_modules, then required.
  'install a local package': `set -e; rm -rf pkg node_modules; mkdir -p pkg && cd pkg && git init -q &&
    printf '{"name":"pkg","version":"1.0.0","main":"index.js"}' > package.json &&
    printf 'module.exports = (a, b) => a + b;' > index.js &&
    git -c user.email=a@b -c user.name=a add -A && git -c user.email=a@b -c user.name=a commit -qm init && cd .. &&
    git clone -q ./pkg node_modules/pkg && node -e "if (require('pkg')(1, 2) !== 3) process.exit(1)"`,
  'run a test file': `set -e; cat > sum.test.js <<'JS'
const test = require('node:test'); const assert = require('node:assert');
for (let i = 0; i < 50; i++) test('sum ' + i, () => assert.strictEqual(i + i, 2 * i));
JS
node --test sum.test.js > /dev/null`,
  'search a tree': 'grep -rl needle tree | wc -l',
};

const SETUP = `mkdir -p tree && cd tree && for d in $(seq 1 20); do mkdir -p d$d; for f in $(seq 1 50); do
  if [ $f = 7 ]; then echo needle > d$d/f$f.txt; else echo hay > d$d/f$f.txt; fi; done; done`;

/**
 * Runs a task and returns how long it took inside the sandbox, by bash's own clock ($EPOCHREALTIME: no process
 * spawned to read it): the runtime's share, with neither the agent nor the host in the way.
 */
async function runTask(sandbox: Sandbox, script: string): Promise<number> {
  const timed = `s=$EPOCHREALTIME; (${script}
); rc=$?; e=$EPOCHREALTIME; echo "inside-us $(( \${e/./} - \${s/./} ))" >&2; exit $rc`;
  const r = await sandbox.exec(['bash', '-c', timed], { timeoutMs: 60_000, maxOutputBytes: 65_536 });
  const stderr = new TextDecoder().decode(r.stderr);
  if (r.exitCode !== 0) throw new Error(`task failed (${r.exitCode}): ${stderr.slice(0, 300)}`);
  const inside = /inside-us (\d+)/.exec(stderr)?.[1];
  if (inside === undefined) throw new Error(`task printed no inside time: ${stderr.slice(0, 300)}`);
  return Number(inside) / 1000;
}

/** gVisor's time for each task over Docker's, both measured here in the same run. */
export async function benchTasks(options: {
  docker: IsolationBackend;
  gvisor: IsolationBackend;
  image: string;
  quick: boolean;
}): Promise<Row[]> {
  const n = options.quick ? 3 : 10;
  const [d, g] = await Promise.all([
    options.docker.create({ image: options.image, resources, labels: { 'studio.test': 'bench' } }),
    options.gvisor.create({ image: options.image, resources, labels: { 'studio.test': 'bench' } }),
  ]);
  const destroy = onCleanup(() => Promise.all([d.destroy(), g.destroy()]));
  try {
    await Promise.all([runTask(d, SETUP), runTask(g, SETUP)]);
    const rows: Row[] = [];
    const insideRows: Row[] = [];
    for (const [name, script] of Object.entries(TASKS)) {
      const inside = { g: [] as number[], d: [] as number[] };
      const r = await interleaved(
        `task "${name}" gVisor vs Docker`,
        n,
        elapsed(async () => inside.g.push(await runTask(g, script))),
        elapsed(async () => inside.d.push(await runTask(d, script))),
      );
      // interleaved() runs each side once as a warm-up first: drop it here too.
      const ig = summarize(inside.g.slice(1));
      const id = summarize(inside.d.slice(1));
      insideRows.push({
        name: `task suite: ${name}, time inside the sandbox (bash's clock), gVisor vs Docker`,
        unit: 'ms',
        ours: ig,
        baseline: id,
        baselineName: 'the same task inside the Docker sandbox',
        ratio: ratioOf(ig, id),
        note: 'what the runtime itself costs: no agent, channel or host in the timing',
      });
      const o = summarize(r.ours);
      const b = summarize(r.raw);
      rows.push({
        name: `task suite: ${name}, gVisor vs Docker`,
        unit: 'ms',
        ours: o,
        baseline: b,
        baselineName: 'the same task on the Docker backend',
        ratio: ratioOf(o, b),
      });
    }
    const ratios = rows.map((r) => r.ratio as number);
    rows.push({
      name: `task suite: geometric mean of the ${ratios.length} median ratios, gVisor / Docker`,
      unit: 'ratio',
      baselineName: 'Docker backend',
      ratio: geomean(ratios),
      target: 'geomean',
    });
    const insideRatios = insideRows.map((r) => r.ratio as number);
    rows.push(...insideRows, {
      name: `task suite: geometric mean inside the sandbox, gVisor / Docker (the runtimes' floor)`,
      unit: 'ratio',
      baselineName: 'Docker, inside the sandbox',
      ratio: geomean(insideRatios),
      note: 'what the tasks cost under each runtime with Studio out of the timing: the part of the ratio that Studio cannot remove',
    });
    return rows;
  } finally {
    await destroy();
  }
}
