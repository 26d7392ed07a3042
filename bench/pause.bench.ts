// Issue 20 on gVisor: pause (suspend), resume, fork from a snapshot and the host memory a paused session holds,
// measured on the backend itself (GVisorBackend, no API), beside raw `runsc checkpoint` / `runsc restore`,
// interleaved.

import { execFile } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type IsolationBackend, newSnapshotId, type ResourceLimits, type Sandbox } from '@studio/isolation';
import { defaultPolicy } from '@studio/policy';
import type { RawCheckpoints } from './raw.ts';
import { onCleanup, type Row, ratioOf, type TargetId } from './report.ts';
import { progress, sleep, summarize } from './stats.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const LABELS = { 'studio.test': 'bench-pause' };
const FORKS = 10;
const SESSIONS = 20;
const QUICK_SESSIONS = 10;
/** Per sandbox, what a paused session may still hold of the host's memory (the `pausedMemory` target). */
const PAUSED_BOUND_MIB = 1;
const EXEC = { timeoutMs: 30_000, maxOutputBytes: 4096 } as const;

/** What the API gives a session by default: the pause and fork sandboxes have a real session's shape. */
const { memoryBytes, cpus, pids, diskBytes, inodes, tmpBytes } = defaultPolicy.sandbox;
const RESOURCES: ResourceLimits = { memoryBytes, cpus, pids, diskBytes, inodes, tmpBytes };
/** The paused-memory sessions: small, as the conformance suite's dedicated sandboxes. */
const SMALL: ResourceLimits = {
  memoryBytes: 256 * MiB,
  cpus: 1,
  pids: 128,
  diskBytes: 64 * MiB,
  inodes: 4096,
  tmpBytes: 16 * MiB,
};

/** A small program that carries state in memory: a shell counter, one `sleep` a second (little CPU). */
const COUNTER_FILE = '/tmp/bench-counter';
const COUNTER_LOOP = `i=0; while :; do i=$((i+1)); echo $i > ${COUNTER_FILE}; sleep 1; done`;
const RAW_ID = 'raw-pause';

/** The rows of this section and their targets (for rows skipped as a whole). */
export function pauseRows(quick: boolean): [string, TargetId | undefined][] {
  return [
    ['gvisor: pause (checkpoint + release)', 'pause'],
    ['gvisor: resume → first exec output', 'resume'],
    [`gvisor: fork of ${FORKS} (total)`, undefined],
    ['gvisor: fork, per fork', undefined],
    [`gvisor: host memory per paused session (${quick ? QUICK_SESSIONS : SESSIONS})`, 'pausedMemory'],
  ];
}

/**
 * Issue 20 on the gVisor backend: suspend and resume cycles on one sandbox beside the same on a raw runsc
 * sandbox; forks of a snapshot beside raw restores of one checkpoint; the host memory of suspended sessions beside
 * the same sessions running. Everything it makes (sandboxes, snapshots, raw sandboxes) is removed at the end.
 */
export async function benchPause(options: {
  backend: IsolationBackend;
  /** The backend's data directory (its bundles: where a suspended sandbox's checkpoint lies). */
  dataDir: string;
  raw: RawCheckpoints;
  image: string;
  quick: boolean;
}): Promise<Row[]> {
  const { backend, raw, image, quick } = options;
  const cycles = quick ? 3 : 12;
  const forkRounds = quick ? 1 : 4;
  const sessions = quick ? QUICK_SESSIONS : SESSIONS;
  const names = pauseRows(quick).map(([n]) => n);
  const sweep = onCleanup(() => removeAll(backend));
  // What an interrupted earlier run left: this instance's data directory is the bench's own.
  await removeAll(backend);
  const rows: Row[] = [];
  try {
    const sandbox = await backend.create({ image, resources: RESOURCES, labels: LABELS });
    await startCounter(sandbox);
    raw.bundle(RAW_ID, ['/bin/sh', '-c', COUNTER_LOOP]);
    await raw.start(RAW_ID);
    const ours = () => readCounter(sandbox);
    const base = () => rawCounter(raw, RAW_ID);
    await waitAbove('the counter', ours, 1);
    await waitAbove('the raw counter', base, 1);

    rows.push(...(await pauseResume(sandbox, raw, cycles, names)));
    rows.push(...(await forks(backend, sandbox, raw, image, forkRounds, names)));
    await sandbox.destroy();
    await raw.delete(RAW_ID).catch(() => undefined);
    rows.push(await pausedMemory(backend, options.dataDir, image, sessions, names[4] as string));
    return rows;
  } finally {
    await sweep();
    await raw.close();
  }
}

/** Suspend, then start + first output, alternately on the same two sandboxes (ours and raw), interleaved. */
async function pauseResume(
  sandbox: Sandbox,
  raw: RawCheckpoints,
  cycles: number,
  names: string[],
): Promise<Row[]> {
  const warmup = 1;
  const pause = { ours: [] as number[], raw: [] as number[] };
  const resume = { ours: [] as number[], raw: [] as number[] };
  const imageDir = join(raw.dir, 'checkpoint');
  for (let i = 0; i < cycles + warmup; i++) {
    // Outside the clock: the counters as they are now (checked again after the resume), a fresh image directory.
    const before = { ours: await readCounter(sandbox), raw: await rawCounter(raw, RAW_ID) };
    rmSync(imageDir, { recursive: true, force: true });
    mkdirSync(imageDir);
    const p = await both(
      i,
      async () => {
        const t = performance.now();
        const { memory } = await sandbox.suspend();
        const ms = performance.now() - t;
        if (!memory) throw new Error('suspend() saved no memory: the backend declares checkpoint');
        return ms;
      },
      async () => {
        const t = performance.now();
        await raw.checkpoint(RAW_ID, imageDir);
        await raw.delete(RAW_ID);
        return performance.now() - t;
      },
    );
    const r = await both(
      i,
      async () => {
        const t = performance.now();
        await sandbox.start();
        const out = await sandbox.exec(['echo', 'x'], EXEC);
        const ms = performance.now() - t;
        if (new TextDecoder().decode(out.stdout).trim() !== 'x') throw new Error('resume: no output');
        return ms;
      },
      async () => {
        const t = performance.now();
        await raw.restore(RAW_ID, imageDir);
        const out = await raw.exec(RAW_ID, ['echo', 'x']);
        const ms = performance.now() - t;
        if (out.trim() !== 'x') throw new Error('raw resume: no output');
        return ms;
      },
    );
    // The memory came back: each counter carries on from where it was (a cold start would begin at 1 again).
    const after = { ours: await readCounter(sandbox), raw: await rawCounter(raw, RAW_ID) };
    if (after.ours < before.ours || after.raw < before.raw)
      throw new Error(
        `a counter went back across pause/resume: ours ${before.ours} → ${after.ours}, raw ${before.raw} → ${after.raw}`,
      );
    if (i < warmup) continue;
    pause.ours.push(p[0]);
    pause.raw.push(p[1]);
    resume.ours.push(r[0]);
    resume.raw.push(r[1]);
    progress('gvisor pause/resume cycle', i - warmup + 1, cycles);
  }
  const po = summarize(pause.ours);
  const pb = summarize(pause.raw);
  const ro = summarize(resume.ours);
  const rb = summarize(resume.raw);
  return [
    {
      name: names[0] as string,
      unit: 'ms',
      ours: po,
      baseline: pb,
      baselineName: '`runsc checkpoint` + `runsc delete --force` of a bare sandbox',
      ratio: ratioOf(po, pb),
      target: 'pause',
      note: 'sandbox.suspend() of a running sandbox (its agent and a shell counter); raw: the counter alone',
    },
    {
      name: names[1] as string,
      unit: 'ms',
      ours: ro,
      baseline: rb,
      baselineName: '`runsc restore --detach` + `runsc exec echo x`',
      ratio: ratioOf(ro, rb),
      target: 'resume',
      note: "sandbox.start() + exec(['echo','x']); each counter checked to carry on after every cycle",
    },
  ];
}

/**
 * Rounds of: a snapshot of the running sandbox, then FORKS sandboxes made from it one after another (ours), beside
 * one raw `checkpoint --leave-running` and FORKS raw (workspace-image copy + restore). Destroyed after each round.
 */
async function forks(
  backend: IsolationBackend,
  source: Sandbox,
  raw: RawCheckpoints,
  image: string,
  rounds: number,
  names: string[],
): Promise<Row[]> {
  // The raw fork's workspace: an image of the same size and format as ours, as a snapshot holds it (sparse).
  const workspace = join(raw.dir, 'workspace.img');
  await run('truncate', ['-s', String(RESOURCES.diskBytes), workspace]);
  await run('mkfs.ext4', [
    '-q',
    '-F',
    '-m',
    '0',
    '-N',
    String(RESOURCES.inodes),
    '-E',
    'root_owner=1000:1000,nodiscard,lazy_itable_init=0,lazy_journal_init=0',
    workspace,
  ]);
  const total = { ours: [] as number[], raw: [] as number[] };
  const snapshotMs: number[] = [];
  const each = { ours: [] as number[], raw: [] as number[] };
  const ours = async () => {
    const made: Sandbox[] = [];
    let snapshotId: string | undefined;
    try {
      const t = performance.now();
      const snapshot = await source.snapshot(newSnapshotId());
      snapshotId = snapshot.id;
      snapshotMs.push(performance.now() - t);
      for (let k = 0; k < FORKS; k++) {
        const t1 = performance.now();
        made.push(
          await backend.create({ image, resources: RESOURCES, labels: LABELS, fromSnapshot: snapshot.id }),
        );
        each.ours.push(performance.now() - t1);
      }
      const ms = performance.now() - t;
      // Outside the clock: a fork runs the source's program, carried on from the snapshot.
      await waitAbove('a fork’s counter', () => readCounter(made[0] as Sandbox), 0);
      return ms;
    } finally {
      // All at once: a `runsc delete` of a running sandbox takes a second or two, most of it waiting.
      await Promise.allSettled(made.map((s) => s.destroy()));
      if (snapshotId) await backend.deleteSnapshot(snapshotId).catch(() => undefined);
    }
  };
  let round = 0;
  const base = async () => {
    const dir = join(raw.dir, `fork-${round++}`);
    const imageDir = join(dir, 'memory');
    mkdirSync(imageDir, { recursive: true });
    const ids = Array.from({ length: FORKS }, (_, k) => `raw-fork-${k}`);
    for (const id of ids) raw.bundle(id, ['/bin/sh', '-c', COUNTER_LOOP]);
    const started: string[] = [];
    try {
      const t = performance.now();
      await raw.checkpoint(RAW_ID, imageDir, { leaveRunning: true });
      for (const id of ids) {
        const t1 = performance.now();
        await run('cp', ['--sparse=always', '--no-preserve=all', workspace, join(dir, `${id}.img`)]);
        await raw.restore(id, imageDir);
        started.push(id);
        each.raw.push(performance.now() - t1);
      }
      const ms = performance.now() - t;
      await waitAbove('a raw fork’s counter', () => rawCounter(raw, ids[0] as string), 0);
      return ms;
    } finally {
      await Promise.allSettled(started.map((id) => raw.delete(id)));
      rmSync(dir, { recursive: true, force: true });
    }
  };
  for (let i = 0; i < rounds; i++) {
    const [o, b] = await both(i, ours, base);
    total.ours.push(o);
    total.raw.push(b);
    progress(`gvisor fork of ${FORKS}, round`, i + 1, rounds);
  }
  rmSync(workspace, { force: true });
  const to = summarize(total.ours);
  const tb = summarize(total.raw);
  const po = summarize(total.ours.map((x) => x / FORKS));
  const pb = summarize(total.raw.map((x) => x / FORKS));
  const gib = (RESOURCES.diskBytes / 2 ** 30).toFixed(0);
  const baselineName = `one \`runsc checkpoint --leave-running\` + ${FORKS} × (\`cp --sparse=always\` of a ${gib} GiB workspace image, \`runsc restore\`)`;
  const f = (x: number) => x.toFixed(0);
  const context = `snapshot() alone: median ${f(summarize(snapshotMs).median)} ms; one create({ fromSnapshot }): median ${f(summarize(each.ours).median)} ms (p95 ${f(summarize(each.ours).p95)}), one raw copy + restore: median ${f(summarize(each.raw).median)} ms`;
  return [
    {
      name: names[2] as string,
      unit: 'ms',
      ours: to,
      baseline: tb,
      baselineName,
      ratio: ratioOf(to, tb),
      note: `snapshot(newSnapshotId()) + ${FORKS} sequential create({ fromSnapshot }), ${rounds} round(s); ${context}`,
    },
    {
      name: names[3] as string,
      unit: 'ms',
      ours: po,
      baseline: pb,
      baselineName,
      ratio: ratioOf(po, pb),
      note: `each round's total ÷ ${FORKS}`,
    },
  ];
}

/**
 * N sessions created and read running, then suspended and read again: the resident memory (VmRSS) of every host
 * process whose command line names a session's sandbox id, per session, 3 readings each; and the host's used
 * memory (MemTotal − MemAvailable) against before the creates, per session.
 */
async function pausedMemory(
  backend: IsolationBackend,
  dataDir: string,
  image: string,
  n: number,
  name: string,
): Promise<Row> {
  const made: Sandbox[] = [];
  try {
    const before = await usedBytes();
    for (let i = 0; i < n; i++) {
      made.push(await backend.create({ image, resources: SMALL, labels: LABELS }));
      progress('gvisor paused-memory sessions', i + 1, n);
    }
    const ids = made.map((s) => s.id);
    const read = async (settleMs: number) => {
      await sleep(settleMs);
      const perSandbox: number[] = [];
      const used: number[] = [];
      for (let round = 0; round < 3; round++) {
        const rss = await residentBytesById(ids);
        for (const id of ids) perSandbox.push((rss.get(id) ?? 0) / MiB);
        used.push(((await usedBytes()) - before) / n / MiB);
        await sleep(1000);
      }
      return { perSandbox, used: summarize(used).median };
    };
    const running = await read(5000);
    for (const [i, s] of made.entries()) {
      const { memory } = await s.suspend();
      if (!memory) throw new Error('suspend() saved no memory: the backend declares checkpoint');
      progress('gvisor suspend', i + 1, n);
    }
    const paused = await read(5000);
    // Per sandbox, its highest reading: "each" is the bound.
    const over = ids.filter((_, k) =>
      [0, 1, 2].some((round) => (paused.perSandbox[round * n + k] as number) > PAUSED_BOUND_MIB),
    ).length;
    const disk = await Promise.all(
      ids.map((id) => dirBytes(join(dataDir, 'sandboxes', id, 'checkpoint')).catch(() => Number.NaN)),
    );
    const o = summarize(paused.perSandbox);
    const b = summarize(running.perSandbox);
    const f = (x: number) => x.toFixed(1);
    return {
      name,
      unit: 'MiB',
      ours: o,
      baseline: b,
      baselineName: `the same ${n} sessions running, before the suspend (host RSS naming the id)`,
      ratio: ratioOf(o, b),
      target: 'pausedMemory',
      failures: over,
      note: `VmRSS of host processes whose command line names the sandbox id, per session, 3 readings each (failures: sessions above ${PAUSED_BOUND_MIB} MiB); host MemTotal − MemAvailable against before the creates, per session: ${f(paused.used)} MiB suspended, ${f(running.used)} MiB running (the whole host: noisy); checkpoint on disk per session: median ${f(summarize(disk).median / MiB)} MiB`,
    };
  } finally {
    for (const s of made) await s.destroy().catch(() => undefined);
  }
}

/** Runs `ours` and `raw`, alternating which goes first with `i`; returns [ours, raw]. */
async function both<T>(i: number, ours: () => Promise<T>, raw: () => Promise<T>): Promise<[T, T]> {
  if (i % 2 === 0) {
    const o = await ours();
    return [o, await raw()];
  }
  const r = await raw();
  return [await ours(), r];
}

async function startCounter(sandbox: Sandbox): Promise<void> {
  const r = await sandbox.exec(
    ['sh', '-c', `setsid sh -c '${COUNTER_LOOP}' </dev/null >/dev/null 2>&1 &`],
    EXEC,
  );
  if (r.exitCode !== 0) throw new Error(`the counter did not start: ${new TextDecoder().decode(r.stderr)}`);
}

/** The counter's value (0 while its file is not there yet, or is caught between truncation and write). */
async function readCounter(sandbox: Sandbox): Promise<number> {
  const r = await sandbox.exec(['cat', COUNTER_FILE], EXEC);
  return Number.parseInt(new TextDecoder().decode(r.stdout).trim(), 10) || 0;
}

async function rawCounter(raw: RawCheckpoints, id: string): Promise<number> {
  const out = await raw.exec(id, ['cat', COUNTER_FILE]).catch(() => '');
  return Number.parseInt(out.trim(), 10) || 0;
}

async function waitAbove(what: string, read: () => Promise<number>, above: number): Promise<number> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const v = await read();
    if (v > above) return v;
    if (Date.now() > deadline) throw new Error(`${what} did not pass ${above} (reads ${v})`);
    await sleep(200);
  }
}

/** VmRSS (bytes) of host processes, summed per id of `ids` that their command line names. */
async function residentBytesById(ids: readonly string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const id = ids.find((x) => cmdline.includes(x));
    if (id === undefined) continue;
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const kib = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
    if (kib) out.set(id, (out.get(id) ?? 0) + Number(kib) * 1024);
  }
  return out;
}

/** MemTotal − MemAvailable of /proc/meminfo, in bytes. */
async function usedBytes(): Promise<number> {
  const text = await readFile('/proc/meminfo', 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
  return (kib('MemTotal') - kib('MemAvailable')) * 1024;
}

/** Bytes a directory's files take on disk. */
async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? await dirBytes(path) : ((await stat(path)).blocks ?? 0) * 512;
  }
  return total;
}

/** Every sandbox and snapshot of the bench's instance (its data directory is its own). */
async function removeAll(backend: IsolationBackend): Promise<void> {
  for (const s of await backend.list({ labels: LABELS }).catch(() => []))
    await backend.destroy(s.id).catch(() => undefined);
  for (const s of await backend.listSnapshots().catch(() => []))
    await backend.deleteSnapshot(s.id).catch(() => undefined);
}
