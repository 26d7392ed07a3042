import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readdir, readFile, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type ApiProcess, whenListening } from './api-process.ts';

// The chaos test's fixture (issue 17): the real API as a child process on a data dir of its own, killed with
// SIGKILL and started again, and a census of every host resource that belongs to that one instance (so other
// tests running beside it on the same Docker never count).

const run = promisify(execFile);
const API_DIR = fileURLToPath(new URL('../..', import.meta.url));

/** A running API child process. */
export type ChaosApi = ApiProcess;

/** Options of {@link startChaosApi}. */
export interface ChaosApiOptions {
  /** The API bundle `npm start` runs (apps/api/scripts/build.ts), built once per file. */
  bundle: string;
  dataDir: string;
  instanceId: string;
  adminPassword: string;
  /** `STUDIO_BACKENDS` (`docker` or `gvisor`). */
  backends: string;
  /** Extra environment (the warm pool, grace periods). */
  env?: Record<string, string>;
}

/**
 * Starts the API as `npm start` does (node running the bundle of src/main.ts; node itself, so the kill reaches the
 * API and not a wrapper) and resolves once it listens. Reconciliation is made fast so the test's grace period is
 * seconds, not minutes.
 */
export function startChaosApi(o: ChaosApiOptions): Promise<ChaosApi> {
  const child = spawn(process.execPath, [o.bundle], {
    cwd: API_DIR,
    env: {
      ...process.env,
      STUDIO_DATA_DIR: o.dataDir,
      STUDIO_PORT: '0',
      STUDIO_PREVIEW_PORT: '0',
      STUDIO_BACKENDS: o.backends,
      STUDIO_INSTANCE_ID: o.instanceId,
      STUDIO_ADMIN_PASSWORD: o.adminPassword,
      STUDIO_ORPHAN_GRACE_MS: '1500',
      STUDIO_RECONCILE_INTERVAL_MS: '1000',
      STUDIO_LOG_LEVEL: 'warn',
      ...o.env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // A first start runs initdb too; a shared 2-core machine has taken 50 s.
  return whenListening(child, { timeoutMs: 120_000 });
}

/** `kill -9` and wait for the exit. */
export async function sigkill(api: ChaosApi): Promise<void> {
  if (api.child.exitCode === null && api.child.signalCode === null) api.child.kill('SIGKILL');
  await api.exited;
}

/** A small seeded PRNG (mulberry32), so a failing run can be replayed with its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Host resources of one API instance, each named by the sandbox id it belongs to. */
export interface Census {
  /**
   * Containers (Docker) or runsc containers (gVisor), by sandbox id: the session label they were made with (`pool`
   * for the warm pool's, kept after a claim: labels cannot change) and the runtime's own id (Docker: the
   * container id, whose first 12 characters are the sandbox's host name).
   */
  sandboxes: Map<string, { session: string | undefined; runtimeId: string }>;
  /** Workspace images under the data dir (sandbox ids). */
  images: string[];
  /** Files in the workspace pool's folder (`ready-*.img`, `making-*.img`): owned by the pool, never mounted. */
  poolImages: string[];
  /** Mount points under the data dir. */
  mounts: string[];
  /** Loop devices whose backing file is under the data dir: device → backing file. */
  loops: Map<string, string>;
}

/** Mount points under `dir` (this process's mount table: the host's, as the API's). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const root = await realpath(dir).catch(() => dir);
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === root || m.startsWith(`${root}/`));
}

/** Loop devices backed by a file under `dir` (also ones whose file was deleted: still a leak). */
export async function loopsUnder(dir: string): Promise<Map<string, string>> {
  const root = await realpath(dir).catch(() => dir);
  const { stdout } = await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE']);
  const parsed = stdout.trim()
    ? (JSON.parse(stdout) as { loopdevices: { name: string; 'back-file': string | null }[] })
    : { loopdevices: [] };
  const found = new Map<string, string>();
  for (const d of parsed.loopdevices) {
    const file = d['back-file'] ?? '';
    if (file.startsWith(`${root}/`) || file.startsWith(`${dir}/`)) found.set(d.name, file);
  }
  return found;
}

/** The workspace pool's files in `<dataDir>/<backend>/workspaces/.pool`. */
export async function poolImagesUnder(dir: string): Promise<string[]> {
  return readdir(join(dir, '.pool')).catch(() => [] as string[]);
}

/** Workspace images (`<id>.img`) in `<dataDir>/<backend>/workspaces`. */
export async function imagesUnder(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n.endsWith('.img')).map((n) => n.slice(0, -'.img'.length));
}

/** The sandbox id a mount point or loop backing file under a workspaces folder names. */
export function sandboxIdOf(path: string): string {
  const base =
    path
      .replace(/ \(deleted\)$/, '')
      .split('/')
      .pop() ?? '';
  return base.replace(/\.img$/, '');
}

/** Sessions as the API lists them (states and ids only). */
export interface SessionState {
  id: string;
  state: string;
  failureReason: string | null;
  /** The host name seen inside its sandbox, when the test asked (how a claimed pool member is told apart). */
  hostname?: string;
}

/**
 * What the census may hold: the sandboxes of live (`running`, `stopped`) sessions, and the warm pool's members up
 * to its size. Returns every resource outside that, as readable lines (empty: nothing leaked).
 */
export function leaks(
  census: Census,
  sessions: readonly SessionState[],
  poolSize: number,
  workspacePoolSize = 2,
): string[] {
  const live = new Set(
    sessions.filter((s) => s.state === 'running' || s.state === 'stopped').map((s) => s.id),
  );
  const owned = new Set<string>();
  const problems: string[] = [];
  const pool: string[] = [];
  // A live session's sandbox: by the host name it reported, else by its session label.
  const holder = new Map<string, string>();
  for (const s of sessions) {
    if (!live.has(s.id)) continue;
    // By host name first (Docker's is its container id: a claimed warm-pool member keeps its `pool` label),
    // else by session label (gVisor's host name is the image's).
    const found =
      (s.hostname
        ? [...census.sandboxes].find(([, c]) => c.runtimeId.startsWith(s.hostname ?? ''))
        : undefined) ?? [...census.sandboxes].find(([, c]) => c.session === s.id);
    if (found) holder.set(found[0], s.id);
    else problems.push(`live session ${s.id} has no sandbox`);
  }
  for (const [id, c] of census.sandboxes) {
    if (holder.has(id)) owned.add(id);
    else if (c.session === 'pool') pool.push(id);
    else problems.push(`sandbox ${id} (session label ${c.session ?? 'none'}) has no live session`);
  }
  if (pool.length > poolSize)
    problems.push(`${pool.length} unclaimed pool members, more than its size ${poolSize}`);
  for (const id of pool) owned.add(id);
  for (const id of census.images)
    if (!owned.has(id)) problems.push(`workspace image ${id}.img without a sandbox`);
  // The workspace pool owns its images up to its size; a half-made one is removed when the pool next fills.
  const ready = census.poolImages.filter((n) => n.startsWith('ready-'));
  if (ready.length > workspacePoolSize)
    problems.push(`${ready.length} ready workspace pool images, more than its size ${workspacePoolSize}`);
  for (const n of census.poolImages)
    if (!n.startsWith('ready-')) problems.push(`workspace pool file ${n} left half made`);
  for (const m of census.mounts) {
    if (!owned.has(sandboxIdOf(m))) problems.push(`mount ${m} without a sandbox`);
  }
  for (const [dev, file] of census.loops) {
    if (!owned.has(sandboxIdOf(file))) problems.push(`loop device ${dev} (${file}) without a sandbox`);
  }
  // Every mount of an owned workspace is backed by one loop device, and the reverse.
  const mounted = new Set(census.mounts.map(sandboxIdOf));
  const looped = [...census.loops.values()].map(sandboxIdOf);
  if (looped.length !== new Set(looped).size)
    problems.push(`a workspace image has two loop devices: ${looped}`);
  for (const id of looped) if (!mounted.has(id)) problems.push(`loop device of ${id} is not mounted`);
  return problems;
}

/** Polls `check` until it returns an empty list or `timeoutMs` passes; returns the last list. */
export async function settle(check: () => Promise<string[]>, timeoutMs: number): Promise<string[]> {
  const end = Date.now() + timeoutMs;
  let last = await check();
  while (last.length > 0 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 500));
    last = await check();
  }
  return last;
}
