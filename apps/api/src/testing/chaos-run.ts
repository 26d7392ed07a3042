import { createStudioClient, loginStudioClient, type StudioClient } from '@studio/client';
import { EventSource } from 'eventsource';
import { expect } from 'vitest';
import {
  type Census,
  type ChaosApi,
  type ChaosApiOptions,
  leaks,
  prng,
  type SessionState,
  settle,
  sigkill,
  startChaosApi,
} from './chaos.ts';

// The chaos run itself, shared by the Docker and gVisor files: rounds of "start the API, put it to work, kill -9
// it at a random moment of one operation", then one last start, the grace period, and the census.

/** The operations a kill lands in. `pause` is today's stop/start. */
export const KINDS = ['create', 'exec', 'write', 'destroy', 'pause'] as const;
type Kind = (typeof KINDS)[number];

// How long after an operation begins the kill may come (ms): about each one's duration here, so kills land
// before, inside and just after it.
const KILL_WITHIN: Record<Kind, number> = {
  create: 2500,
  exec: 400,
  write: 250,
  destroy: 1200,
  pause: 1800,
};

/** Options of {@link runChaos}. */
export interface ChaosOptions {
  api: Omit<ChaosApiOptions, 'adminPassword'>;
  image: string;
  poolSize: number;
  kills: number;
  /** The kill rounds must end within this (ms): a run that slow fails rather than holding the suite. */
  budgetMs: number;
  seed: number;
  census: () => Promise<Census>;
  /** Log lines of the run (the summary, failures), for the test to print. */
  log: (line: string) => void;
}

/** What the test asserts on. */
export interface ChaosResult {
  kills: number;
  summary: string;
  /** Sessions stuck in a transitional state, resources without a live session (empty: none). */
  problems: string[];
  /** Sessions failed although their create was confirmed and the test never destroyed them (with the reason). */
  wronglyFailed: string[];
  writes: { confirmed: number; lost: string[] };
  execs: { confirmed: number; unconfirmed: number; lost: string[]; ranTwice: string[]; streamed: number };
}

interface WriteRecord {
  session: string;
  path: string;
  content: string;
  confirmed: boolean;
}
interface ExecRecord {
  session: string;
  marker: string;
  streamed: boolean;
  confirmed: boolean;
}

const PASSWORD = 'chaos-admin-password-0123';
const ES = EventSource as never;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TRANSITIONAL = new Set(['creating', 'destroying', 'stopping', 'starting']);

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const rand = prng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const apiOptions: ChaosApiOptions = {
    ...o.api,
    adminPassword: PASSWORD,
    env: { STUDIO_WARM_POOL: String(o.poolSize), ...o.api.env },
  };
  const writes: WriteRecord[] = [];
  const execs: ExecRecord[] = [];
  const confirmedCreates = new Set<string>();
  const destroyAttempted = new Set<string>();
  const killedIn: Record<Kind, { n: number; pending: number; delays: number[] }> = {
    create: { n: 0, pending: 0, delays: [] },
    exec: { n: 0, pending: 0, delays: [] },
    write: { n: 0, pending: 0, delays: [] },
    destroy: { n: 0, pending: 0, delays: [] },
    pause: { n: 0, pending: 0, delays: [] },
  };
  let counter = 0;
  let token = '';
  const started = Date.now();

  const connect = async (api: ChaosApi): Promise<StudioClient> => {
    if (!token)
      token = (await loginStudioClient({ url: api.url, username: 'admin', password: PASSWORD })).token;
    return createStudioClient({ url: api.url, token, EventSource: ES });
  };
  const create = async (client: StudioClient): Promise<string> => {
    // Default resources: the warm pool's, so creates are claims as often as cold starts.
    const s = await client.sessions.create.mutate({ image: o.image });
    confirmedCreates.add(s.id);
    return s.id;
  };
  const write = async (client: StudioClient, session: string) => {
    const n = ++counter;
    const w: WriteRecord = {
      session,
      path: `chaos-w-${n}.txt`,
      content: `write ${n} ${o.seed}\n`,
      confirmed: false,
    };
    writes.push(w);
    await client.files.write.mutate({ sessionId: session, path: w.path, content: w.content });
    w.confirmed = true;
  };
  const execRun = async (client: StudioClient, session: string) => {
    const e: ExecRecord = {
      session,
      marker: `exec-${++counter}-${o.seed}`,
      streamed: false,
      confirmed: false,
    };
    execs.push(e);
    const r = await client.exec.run.mutate({ sessionId: session, command: appendMarker(e.marker) });
    if (r.exitCode === 0) e.confirmed = true;
  };
  // exec.start, then exec.stream until `exit`: confirmed only when `exit` says 0.
  // Ended at each kill: a stream's link would otherwise reconnect to the dead port for ever.
  const subs: (() => void)[] = [];
  const execStream = async (client: StudioClient, session: string) => {
    const e: ExecRecord = {
      session,
      marker: `exec-${++counter}-${o.seed}`,
      streamed: true,
      confirmed: false,
    };
    execs.push(e);
    const { execId, token: streamToken } = await client.exec.start.mutate({
      sessionId: session,
      command: appendMarker(e.marker),
    });
    await new Promise<void>((resolve, reject) => {
      if (killed) return reject(new Error('the API was killed'));
      const sub = client.exec.stream.subscribe(
        { execId, token: streamToken },
        {
          // Tracked events (`{ id, data }`): the id lets a reconnecting reader resume.
          onData: ({ data: event }) => {
            if (event.type === 'exit') {
              if (event.exitCode === 0) e.confirmed = true;
              resolve();
            }
          },
          onError: reject,
          onComplete: () => resolve(),
        },
      );
      subs.push(() => {
        sub.unsubscribe();
        reject(new Error('the API was killed'));
      });
    });
  };
  const listSessions = async (client: StudioClient): Promise<SessionState[]> =>
    (await client.sessions.list.query({ includeEnded: true })).map((s) => ({
      id: s.id,
      state: s.state,
      failureReason: s.failureReason,
    }));

  let kills = 0;
  let killed = false;
  let firstStarted = Date.now();
  while (kills < o.kills) {
    if (kills > 0 && Date.now() - firstStarted > o.budgetMs)
      throw new Error(`only ${kills} kills within ${o.budgetMs} ms`);
    const t0 = Date.now();
    const api = await startChaosApi(apiOptions);
    killed = false;
    const tStarted = Date.now();
    // The budget counts from the first start's end: that one also runs initdb.
    if (kills === 0) firstStarted = tStarted;
    const client = await connect(api);
    // Set the stage outside the kill window: stopped sessions started, at least two running.
    let sessions = await listSessions(client);
    for (const s of sessions.filter((x) => x.state === 'stopped')) {
      await client.sessions.start.mutate({ sessionId: s.id }).catch(() => undefined);
    }
    const running = (await listSessions(client)).filter((s) => s.state === 'running').map((s) => s.id);
    while (running.length < 2) running.push(await create(client));
    sessions = await listSessions(client);
    const live = sessions.filter((s) => ['creating', 'running', 'stopped'].includes(s.state)).length;

    const target = pick(running);
    const other = running.find((id) => id !== target) as string;
    // One write and one streamed exec confirmed before the kill window: each must outlive every later kill.
    await write(client, other).catch(() => undefined);
    await execStream(client, other).catch(() => undefined);
    const tStage = Date.now();
    const kind = KINDS[kills % KINDS.length] as Kind;
    let op: Promise<unknown>;
    switch (kind) {
      case 'create':
        op = live >= 4 ? Promise.resolve() : create(client);
        break;
      case 'exec':
        op = Promise.all([execStream(client, target), execRun(client, target)]);
        break;
      case 'write':
        op = Promise.all([write(client, target), write(client, target)]);
        break;
      case 'destroy':
        destroyAttempted.add(target);
        op = client.sessions.destroy.mutate({ sessionId: target });
        break;
      case 'pause':
        op = (async () => {
          await client.sessions.stop.mutate({ sessionId: target });
          await client.sessions.start.mutate({ sessionId: target });
        })();
        break;
    }
    let pending = true;
    let opError = '';
    op = op.then(
      () => {
        pending = false;
      },
      (error: unknown) => {
        pending = false;
        opError = (error as Error).message;
      },
    );
    // Traffic beside the operation, on another session: writes and execs (run and streamed) until the kill.
    const traffic = (async () => {
      while (!killed) {
        const step = pick(['write', 'run', 'stream'] as const);
        const p =
          step === 'write'
            ? write(client, other)
            : step === 'run'
              ? execRun(client, other)
              : execStream(client, other);
        await p.catch(() => undefined);
      }
    })();
    const delay = Math.floor(rand() * KILL_WITHIN[kind]);
    await sleep(delay);
    killed = true;
    // Read before the kill: in-flight calls fail (and settle) as the process goes.
    const midCall = pending;
    const failedBefore = opError;
    await sigkill(api);
    kills++;
    killedIn[kind].n++;
    killedIn[kind].delays.push(delay);
    if (midCall) killedIn[kind].pending++;
    for (const end of subs.splice(0)) end();
    await op;
    await traffic;
    for (const end of subs.splice(0)) end();
    if (process.env.CHAOS_VERBOSE)
      o.log(
        `round ${kills}: ${kind} killed at ${delay} ms (${midCall ? 'mid-call' : failedBefore ? `it had failed: ${failedBefore.slice(0, 120)}` : 'after it'}); start ${tStarted - t0} ms, stage ${tStage - tStarted} ms`,
      );
  }

  // The last start: reconciliation settles what the kills left, then the periodic passes after the grace period.
  const api = await startChaosApi(apiOptions);
  try {
    const client = await connect(api);
    // 1. No session may stay in a transitional state once start-up reconciliation has run.
    let sessions: SessionState[] = [];
    const stuckAfter = await settle(async () => {
      sessions = await listSessions(client);
      return sessions
        .filter((s) => TRANSITIONAL.has(s.state))
        .map((s) => `session ${s.id} stuck in ${s.state}`);
    }, 10_000);
    const wronglyFailed = sessions
      .filter((s) => s.state === 'failed' && confirmedCreates.has(s.id) && !destroyAttempted.has(s.id))
      .map((s) => `${s.id}: ${s.failureReason}`);
    for (const s of sessions) {
      if (s.state === 'failed' && /may be lost/.test(s.failureReason ?? '') && !wronglyFailed.includes(s.id))
        wronglyFailed.push(`${s.id}: ${s.failureReason}`);
    }

    // 2. What each live session's workspace holds (every write, every exec marker), and its sandbox's host name.
    const markers = new Map<string, number>();
    const present = new Map<string, string>();
    const hostnames = new Map<string, string>();
    for (const s of sessions.filter((x) => x.state === 'running' || x.state === 'stopped')) {
      if (s.state === 'stopped') await client.sessions.start.mutate({ sessionId: s.id });
      const r = await client.exec.run.mutate({
        sessionId: s.id,
        command: [
          'sh',
          '-c',
          'echo "H $(cat /etc/hostname)"; cat chaos-execs.log 2>/dev/null; for f in chaos-w-*.txt; do [ -e "$f" ] && printf "W %s %s\\n" "$f" "$(cat "$f")"; done; true',
        ],
      });
      for (const line of r.stdout.split('\n')) {
        if (line.startsWith('H ')) hostnames.set(s.id, line.slice(2).trim());
        else if (line.startsWith('W ')) {
          const [, path, ...rest] = line.split(' ');
          present.set(`${s.id}/${path}`, `${rest.join(' ')}\n`);
        } else if (line) markers.set(line, (markers.get(line) ?? 0) + 1);
      }
    }

    // 3. After the grace period, nothing of this instance without a live session (the pool's members aside).
    // The periodic passes (every second here) remove leftovers once seen for the grace period (1.5 s).
    await sleep(4_000);
    let census: Census | undefined;
    const leaked = await settle(async () => {
      sessions = (await listSessions(client)).map((s) => ({ ...s, hostname: hostnames.get(s.id) }));
      census = await o.census();
      return leaks(census, sessions, o.poolSize);
    }, 20_000);
    const problems = [...stuckAfter, ...leaked];
    const lost: string[] = [];
    for (const w of writes) {
      if (!w.confirmed || destroyAttempted.has(w.session)) continue;
      const got = present.get(`${w.session}/${w.path}`);
      if (got !== w.content)
        lost.push(`${w.session}/${w.path}: ${got === undefined ? 'missing' : 'changed'}`);
    }
    const lostExecs: string[] = [];
    const ranTwice: string[] = [];
    for (const e of execs) {
      const n = markers.get(e.marker) ?? 0;
      if (n > 1) ranTwice.push(`${e.marker} (${e.streamed ? 'streamed' : 'run'}) ran ${n} times`);
      if (e.confirmed && !destroyAttempted.has(e.session) && n !== 1)
        lostExecs.push(`${e.marker} (${e.streamed ? 'streamed' : 'run'}) ran ${n} times`);
    }
    const where = KINDS.map((k) => {
      const d = killedIn[k].delays;
      return `${k} ${killedIn[k].n} (${killedIn[k].pending} mid-call, ${Math.min(...d)}-${Math.max(...d)} ms)`;
    }).join(', ');
    const confirmedWrites = writes.filter((w) => w.confirmed).length;
    const confirmedExecs = execs.filter((e) => e.confirmed).length;
    const summary =
      `chaos seed ${o.seed}: ${kills} kill -9 in ${((Date.now() - started) / 1000).toFixed(0)} s — ${where}; ` +
      `writes ${confirmedWrites}/${writes.length} confirmed, ${lost.length} lost; ` +
      `execs ${confirmedExecs}/${execs.length} confirmed (${execs.filter((e) => e.streamed).length} streamed), ` +
      `${lostExecs.length} lost, ${ranTwice.length} twice; ` +
      `end: ${sessions.filter((s) => s.state === 'running' || s.state === 'stopped').length} live, ` +
      `${sessions.filter((s) => s.state === 'failed').length} failed, ${sessions.filter((s) => s.state === 'destroyed').length} destroyed, ` +
      `${census?.sandboxes.size ?? 0} sandboxes, ${census?.images.length ?? 0} images, ${census?.loops.size ?? 0} loops`;
    o.log(summary);
    return {
      kills,
      summary,
      problems,
      wronglyFailed,
      writes: { confirmed: confirmedWrites, lost },
      execs: {
        confirmed: confirmedExecs,
        unconfirmed: execs.length - confirmedExecs,
        lost: lostExecs,
        ranTwice,
        streamed: execs.filter((e) => e.streamed).length,
      },
    };
  } finally {
    // Leave nothing: destroy every session through the API, then stop it.
    try {
      const client = await connect(api);
      for (const s of await listSessions(client)) {
        if (s.state !== 'destroyed')
          await client.sessions.destroy.mutate({ sessionId: s.id }).catch(() => undefined);
      }
    } finally {
      api.child.kill('SIGTERM');
      await Promise.race([api.exited, sleep(15_000)]);
      await sigkill(api);
    }
  }
}

function appendMarker(marker: string): string[] {
  return ['sh', '-c', `echo ${marker} >> chaos-execs.log`];
}

/**
 * The chaos test's verdict, the same on every backend: at least `kills` kills, nothing left in a transitional state
 * or without a live session, no session wrongly failed, no confirmed write or exec lost, no exec run twice; and the
 * run proved something (a write and a streamed exec confirmed before every kill window, more inside them).
 */
export function expectCrashSafe(result: ChaosResult, kills: number): void {
  expect(result.kills).toBeGreaterThanOrEqual(kills);
  expect(result.problems, result.summary).toEqual([]);
  expect(result.wronglyFailed, result.summary).toEqual([]);
  expect(result.writes.lost, result.summary).toEqual([]);
  expect(result.execs.lost, result.summary).toEqual([]);
  expect(result.execs.ranTwice, result.summary).toEqual([]);
  expect(result.writes.confirmed).toBeGreaterThanOrEqual(kills);
  expect(result.execs.confirmed).toBeGreaterThanOrEqual(kills);
  expect(result.execs.streamed).toBeGreaterThanOrEqual(kills);
}
