import type { AppRouter } from '@studio/client';
import type { inferRouterOutputs } from '@trpc/server';
import { formatBytes } from '../../lib/file-types';
import { listBrief } from '../../lib/network';
import { secretNames } from '../../lib/secrets';

// The event types come from the API's router, never a copy of them (types only, through @studio/client: nothing
// of the API is bundled).
type Streamed =
  inferRouterOutputs<AppRouter>['events']['subscribe'] extends AsyncIterable<infer T> ? T : never;

/** One streamed session event (events.subscribe), as documented in apps/api/README.md "Real time". */
export type SessionEvent = Streamed extends { data: infer D } ? D : never;

/**
 * Who caused an event: a user, an API token, an agent, or the sandbox itself (a connection a program in it made:
 * kind `sandbox`); null for files changed inside the sandbox.
 */
export type Actor = NonNullable<SessionEvent['actor']>;

/** An `egress` event: one connection a program in the sandbox made through the proxy. */
export type EgressEvent = Extract<SessionEvent, { type: 'egress' }>;

/** "you", "alice", "API token ci", "agent claude", "the sandbox" … */
export function actorLabel(
  actor: Actor | null | undefined,
  me: { id: string; username: string } | undefined,
): string {
  // The sandbox's actor carries the owner's id: it must not read as "you".
  if (!actor || actor.kind === 'sandbox') return 'the sandbox';
  // API tokens act for their owner: the actor's name is the owner's username.
  if (actor.kind === 'agent') return `agent (${actor.name})`;
  if (actor.kind === 'token') return `API token (${actor.name})`;
  if (me && actor.userId === me.id) return 'you';
  return actor.name;
}

/**
 * Who an event names in the activity feed: as {@link actorLabel}, except that a status change without an actor is
 * Studio's own (a session paused while idle, resumed on use, or failed), not the sandbox's.
 */
export function eventActorLabel(e: SessionEvent, me: { id: string; username: string } | undefined): string {
  if (!e.actor && e.type === 'session.status') return 'Studio';
  return actorLabel(e.actor as Actor | null, me);
}

// Why the egress proxy refused, in a few words (the event's `message` has the whole story and the fix).
const EGRESS_REASONS: Record<string, string> = {
  mode_none: 'the session has no network (mode none)',
  open_not_permitted: 'open network is not permitted on this server',
  not_allowed: 'not in the allowlist',
  port_not_allowed: 'port not in the allowlist',
  ip_literal: 'an IP address not in the allowlist',
  local_name: 'a local name',
  private_address: 'resolves to a private address',
  own_address: 'the Studio server itself',
  resolve_failed: 'the name did not resolve',
  sni_mismatch: 'TLS name does not match the host',
  host_mismatch: 'Host header does not match the host',
  not_tls: 'not TLS',
  bad_request: 'malformed request',
  connection_limit: 'too many connections',
  byte_limit: 'byte limit reached',
  rate_limit: 'too many connections a minute',
  upstream_failed: 'the host did not answer',
};

/** `example.com:443`, `[2001:db8::1]:443`. */
function target(e: EgressEvent): string {
  return `${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`;
}

/**
 * "→ registry.npmjs.org:443 allowed, 12.0 KiB ↓ 1.0 KiB ↑", "→ api.openai.com:443 allowed, with OPENAI_API_KEY, …"
 * (the names of the secrets the proxy put into its requests; never a value) / "→ example.com:443 denied: not in the
 * allowlist".
 */
export function describeEgress(e: EgressEvent): string {
  if (!e.allowed) {
    const why = (e.reason && EGRESS_REASONS[e.reason]) ?? e.reason ?? e.message ?? 'refused';
    return `→ ${target(e)} denied: ${why}`;
  }
  // Events recorded before secrets existed have no `secrets` field.
  const secrets = e.secrets ?? [];
  const carried = secrets.length > 0 ? ` with ${secretNames(secrets)},` : '';
  // An allowed connection that ended badly (limits, an upstream failure) still carries its reason.
  const ended = e.reason ? ` (ended: ${EGRESS_REASONS[e.reason] ?? e.reason})` : '';
  return `→ ${target(e)} allowed,${carried} ${formatBytes(e.bytesIn)} ↓ ${formatBytes(e.bytesOut)} ↑${ended}`;
}

/** What an event says after its actor's name in the activity feed; null for events the feed leaves out. */
export function describeEvent(e: SessionEvent): string | null {
  switch (e.type) {
    case 'file.changed':
      if (e.op === 'changed') return e.path === '' ? 'changed many files' : `changed ${e.path}`;
      return e.op === 'rename'
        ? `renamed ${e.path} → ${e.to ?? '?'}`
        : `${e.op === 'write' ? 'wrote' : e.op === 'mkdir' ? 'created folder' : 'removed'} ${e.path}`;
    case 'exec.started':
      return `ran ${e.command.join(' ')}`;
    case 'exec.exited':
      return `command finished (exit ${e.exitCode ?? e.signal ?? '?'}${e.timedOut ? ', timed out' : ''})`;
    case 'session.status':
      // Studio's own changes say why: "paused after being idle; any use resumes it", "resumed on use".
      return e.reason ? `session is ${e.state}: ${e.reason}` : `session is ${e.state}`;
    case 'session.forked':
      return `forked it into ${e.forkId}`;
    case 'control.taken':
      return 'took control';
    case 'control.released':
      return 'released control';
    case 'watcher.joined':
      return `started watching (${e.via})`;
    case 'watcher.left':
      return `stopped watching (${e.via})`;
    case 'egress':
      return describeEgress(e);
    case 'network.changed':
      return e.mode === 'allowlist'
        ? `set the network to allowlist: ${listBrief(e.allow)}`
        : `set the network to ${e.mode}`;
    case 'gap':
      return `missed ${e.missed ?? 'some'} events`;
    default:
      return null;
  }
}

/** One console line an event becomes (before it gets its list id). */
export interface EventLine {
  kind: 'stdout' | 'stderr' | 'info';
  text: string;
}

/**
 * What an event adds to the console: the commands run (`$ …`), their output and exit, status and network changes,
 * refused connections, missed events. The same for events read from history and live ones, so a session opened
 * later shows what its console showed then.
 */
export function eventLines(event: SessionEvent): EventLine[] {
  switch (event.type) {
    case 'exec.started':
      return [{ kind: 'info', text: `$ ${event.command.join(' ')}` }];
    case 'exec.output':
      return [{ kind: event.stream, text: event.data.replace(/\n$/, '') }];
    case 'exec.exited':
      return [
        {
          kind: 'info',
          text: `[exit ${event.exitCode ?? event.signal ?? '?'}${event.timedOut ? ', timed out' : ''}]`,
        },
      ];
    case 'control.taken':
    case 'control.released':
      return [{ kind: 'info', text: `[${event.type}]` }];
    case 'session.status':
      return [
        { kind: 'info', text: `[session.status: ${event.state}${event.reason ? ` (${event.reason})` : ''}]` },
      ];
    case 'session.forked':
      return [{ kind: 'info', text: `[session.forked: ${event.forkId}]` }];
    case 'network.changed':
      return [{ kind: 'info', text: `[network.changed: ${event.mode}]` }];
    case 'egress':
      // A refused connection is why a command run here fails: say so beside its output.
      return event.allowed ? [] : [{ kind: 'info', text: `[egress ${describeEgress(event)}]` }];
    case 'gap':
      return [{ kind: 'info', text: `[missed ${event.missed ?? 'some'} events]` }];
    default:
      return [];
  }
}
