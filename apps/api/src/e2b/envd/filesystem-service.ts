import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { type FileChanges, type FileWatch, isIsolationError, type Sandbox } from '@studio/isolation';
import { isCanonicalWorkspacePath } from '@studio/policy';
import { newId } from '../../core/ids.ts';
import { actorOf } from '../../realtime/event-bus.ts';
import { assertMayMutate } from '../../sessions/control.ts';
import { entryInfo } from './entry-info.ts';
import { callOf, type EnvdCall, type EnvdDeps } from './envd-context.ts';
import { EnvdError } from './envd-errors.ts';
import { toClientPath, toWorkspacePath } from './envd-paths.ts';
import { EventQueue } from './event-queue.ts';
import { EventType, type Filesystem } from './gen/filesystem/filesystem_pb.ts';
import { checkCallUser, keepAliveOf } from './process-service.ts';

/** A filesystem event as envd sends it (init shape). */
export interface WatchEvent {
  name: string;
  type: EventType;
  entry?: ReturnType<typeof entryInfo>;
}

/** Events a CreateWatcher watcher holds between two GetWatcherEvents; later ones are dropped. */
const POLLED_EVENTS_MAX = 4096;

/** A CreateWatcher watch, read by polling. */
interface PolledWatch {
  events: WatchEvent[];
  close(): void;
}

/**
 * The watches of one session (streams and polled), so that they can be bounded and all ended when the session
 * goes away.
 */
export class SessionWatches {
  readonly #active = new Set<() => void>();
  readonly polled = new Map<string, PolledWatch>();
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  get size(): number {
    return this.#active.size;
  }
  /** Registers a watch's closer; RESOURCE_EXHAUSTED past the bound. Returns the unregistering function. */
  add(close: () => void): () => void {
    if (this.#active.size >= this.#max) {
      throw new EnvdError(
        'RESOURCE_EXHAUSTED',
        `this sandbox already has ${this.#max} directory watches; stop one (WatchHandle.stop / RemoveWatcher) first`,
      );
    }
    this.#active.add(close);
    return () => this.#active.delete(close);
  }
  closeAll(): void {
    for (const close of [...this.#active]) close();
    this.#active.clear();
    this.polled.clear();
  }
}

export interface FilesystemServiceOptions {
  deps: EnvdDeps;
  watches(sessionId: string): SessionWatches;
  keepAliveMs: number;
}

/** The `filesystem.Filesystem` service, on Studio's sandboxes. */
export function filesystemService(options: FilesystemServiceOptions): ServiceImpl<typeof Filesystem> {
  const { deps } = options;
  const withSandbox = <T>(call: EnvdCall, fn: (s: Sandbox) => Promise<T>) =>
    deps.sessions.withSandbox(call.target.principal.userId, call.target.sessionId, call.audit, fn);
  const read = (context: HandlerContext) => {
    checkCallUser(context);
    return callOf(context);
  };
  const mutation = async (context: HandlerContext) => {
    const call = read(context);
    await assertMayMutate(deps.store, call.target.principal, call.target.sessionId);
    return call;
  };
  const notRoot = (relative: string, what: string) => {
    if (relative === '')
      throw new EnvdError('INVALID_ARGUMENT', `cannot ${what} the workspace directory itself`);
    return relative;
  };
  const changed = (call: EnvdCall, op: 'mkdir' | 'remove' | 'rename', path: string, to?: string) =>
    deps.events.publish(call.target.sessionId, actorOf(call.target.principal), {
      type: 'file.changed',
      op,
      path,
      ...(to === undefined ? {} : { to }),
    });

  /** Watches `relative` (a directory) in the sandbox; events go to `onEvent` until the returned watch closes. */
  async function watch(
    call: EnvdCall,
    requested: string,
    recursive: boolean,
    includeEntry: boolean,
    onEvent: (event: WatchEvent) => void,
  ): Promise<FileWatch> {
    const relative = toWorkspacePath(requested);
    return withSandbox(call, async (sandbox) => {
      const stat = await sandbox.stat(relative);
      if (stat.type !== 'directory') {
        throw new EnvdError('INVALID_ARGUMENT', `${toClientPath(relative)} is not a directory`);
      }
      const prefix = relative === '' ? '' : `${relative}/`;
      // Batches are handled one after another, so events keep their order even though each may stat.
      let chain = Promise.resolve();
      const onBatch = (batch: FileChanges) => {
        chain = chain.then(async () => {
          for (const change of batch.changes) {
            if (!isCanonicalWorkspacePath(change.path) || !change.path.startsWith(prefix)) continue;
            const name = change.path.slice(prefix.length);
            if (name === '' || (!recursive && name.includes('/'))) continue;
            let entry: WatchEvent['entry'];
            let type = EventType.WRITE;
            if (change.kind === 'rename' || includeEntry) {
              const now = await sandbox.stat(change.path).catch(() => undefined);
              if (change.kind === 'rename') type = now ? EventType.CREATE : EventType.REMOVE;
              if (now && includeEntry) entry = entryInfo(change.path, now);
            }
            onEvent({ name, type, ...(entry ? { entry } : {}) });
          }
        });
      };
      return sandbox.watchFiles(onBatch);
    });
  }

  return {
    async stat(request, context) {
      const call = read(context);
      const relative = toWorkspacePath(request.path);
      const entry = await withSandbox(call, (s) => s.stat(relative));
      return { entry: entryInfo(relative, entry) };
    },

    async makeDir(request, context) {
      const call = await mutation(context);
      const relative = notRoot(toWorkspacePath(request.path), 'create');
      const entry = await withSandbox(call, async (s) => {
        const existing = await s.stat(relative).catch((error: unknown) => {
          if (isIsolationError(error, 'NOT_FOUND')) return undefined;
          throw error;
        });
        // The SDK's makeDir answers false for AlreadyExists.
        if (existing) throw new EnvdError('ALREADY_EXISTS', `${toClientPath(relative)} already exists`);
        deps.fileWatches.noteOwnChange(call.target.sessionId, relative);
        await s.mkdir(relative, { recursive: true });
        return s.stat(relative);
      });
      changed(call, 'mkdir', relative);
      return { entry: entryInfo(relative, entry) };
    },

    async move(request, context) {
      const call = await mutation(context);
      const from = notRoot(toWorkspacePath(request.source), 'move');
      const to = notRoot(toWorkspacePath(request.destination), 'replace');
      if (to === from || to.startsWith(`${from}/`)) {
        throw new EnvdError('INVALID_ARGUMENT', 'cannot move a path onto itself or into itself');
      }
      const entry = await withSandbox(call, async (s) => {
        deps.fileWatches.noteOwnChange(call.target.sessionId, from, to);
        const parent = to.includes('/') ? to.slice(0, to.lastIndexOf('/')) : '';
        // envd creates the destination's parents.
        if (parent !== '') await s.mkdir(parent, { recursive: true });
        await s.rename(from, to);
        return s.stat(to);
      });
      changed(call, 'rename', from, to);
      return { entry: entryInfo(to, entry) };
    },

    async listDir(request, context) {
      const call = read(context);
      const relative = toWorkspacePath(request.path);
      const depth = Math.max(1, request.depth);
      const max = deps.policy.files.maxListEntries;
      const entries = await withSandbox(call, async (s) => {
        const root = await s.stat(relative);
        if (root.type !== 'directory') {
          throw new EnvdError('INVALID_ARGUMENT', `${toClientPath(relative)} is not a directory`);
        }
        const out: ReturnType<typeof entryInfo>[] = [];
        // Breadth first, so a listing cut by the bound fails before it walks the whole tree.
        let level = [relative];
        for (let d = 1; d <= depth && level.length > 0; d++) {
          const next: string[] = [];
          for (const dir of level) {
            const list = await s.list(dir, { maxEntries: max });
            for (const e of list) {
              const path = dir === '' ? e.name : `${dir}/${e.name}`;
              out.push(entryInfo(path, e));
              if (out.length > max) {
                throw new EnvdError(
                  'RESOURCE_EXHAUSTED',
                  `more than ${max} entries under ${toClientPath(relative)}; list a smaller depth or a narrower directory`,
                );
              }
              if (e.type === 'directory') next.push(path);
            }
          }
          level = next;
        }
        return out;
      });
      return { entries };
    },

    async remove(request, context) {
      const call = await mutation(context);
      const relative = notRoot(toWorkspacePath(request.path), 'remove');
      await withSandbox(call, async (s) => {
        deps.fileWatches.noteOwnChange(call.target.sessionId, relative);
        await s.remove(relative, { recursive: true });
      });
      changed(call, 'remove', relative);
      return {};
    },

    async *watchDir(request, context) {
      const call = read(context);
      const queue = new EventQueue<WatchEvent>(1024 * 1024);
      const watches = options.watches(call.target.sessionId);
      const unregister = watches.add(() => queue.end());
      let fileWatch: FileWatch | undefined;
      try {
        fileWatch = await watch(call, request.path, request.recursive, request.includeEntry, (event) =>
          queue.push(event, 128 + event.name.length),
        );
        void fileWatch.ended.then(() => queue.end());
        const keepAliveMs = keepAliveOf(context, options.keepAliveMs);
        yield { event: { case: 'start', value: {} } };
        for (;;) {
          const next = await queue.next(keepAliveMs, context.signal);
          if (next === 'end') return;
          if (next === 'idle') yield { event: { case: 'keepalive', value: {} } };
          else yield { event: { case: 'filesystem', value: next.item } };
        }
      } finally {
        unregister();
        fileWatch?.close();
        queue.close();
      }
    },

    async createWatcher(request, context) {
      const call = read(context);
      const watches = options.watches(call.target.sessionId);
      const id = newId('wat_');
      const polled: PolledWatch = { events: [], close: () => undefined };
      const unregister = watches.add(() => polled.close());
      try {
        const fileWatch = await watch(
          call,
          request.path,
          request.recursive,
          request.includeEntry,
          (event) => {
            // Past the bound, events wait for nobody: a poller that stays away loses the newest.
            if (polled.events.length < POLLED_EVENTS_MAX) polled.events.push(event);
          },
        );
        polled.close = () => {
          fileWatch.close();
          unregister();
          watches.polled.delete(id);
        };
        watches.polled.set(id, polled);
      } catch (error) {
        unregister();
        throw error;
      }
      return { watcherId: id };
    },

    async getWatcherEvents(request, context) {
      const call = read(context);
      const polled = options.watches(call.target.sessionId).polled.get(request.watcherId);
      if (!polled) throw new EnvdError('NOT_FOUND', `watcher ${request.watcherId} not found`);
      return { events: polled.events.splice(0) };
    },

    async removeWatcher(request, context) {
      const call = read(context);
      const polled = options.watches(call.target.sessionId).polled.get(request.watcherId);
      if (!polled) throw new EnvdError('NOT_FOUND', `watcher ${request.watcherId} not found`);
      polled.close();
      return {};
    },
  };
}
