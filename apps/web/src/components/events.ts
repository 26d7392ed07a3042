/** One streamed session event (events.subscribe), as documented in apps/api/README.md "Real time". */
export type SessionEvent = {
  id: string;
  sessionId: string;
  at: string;
  actor: Actor | null;
} /** `changed`: by a process inside the sandbox (no actor); `path: ''`: many at once, list again. */ & (
  | {
      type: 'file.changed';
      op: 'write' | 'mkdir' | 'remove' | 'rename' | 'changed';
      path: string;
      to?: string;
    }
  | { type: 'exec.started'; execId: string; command: string[] }
  | { type: 'exec.output'; execId: string; stream: 'stdout' | 'stderr'; data: string; truncated: boolean }
  | {
      type: 'exec.exited';
      execId: string;
      exitCode: number | null;
      signal: string | null;
      timedOut: boolean;
      cancelled: boolean;
    }
  | { type: 'session.status'; state: string }
  | { type: 'control.taken' | 'control.released' }
  | { type: 'watcher.joined' | 'watcher.left'; watcherId: string; via: 'events' | 'terminal' }
  | { type: 'gap'; missed: number | null }
);

export type Actor = { kind: 'user' | 'token' | 'agent'; userId: string; tokenId?: string; name: string };

/** "you", "alice", "API token ci", "agent claude" … */
export function actorLabel(
  actor: Actor | null | undefined,
  me: { id: string; username: string } | undefined,
): string {
  if (!actor) return 'the sandbox';
  // API tokens act for their owner: the actor's name is the owner's username.
  if (actor.kind === 'agent') return `agent (${actor.name})`;
  if (actor.kind === 'token') return `API token (${actor.name})`;
  if (me && actor.userId === me.id) return 'you';
  return actor.name;
}
