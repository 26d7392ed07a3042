import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { IsolationError, SNAPSHOT_ID_PATTERN, type SnapshotInfo } from '@studio/isolation';

/** Where one snapshot's parts go while it is being made; see {@link SnapshotStore.begin}. */
export interface SnapshotDraft {
  /** The workspace image's copy (`LoopWorkspaces.copyOut` writes it). */
  readonly workspaceImage: string;
  /** A directory for the backend's saved memory (a runsc checkpoint image), empty until it writes there. */
  readonly memoryDir: string;
  /** Records the snapshot and makes it visible; what was written is then its content. */
  commit(info: Omit<SnapshotInfo, 'id' | 'bytes' | 'createdAt'>): Promise<SnapshotInfo>;
  /** Removes what was written. Safe after a commit (does nothing then). */
  abort(): Promise<void>;
}

/** A committed snapshot: its record and where its parts are. */
export interface StoredSnapshot {
  readonly info: SnapshotInfo;
  readonly workspaceImage: string;
  /** Undefined when the snapshot holds no memory. */
  readonly memoryDir: string | undefined;
}

const RECORD = 'snapshot.json';
const MAKING = '.making-';

/** Options for {@link SnapshotStore}. */
export interface SnapshotStoreOptions {
  /**
   * Where snapshots are kept instead of `<dataDir>/snapshots`: a directory every node of a cluster mounts (a
   * shared filesystem), so a snapshot taken on one node starts sessions on another.
   */
  root?: string | undefined;
  /**
   * Who writes here (the backend's instance id): snapshots being made are named with it, so {@link clean} on one
   * node of a shared directory never removes what another node is making.
   */
  owner?: string | undefined;
}

/**
 * Snapshots on the host's disk, one directory each under `<dataDir>/snapshots/` (or a shared `root`): a copy of
 * the workspace image, the backend's saved memory when it has any, and a record. A snapshot is made in a `.making-`
 * directory and renamed into place only when complete, so a crash never leaves a half snapshot that looks whole;
 * {@link clean} removes such leftovers. Directories are 0700: a snapshot holds a workspace and memory, which may
 * hold secrets.
 */
export class SnapshotStore {
  readonly #root: string;
  /** The prefix of this writer's snapshots in the making (and of its deletes in progress). */
  readonly #making: string;

  constructor(dataDir: string, options: SnapshotStoreOptions = {}) {
    this.#root = options.root ?? join(dataDir, 'snapshots');
    const owner = options.owner?.replace(/[^A-Za-z0-9_.-]/g, '_');
    this.#making = owner ? `${MAKING}${owner}-` : MAKING;
  }

  /** Starts a snapshot `id`; `ALREADY_EXISTS` when one has that id. */
  async begin(id: string): Promise<SnapshotDraft> {
    assertSnapshotId(id);
    await mkdir(this.#root, { recursive: true, mode: 0o700 });
    if (await exists(join(this.#root, id))) {
      throw new IsolationError('ALREADY_EXISTS', `snapshot ${id} exists: use a new snapshot id`);
    }
    const dir = join(this.#root, `${this.#making}${id}-${randomBytes(4).toString('hex')}`);
    await mkdir(dir, { mode: 0o700 });
    await mkdir(join(dir, 'memory'), { mode: 0o700 });
    let done = false;
    return {
      workspaceImage: join(dir, 'workspace.img'),
      memoryDir: join(dir, 'memory'),
      commit: async (fields) => {
        const info: SnapshotInfo = {
          ...fields,
          id,
          bytes: await diskBytes(dir),
          createdAt: new Date(),
        };
        if (!info.memory) await rm(join(dir, 'memory'), { recursive: true, force: true });
        await writeFile(join(dir, RECORD), `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 });
        try {
          await rename(dir, join(this.#root, id));
        } catch (error) {
          throw new IsolationError('ALREADY_EXISTS', `snapshot ${id} exists: use a new snapshot id`, {
            cause: error,
          });
        }
        done = true;
        return info;
      },
      abort: async () => {
        if (!done) await rm(dir, { recursive: true, force: true });
      },
    };
  }

  /** The snapshot `id`; `NOT_FOUND` when there is none. */
  async get(id: string): Promise<StoredSnapshot> {
    if (typeof id !== 'string' || !SNAPSHOT_ID_PATTERN.test(id)) throw notFound(id);
    const dir = join(this.#root, id);
    let info: SnapshotInfo;
    try {
      const raw = JSON.parse(await readFile(join(dir, RECORD), 'utf8')) as SnapshotInfo;
      info = { ...raw, createdAt: new Date(raw.createdAt) };
    } catch (error) {
      throw notFound(id, error);
    }
    return {
      info,
      workspaceImage: join(dir, 'workspace.img'),
      memoryDir: info.memory ? join(dir, 'memory') : undefined,
    };
  }

  /** Every committed snapshot, oldest first. */
  async list(): Promise<SnapshotInfo[]> {
    const names = (await readdir(this.#root).catch(() => [] as string[])).filter((n) =>
      SNAPSHOT_ID_PATTERN.test(n),
    );
    const out: SnapshotInfo[] = [];
    for (const name of names) {
      const found = await this.get(name).catch(() => undefined);
      if (found) out.push(found.info);
    }
    return out.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
  }

  /** Removes snapshot `id`. Idempotent. */
  async delete(id: string): Promise<void> {
    if (typeof id !== 'string' || !SNAPSHOT_ID_PATTERN.test(id)) return;
    // Renamed away first: a snapshot is either whole or gone, never half-deleted under its name.
    const doomed = join(this.#root, `${this.#making}deleting-${id}-${randomBytes(4).toString('hex')}`);
    try {
      await rename(join(this.#root, id), doomed);
    } catch {
      return;
    }
    await rm(doomed, { recursive: true, force: true });
  }

  /**
   * Removes what this writer's interrupted snapshots and deletes left behind (only its own, in a shared directory).
   * Only call when it is making none.
   */
  async clean(): Promise<string[]> {
    const names = (await readdir(this.#root).catch(() => [] as string[])).filter((n) =>
      n.startsWith(this.#making),
    );
    for (const name of names) await rm(join(this.#root, name), { recursive: true, force: true });
    return names;
  }
}

function assertSnapshotId(id: string): void {
  if (typeof id !== 'string' || !SNAPSHOT_ID_PATTERN.test(id)) {
    throw new IsolationError(
      'INVALID_INPUT',
      'a snapshot id must be "snp-" and 16 lowercase hex digits (newSnapshotId() makes one)',
    );
  }
}

function notFound(id: string, cause?: unknown): IsolationError {
  return new IsolationError('NOT_FOUND', `snapshot ${JSON.stringify(id).slice(0, 64)} not found`, { cause });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Bytes the directory's files take on disk (blocks, so a sparse image counts what it holds). */
async function diskBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await diskBytes(path);
    else total += ((await stat(path)).blocks ?? 0) * 512;
  }
  return total;
}
