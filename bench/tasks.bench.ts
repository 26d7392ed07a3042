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

async function runTask(sandbox: Sandbox, script: string): Promise<void> {
  const r = await sandbox.exec(['bash', '-c', script], { timeoutMs: 60_000, maxOutputBytes: 65_536 });
  if (r.exitCode !== 0)
    throw new Error(`task failed (${r.exitCode}): ${new TextDecoder().decode(r.stderr).slice(0, 300)}`);
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
    for (const [name, script] of Object.entries(TASKS)) {
      const r = await interleaved(
        `task "${name}" gVisor vs Docker`,
        n,
        elapsed(() => runTask(g, script)),
        elapsed(() => runTask(d, script)),
      );
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
    return rows;
  } finally {
    await destroy();
  }
}
