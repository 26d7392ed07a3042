import { describe, expect, it } from 'vitest';
import {
  type Actor,
  actorLabel,
  describeEvent,
  eventActorLabel,
  eventLines,
  type SessionEvent,
} from './events.ts';

// What the activity feed says for each event: text only, built from the event's fields.

const me = { id: 'usr_me', username: 'alice' };
const base = { id: 'e-1', sessionId: 'ses_0123456789abcdefgh', at: '2025-01-01T00:00:00.000Z' };
const sandbox: Actor = { kind: 'sandbox', userId: 'usr_me', name: 'alice' };
const event = (fields: Record<string, unknown>) => ({ ...base, actor: null, ...fields }) as SessionEvent;

describe('actorLabel', () => {
  it('names people, tokens and agents, and the sandbox even though it carries the owner id', () => {
    expect(actorLabel({ kind: 'user', userId: 'usr_me', name: 'alice' }, me)).toBe('you');
    expect(actorLabel({ kind: 'user', userId: 'usr_b', name: 'bob' }, me)).toBe('bob');
    expect(actorLabel({ kind: 'agent', userId: 'usr_me', name: 'alice' }, me)).toBe('agent (alice)');
    expect(actorLabel({ kind: 'token', userId: 'usr_me', name: 'alice' }, me)).toBe('API token (alice)');
    expect(actorLabel(sandbox, me)).toBe('the sandbox');
    expect(actorLabel(null, me)).toBe('the sandbox');
  });
});

describe('describeEvent', () => {
  const egress = {
    type: 'egress',
    via: 'connect',
    host: 'registry.npmjs.org',
    port: 443,
    allowed: true,
    reason: null,
    message: null,
    bytesOut: 1024,
    bytesIn: 12_288,
    durationMs: 840,
    actor: sandbox,
  };

  it('an allowed connection: where to and how much came back', () => {
    expect(describeEvent(event(egress))).toBe('→ registry.npmjs.org:443 allowed, 12.0 KiB ↓ 1.0 KiB ↑');
  });

  it('an allowed connection that carried secrets: their names, never a value', () => {
    const api = { ...egress, host: 'api.example.com', secrets: ['API_KEY'] };
    expect(describeEvent(event(api))).toBe(
      '→ api.example.com:443 allowed, with API_KEY, 12.0 KiB ↓ 1.0 KiB ↑',
    );
    expect(describeEvent(event({ ...api, secrets: ['API_KEY', 'GITHUB_TOKEN'] }))).toBe(
      '→ api.example.com:443 allowed, with API_KEY and GITHUB_TOKEN, 12.0 KiB ↓ 1.0 KiB ↑',
    );
    expect(describeEvent(event({ ...api, secrets: [] }))).toBe(
      '→ api.example.com:443 allowed, 12.0 KiB ↓ 1.0 KiB ↑',
    );
  });

  it('a refused connection: where to and why, in a few words', () => {
    const denied = {
      ...egress,
      host: 'example.com',
      allowed: false,
      reason: 'not_allowed',
      message: "example.com is not on this session's allowlist; add it with sessions.setNetwork",
      bytesIn: 0,
      bytesOut: 0,
    };
    expect(describeEvent(event(denied))).toBe('→ example.com:443 denied: not in the allowlist');
    expect(describeEvent(event({ ...denied, reason: 'mode_none' }))).toBe(
      '→ example.com:443 denied: the session has no network (mode none)',
    );
    expect(describeEvent(event({ ...denied, reason: 'something_new' }))).toBe(
      '→ example.com:443 denied: something_new',
    );
    expect(describeEvent(event({ ...denied, host: '2001:db8::1', reason: 'ip_literal' }))).toBe(
      '→ [2001:db8::1]:443 denied: an IP address not in the allowlist',
    );
  });

  it('a network change: the mode, and a short allowlist', () => {
    expect(describeEvent(event({ type: 'network.changed', mode: 'none', allow: [] }))).toBe(
      'set the network to none',
    );
    expect(
      describeEvent(
        event({ type: 'network.changed', mode: 'allowlist', allow: ['registry.npmjs.org', '*.pypi.org'] }),
      ),
    ).toBe('set the network to allowlist: registry.npmjs.org, *.pypi.org');
    expect(
      describeEvent(event({ type: 'network.changed', mode: 'allowlist', allow: ['a', 'b', 'c', 'd', 'e'] })),
    ).toBe('set the network to allowlist: a, b, c, d … (+1 more)');
  });

  it("a pause, a resume and a fork: the state, why when Studio did it, and the fork's id", () => {
    const user = { kind: 'user', userId: 'usr_me', name: 'alice' };
    const paused = event({ type: 'session.status', state: 'paused', actor: user });
    expect(describeEvent(paused)).toBe('session is paused');
    expect(eventActorLabel(paused, me)).toBe('you');
    const idle = event({
      type: 'session.status',
      state: 'paused',
      reason: 'paused after being idle; any use resumes it',
    });
    expect(describeEvent(idle)).toBe('session is paused: paused after being idle; any use resumes it');
    expect(eventActorLabel(idle, me)).toBe('Studio');
    expect(describeEvent(event({ type: 'session.status', state: 'running', reason: 'resumed on use' }))).toBe(
      'session is running: resumed on use',
    );
    const forked = event({ type: 'session.forked', forkId: 'ses_fork', actor: user });
    expect(describeEvent(forked)).toBe('forked it into ses_fork');
    // Files changed inside the sandbox have no actor either: those are the sandbox's.
    expect(eventActorLabel(event({ type: 'file.changed', op: 'changed', path: '' }), me)).toBe('the sandbox');
  });

  it('keeps the existing events as they were, and leaves out what it does not know', () => {
    expect(describeEvent(event({ type: 'file.changed', op: 'write', path: 'a.txt' }))).toBe('wrote a.txt');
    expect(describeEvent(event({ type: 'control.taken' }))).toBe('took control');
    expect(
      describeEvent(event({ type: 'exec.output', execId: 'x', stream: 'stdout', data: 'hi' })),
    ).toBeNull();
  });
});

describe('eventLines', () => {
  it('turns what was run into console lines, the same for history and live events', () => {
    const run = [
      event({ type: 'exec.started', execId: 'x', command: ['sh', '-c', 'echo hi'] }),
      event({ type: 'exec.output', execId: 'x', stream: 'stdout', data: 'hi\n', truncated: false }),
      event({ type: 'exec.output', execId: 'x', stream: 'stderr', data: 'oops', truncated: false }),
      event({
        type: 'exec.exited',
        execId: 'x',
        exitCode: null,
        signal: 'SIGKILL',
        timedOut: true,
        cancelled: false,
      }),
    ];
    expect(run.flatMap(eventLines)).toEqual([
      { kind: 'info', text: '$ sh -c echo hi' },
      { kind: 'stdout', text: 'hi' },
      { kind: 'stderr', text: 'oops' },
      { kind: 'info', text: '[exit SIGKILL, timed out]' },
    ]);
  });

  it('notes status, control, network, refused connections and gaps; leaves out the rest', () => {
    expect(eventLines(event({ type: 'session.status', state: 'stopped', reason: 'out of memory' }))).toEqual([
      { kind: 'info', text: '[session.status: stopped (out of memory)]' },
    ]);
    expect(eventLines(event({ type: 'control.taken' }))).toEqual([{ kind: 'info', text: '[control.taken]' }]);
    expect(eventLines(event({ type: 'network.changed', mode: 'open', allow: [] }))).toEqual([
      { kind: 'info', text: '[network.changed: open]' },
    ]);
    expect(eventLines(event({ type: 'gap', missed: null }))).toEqual([
      { kind: 'info', text: '[missed some events]' },
    ]);
    const egress = {
      type: 'egress',
      via: 'connect',
      host: 'example.com',
      port: 443,
      allowed: false,
      reason: 'not_allowed',
      message: null,
      bytesOut: 0,
      bytesIn: 0,
      durationMs: 1,
      secrets: [],
    };
    expect(eventLines(event(egress))).toEqual([
      { kind: 'info', text: '[egress → example.com:443 denied: not in the allowlist]' },
    ]);
    expect(eventLines(event({ ...egress, allowed: true, reason: null }))).toEqual([]);
    expect(eventLines(event({ type: 'file.changed', op: 'write', path: 'a' }))).toEqual([]);
    expect(eventLines(event({ type: 'watcher.joined', watcherId: 'w', via: 'events' }))).toEqual([]);
  });
});
