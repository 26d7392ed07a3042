import type { FileChanges, FileWatch } from '@studio/isolation';
import type { Logger } from '../core/logger.ts';
import type { SessionManager } from '../sessions/session-manager.ts';
import type { EventBus } from './event-bus.ts';

/** Past this many paths in one batch, one `path: ''` event says "many changed: list again". */
const MAX_EVENTS_PER_BATCH = 32;
/** How long a path the API itself changed is not reported again by the sandbox's watch (its event exists). */
const OWN_CHANGE_MS = 2_000;
/** The agent's temporary files of a `writeFile` (`.studio-<pid>-<salt>.tmp`, renamed over the target at once). */
const AGENT_TEMP = /(^|\/)\.studio-[a-z0-9-]+\.tmp$/;
// C0, DEL and C1 controls; backslashes. A name with them is not reported (the tree lists it anyway).
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const BAD_CHARS = /[\u0000-\u001f\u007f-\u009f\\]/;

/**
 * Whether a path reported by a sandbox's watch may go into an event: it is sandbox output, so it is bounded
 * and relative, with no empty, `.` or `..` segments and no control characters. It is never used to open
 * anything here; clients that act on it go through the policy's path schemas like any other path.
 */
export function reportablePath(path: string): boolean {
  if (path.length === 0 || path.length > 4096 || BAD_CHARS.test(path)) return false;
  return path.split('/').every((s) => s !== '' && s !== '.' && s !== '..' && Buffer.byteLength(s) <= 255);
}

/** Whether `path` is one the API changed itself, or inside one (a tree it removed or renamed). */
function ownChange(own: Map<string, number>, path: string): boolean {
  for (const p of own.keys()) if (path === p || path.startsWith(`${p}/`)) return true;
  return false;
}

interface Entry {
  userId: string;
  refs: number;
  watch: FileWatch | undefined;
  starting: boolean;
  retry: NodeJS.Timeout | undefined;
  /** Paths the API changed recently → until when (ms) their sandbox reports are dropped. */
  own: Map<string, number>;
}

/** Options for {@link FileWatches}. */
export interface FileWatchesOptions {
  sessions: SessionManager;
  events: EventBus;
  logger: Logger;
  /** How soon a watch that ended or could not start is tried again while someone listens (ms); default 3 s. */
  retryMs?: number;
}

/**
 * Changes made inside sandboxes (by their processes: a shell, a build, an agent's exec) as `file.changed`
 * events with `op: 'changed'` and no actor. A session is watched only while someone subscribes to its events
 * (reference-counted); the watch is started again if it ends while they still listen (the sandbox restarted).
 * Changes the API made itself already have their event, with the actor, and are not repeated.
 */
export class FileWatches {
  readonly #o: FileWatchesOptions;
  readonly #entries = new Map<string, Entry>();
  #closed = false;

  constructor(options: FileWatchesOptions) {
    this.#o = options;
  }

  /** Watches `sessionId` (owned by `userId`) until the returned function is called. */
  acquire(userId: string, sessionId: string): () => void {
    let entry = this.#entries.get(sessionId);
    if (!entry) {
      entry = { userId, refs: 0, watch: undefined, starting: false, retry: undefined, own: new Map() };
      this.#entries.set(sessionId, entry);
    }
    entry.refs += 1;
    const held = entry;
    if (!held.watch && !held.starting && !held.retry) void this.#start(sessionId, held);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      held.refs -= 1;
      if (held.refs > 0) return;
      this.#stop(sessionId, held);
    };
  }

  /** The API changed these paths: their sandbox reports in the next moments are its own, already published. */
  noteOwnChange(sessionId: string, ...paths: string[]): void {
    const entry = this.#entries.get(sessionId);
    if (!entry) return;
    const until = Date.now() + OWN_CHANGE_MS;
    for (const p of paths) entry.own.set(p, until);
  }

  /** Stops every watch (shutdown). */
  close(): void {
    this.#closed = true;
    for (const [id, entry] of this.#entries) this.#stop(id, entry);
  }

  #stop(sessionId: string, entry: Entry): void {
    clearTimeout(entry.retry);
    entry.retry = undefined;
    entry.watch?.close();
    entry.watch = undefined;
    if (this.#entries.get(sessionId) === entry) this.#entries.delete(sessionId);
  }

  #live(sessionId: string, entry: Entry): boolean {
    return !this.#closed && entry.refs > 0 && this.#entries.get(sessionId) === entry;
  }

  #later(sessionId: string, entry: Entry): void {
    if (!this.#live(sessionId, entry) || entry.retry) return;
    entry.retry = setTimeout(() => {
      entry.retry = undefined;
      void this.#start(sessionId, entry);
    }, this.#o.retryMs ?? 3_000);
    entry.retry.unref();
  }

  async #start(sessionId: string, entry: Entry): Promise<void> {
    if (!this.#live(sessionId, entry) || entry.starting) return;
    entry.starting = true;
    try {
      const watch = await this.#o.sessions.withSandbox(
        entry.userId,
        sessionId,
        { actorId: entry.userId, ip: null, requestId: null },
        (sandbox) => sandbox.watchFiles((batch) => this.#publish(sessionId, entry, batch)),
        // Watching for an open page is not a use: it must neither wake a paused session nor keep it awake.
        { resume: false },
      );
      if (!this.#live(sessionId, entry)) {
        watch.close();
        return;
      }
      entry.watch = watch;
      void watch.ended.then(() => {
        if (entry.watch !== watch) return;
        entry.watch = undefined;
        this.#later(sessionId, entry);
      });
    } catch (error) {
      // Not running (stopped, being created) or the agent is away: try again while someone listens.
      this.#o.logger.debug('file watch not started', {
        sessionId,
        error: error instanceof Error ? error.message : String(error),
      });
      this.#later(sessionId, entry);
    } finally {
      entry.starting = false;
    }
  }

  #publish(sessionId: string, entry: Entry, batch: FileChanges): void {
    const now = Date.now();
    for (const [p, until] of entry.own) if (until <= now) entry.own.delete(p);
    const paths = new Set<string>();
    for (const c of batch.changes) {
      if (!reportablePath(c.path) || AGENT_TEMP.test(c.path) || ownChange(entry.own, c.path)) continue;
      paths.add(c.path);
    }
    if (batch.overflow || paths.size > MAX_EVENTS_PER_BATCH) {
      this.#o.events.publish(sessionId, null, { type: 'file.changed', op: 'changed', path: '' });
      return;
    }
    for (const path of paths)
      this.#o.events.publish(sessionId, null, { type: 'file.changed', op: 'changed', path });
  }
}
