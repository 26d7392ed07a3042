import { readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const ROOT = '/sys/fs/cgroup';

/** How often a sandbox's host cgroup hit its limits (counters start at 0 with every start). */
export interface LimitEvents {
  /** Processes of the sandbox (its kernel, gofer, stubs) killed by the memory cgroup's OOM killer. */
  oomKills: number;
  /** Forks refused by the pids cgroup. */
  pidsRefused: number;
}

async function read(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

function counter(text: string | undefined, key: string): number | undefined {
  if (text === undefined) return undefined;
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/**
 * The limit counters of the cgroup runsc made for a sandbox (`cgroupsPath`), cgroup v1 or v2. Readable
 * until `runsc delete` removes the cgroup, so a dead sandbox's cause is read before it is deleted.
 */
export async function limitEvents(cgroupsPath: string): Promise<LimitEvents | undefined> {
  const rel = cgroupsPath.replace(/^\/+/, '');
  const [v1Memory, v1Pids, v2Memory, v2Pids] = await Promise.all([
    read(join(ROOT, 'memory', rel, 'memory.oom_control')),
    read(join(ROOT, 'pids', rel, 'pids.events')),
    read(join(ROOT, rel, 'memory.events')),
    read(join(ROOT, rel, 'pids.events')),
  ]);
  const oomKills = counter(v1Memory, 'oom_kill') ?? counter(v2Memory, 'oom_kill');
  const pidsRefused = counter(v1Pids, 'max') ?? counter(v2Pids, 'max');
  if (oomKills === undefined && pidsRefused === undefined) return undefined;
  return { oomKills: oomKills ?? 0, pidsRefused: pidsRefused ?? 0 };
}

/** Memory the sandbox costs the host (what its limit applies to), less reclaimable file cache. */
export async function memoryUsage(cgroupsPath: string): Promise<number | undefined> {
  const rel = cgroupsPath.replace(/^\/+/, '');
  const v1 = await read(join(ROOT, 'memory', rel, 'memory.usage_in_bytes'));
  if (v1 !== undefined) {
    const stat = await read(join(ROOT, 'memory', rel, 'memory.stat'));
    return Math.max(0, Number(v1.trim()) - (counter(stat, 'total_inactive_file') ?? 0));
  }
  const v2 = await read(join(ROOT, rel, 'memory.current'));
  if (v2 !== undefined) {
    const stat = await read(join(ROOT, rel, 'memory.stat'));
    return Math.max(0, Number(v2.trim()) - (counter(stat, 'inactive_file') ?? 0));
  }
  return undefined;
}

/**
 * CPU time the sandbox cost the host, in nanoseconds: the host cgroup's own accounting (cgroup v1
 * `cpuacct.usage`, v2 `cpu.stat` `usage_usec`). runsc's own figure is its kernel's view of its tasks, which
 * over-counts (7.3 s of CPU reported in 5 s under a 1-CPU cap, issue 16); the cgroup is what the cap applies to.
 */
export async function cpuUsageNanos(cgroupsPath: string): Promise<number | undefined> {
  const rel = cgroupsPath.replace(/^\/+/, '');
  const v1 = await read(join(ROOT, 'cpuacct', rel, 'cpuacct.usage'));
  if (v1 !== undefined && /^\d+\s*$/.test(v1)) return Number(v1.trim());
  const usec = counter(await read(join(ROOT, rel, 'cpu.stat')), 'usage_usec');
  return usec === undefined ? undefined : usec * 1000;
}

/**
 * Sets the CPU quota of the cgroup runsc made for a sandbox (cgroup v1 `cpu.cfs_*`, else v2 `cpu.max`) and reads
 * it back. Throws when neither takes it: a sandbox must never run without its quota.
 */
export async function setCpuQuota(cgroupsPath: string, quota: number, period: number): Promise<void> {
  const rel = cgroupsPath.replace(/^\/+/, '');
  const v1 = join(ROOT, 'cpu', rel);
  try {
    await writeFile(join(v1, 'cpu.cfs_period_us'), String(period));
    await writeFile(join(v1, 'cpu.cfs_quota_us'), String(quota));
    if ((await read(join(v1, 'cpu.cfs_quota_us')))?.trim() === String(quota)) return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await writeFile(join(ROOT, rel, 'cpu.max'), `${quota} ${period}`);
  if ((await read(join(ROOT, rel, 'cpu.max')))?.trim() !== `${quota} ${period}`) {
    throw new Error(`the CPU quota of cgroup ${cgroupsPath} did not take`);
  }
}

/** The CPU quota of a sandbox's cgroup (`<quota> <period>` in microseconds, `max` for none), for tests. */
export async function cpuQuota(cgroupsPath: string): Promise<string | undefined> {
  const rel = cgroupsPath.replace(/^\/+/, '');
  const v1 = await read(join(ROOT, 'cpu', rel, 'cpu.cfs_quota_us'));
  if (v1 !== undefined) {
    const quota = Number(v1.trim());
    return quota < 0
      ? 'max'
      : `${quota} ${(await read(join(ROOT, 'cpu', rel, 'cpu.cfs_period_us')))?.trim()}`;
  }
  return (await read(join(ROOT, rel, 'cpu.max')))?.trim().replace(/^max .*/, 'max');
}

/** Removes a sandbox's cgroup directories that runsc left behind (only empty ones can go). */
export async function removeCgroups(cgroupsPath: string): Promise<void> {
  const rel = cgroupsPath.replace(/^\/+/, '');
  const controllers = [
    'memory',
    'pids',
    'cpu',
    'cpuacct',
    'cpuset',
    'devices',
    'freezer',
    'blkio',
    'systemd',
  ];
  await Promise.all([
    ...controllers.map((c) => rmdir(join(ROOT, c, rel)).catch(() => undefined)),
    rmdir(join(ROOT, rel)).catch(() => undefined),
  ]);
}
