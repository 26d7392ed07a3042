import type { AppRouter } from '@studio/client';
import type { inferRouterOutputs } from '@trpc/server';

// The event types come from the API's router, never a copy of them (types only, through @studio/client: nothing
// of the API is bundled).
type Streamed =
  inferRouterOutputs<AppRouter>['events']['subscribe'] extends AsyncIterable<infer T> ? T : never;

/** One streamed session event (events.subscribe), as documented in apps/api/README.md "Real time". */
export type SessionEvent = Streamed extends { data: infer D } ? D : never;

/** Who caused an event: a user, an API token, an agent; null for changes made inside the sandbox. */
export type Actor = NonNullable<SessionEvent['actor']>;

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
