import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { Store } from '@studio/db';
import { AppError } from '../core/errors.ts';

// An instance id names the sandboxes one API owns (label `studio.instance`): the reconciler adopts the ones its
// store knows and removes the rest after a grace period. Two APIs sharing an id would therefore remove each
// other's sandboxes, so the default is derived from the data directory (not the host name), and a claimed id
// is held by one process at a time.

const ID_FILE = 'instance-id';
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** The host-name default of earlier releases; kept by a data dir whose store still has its sessions. */
export function legacyInstanceId(host = hostname()): string {
  return `api-${host.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 50)}`;
}

/**
 * The instance id of the API whose data lives in `dataDir`: read from `<dataDir>/instance-id`, or made once and
 * written there. A data dir from before this file existed keeps the host-name id when its store still records
 * sessions under it (`hasLegacySessions`), so an upgrade never orphans running sandboxes.
 */
export async function dataDirInstanceId(
  dataDir: string,
  hasLegacySessions: (legacyId: string) => Promise<boolean>,
): Promise<string> {
  const file = join(dataDir, ID_FILE);
  try {
    const id = readFileSync(file, 'utf8').trim();
    if (!ID_PATTERN.test(id)) {
      throw new AppError('INPUT_INVALID', `${file} does not hold a valid instance id: delete it or fix it`);
    }
    return id;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const legacy = legacyInstanceId();
  const id = (await hasLegacySessions(legacy)) ? legacy : `api-${randomBytes(8).toString('hex')}`;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(file, `${id}\n`, { mode: 0o600 });
  return id;
}

interface LockOwner {
  pid: number;
  host: string;
  since: string;
}

/** Whether process `pid` of this host runs (EPERM: it does, as another user). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readOwner(path: string): LockOwner | undefined {
  try {
    const owner = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockOwner>;
    if (typeof owner.pid === 'number' && typeof owner.host === 'string') {
      return { pid: owner.pid, host: owner.host, since: String(owner.since ?? '') };
    }
  } catch {
    // unreadable or half-written: treated as stale below
  }
  return undefined;
}

/**
 * Takes the lock file `path` for this process, or throws INVALID_STATE naming who holds it and `fix`. A lock
 * left by a process of this host that no longer runs (a crash, kill -9) is taken over. Created atomically
 * (link of a complete file), so two processes starting together cannot both win. Returns the release function.
 */
export function acquireLock(path: string, what: string, fix: string): () => void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const me: LockOwner = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(temp, JSON.stringify(me), { mode: 0o600 });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(temp, path);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const owner = readOwner(path);
      const stale = owner === undefined || (owner.host === me.host && !isProcessAlive(owner.pid));
      if (!stale || attempt > 0) {
        const who = owner ? `process ${owner.pid} on ${owner.host} since ${owner.since}` : 'another process';
        throw new AppError('INVALID_STATE', `${what} is in use by ${who}: ${fix}`);
      }
      unlinkSync(path);
    }
  } finally {
    unlinkSync(temp);
  }
  return () => {
    const owner = readOwner(path);
    if (owner?.pid === me.pid && owner.host === me.host) unlinkSync(path);
  };
}

/** Options for {@link claimInstance}. */
export interface ClaimInstanceOptions {
  instanceId: string;
  /** Where host-wide locks live (a short runtime folder, e.g. /run/studio). */
  runtimeDir: string;
}

/**
 * Claims `instanceId` on this host for this process: refuses to start (INVALID_STATE) while another live
 * process holds it, whatever its data dir or store. Returns the release function.
 */
export function claimInstance(options: ClaimInstanceOptions): () => void {
  return acquireLock(
    join(options.runtimeDir, 'instances', `${options.instanceId}.lock`),
    `instance id ${options.instanceId}`,
    'give each Studio API its own STUDIO_DATA_DIR, or its own STUDIO_INSTANCE_ID',
  );
}

/**
 * Locks `dataDir` for this process (its embedded store must never be opened by two processes at once).
 * Returns the release function.
 */
export function lockDataDir(dataDir: string): () => void {
  return acquireLock(
    join(dataDir, 'api.lock'),
    `the data directory ${dataDir}`,
    'stop the other Studio API, or give this one its own STUDIO_DATA_DIR',
  );
}

/** Options for {@link leaseInstance}. */
export interface LeaseInstanceOptions {
  instanceId: string;
  dataDir: string;
  /** How long a heartbeat holds the id in the store (default 30 s); renewed every third of it. */
  leaseMs?: number;
  /** Called once if another process took the id over (this one stalled past its lease): stop reconciling. */
  onLost: (message: string) => void;
}

/** What the store offers for instance claims (@studio/db's Store). */
type InstanceStore = Pick<Store, 'claimInstance' | 'renewInstance' | 'releaseInstance'>;

/**
 * Claims `instanceId` in the store for this process and keeps the claim alive: APIs on several hosts sharing one
 * PostgreSQL cannot run under the same id (the host lock cannot see another host). Refuses (INVALID_STATE) while
 * a live holder has it; a holder of this host whose process is gone is taken over at once. Returns the release
 * function (stops the heartbeat, gives the id up).
 */
export async function leaseInstance(
  store: InstanceStore,
  options: LeaseInstanceOptions,
): Promise<() => Promise<void>> {
  const leaseMs = options.leaseMs ?? 30_000;
  const holder = `${hostname()}:${process.pid}:${randomBytes(6).toString('hex')}`;
  const claim = {
    id: options.instanceId,
    holder,
    host: hostname(),
    pid: process.pid,
    dataDir: options.dataDir,
    leaseMs,
  };
  let result = await store.claimInstance(claim);
  if (!result.ok && result.holder.host === hostname() && !isProcessAlive(result.holder.pid)) {
    result = await store.claimInstance({
      ...claim,
      replace: { host: result.holder.host, pid: result.holder.pid },
    });
  }
  if (!result.ok) {
    const h = result.holder;
    throw new AppError(
      'INVALID_STATE',
      `instance id ${options.instanceId} is in use by process ${h.pid} on ${h.host} (data dir ${h.dataDir}, last seen ${h.heartbeatAt.toISOString()}): give each Studio API its own STUDIO_INSTANCE_ID`,
    );
  }
  let lost = false;
  const timer = setInterval(
    () => {
      store.renewInstance(options.instanceId, holder).then(
        (kept) => {
          if (kept || lost) return;
          lost = true;
          clearInterval(timer);
          options.onLost(
            `instance id ${options.instanceId} was taken over by another process while this one stalled`,
          );
        },
        () => undefined, // the store is briefly unreachable: the next beat retries within the lease
      );
    },
    Math.max(1000, Math.floor(leaseMs / 3)),
  );
  timer.unref();
  return async () => {
    clearInterval(timer);
    if (!lost) await store.releaseInstance(options.instanceId, holder).catch(() => undefined);
  };
}
