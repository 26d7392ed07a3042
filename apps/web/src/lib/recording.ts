// A session's recording in the browser (docs/recording.md): asciicast v2 casts parsed for the replay player,
// and the event log turned into a timeline of who did what.

/** One entry of a cast: output (`o`) or a resize (`r`, "COLSxROWS"), `t` seconds from its start. */
export interface CastEvent {
  t: number;
  kind: 'o' | 'r';
  data: string;
}

/** A parsed asciicast v2 file. */
export interface Cast {
  width: number;
  height: number;
  /** Unix seconds when it started, when the header says. */
  timestamp: number | null;
  title: string | null;
  events: CastEvent[];
  /** Seconds to its last entry. */
  duration: number;
}

// Sizes the replay terminal accepts (the API's own ceilings: a cast is only replayed within them).
const MAX_COLS = 500;
const MAX_ROWS = 200;
const clamp = (n: number, max: number) => Math.min(Math.max(Math.trunc(n) || 1, 1), max);

/** Parses an asciicast v2 file; throws an Error naming what is wrong when it is not one. */
export function parseCast(text: string): Cast {
  const lines = text.split('\n');
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
  } catch {
    throw new Error('this file is not an asciicast: its first line is not JSON');
  }
  if (header.version !== 2) throw new Error('this file is not asciicast version 2');
  const events: CastEvent[] = [];
  for (const line of lines.slice(1)) {
    if (line.trim() === '') continue;
    let entry: unknown;
    try {
      entry = JSON.parse(line);
    } catch {
      continue; // a line cut short (a crash mid-write) is skipped, the rest still plays
    }
    if (!Array.isArray(entry) || entry.length < 3) continue;
    const [t, kind, data] = entry as [unknown, unknown, unknown];
    if (typeof t !== 'number' || !Number.isFinite(t) || typeof data !== 'string') continue;
    if (kind === 'o' || kind === 'r') events.push({ t: Math.max(0, t), kind, data });
  }
  events.sort((a, b) => a.t - b.t);
  return {
    width: clamp(Number(header.width), MAX_COLS),
    height: clamp(Number(header.height), MAX_ROWS),
    timestamp: typeof header.timestamp === 'number' ? header.timestamp : null,
    title: typeof header.title === 'string' ? header.title : null,
    events,
    duration: events.at(-1)?.t ?? 0,
  };
}

/** A resize entry's size, within the replay terminal's bounds; undefined when malformed. */
export function parseSize(data: string): { cols: number; rows: number } | undefined {
  const m = /^(\d{1,4})x(\d{1,4})$/.exec(data);
  if (!m) return undefined;
  return { cols: clamp(Number(m[1]), MAX_COLS), rows: clamp(Number(m[2]), MAX_ROWS) };
}

/** The index of the first entry after `t` (entries before it make the screen at `t`). */
export function indexAfter(cast: Cast, t: number): number {
  let lo = 0;
  let hi = cast.events.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((cast.events[mid]?.t ?? 0) <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Who did something, as the event log says. */
export interface LogActor {
  kind: string;
  name: string;
  tokenId?: string;
}

/** One line of the event log. */
export interface LogEntry {
  at: string;
  /** `at` in ms since the epoch. */
  ms: number;
  actor: LogActor | null;
  type: string;
  body: Record<string, unknown>;
}

/** Parses the event log (JSON lines); lines that are not events are skipped. */
export function parseEventLog(text: string): LogEntry[] {
  const out: LogEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (typeof e.at !== 'string' || typeof e.type !== 'string') continue;
    const ms = Date.parse(e.at);
    if (Number.isNaN(ms)) continue;
    const a = e.actor as Record<string, unknown> | null | undefined;
    const actor =
      a && typeof a.name === 'string' && typeof a.kind === 'string'
        ? { kind: a.kind, name: a.name, ...(typeof a.tokenId === 'string' ? { tokenId: a.tokenId } : {}) }
        : null;
    out.push({ at: e.at, ms, actor, type: e.type, body: e });
  }
  return out;
}

/** One row of the timeline. */
export interface TimelineItem {
  key: string;
  ms: number;
  at: string;
  /** Who: a name, or "sandbox"/"Studio" for what nobody in particular did. */
  who: string;
  /** user, token, agent, sandbox; null for Studio itself. */
  kind: string | null;
  what: string;
  /** The terminal's cast this row is about (opened, exited), when it is. */
  file?: string;
  failed?: boolean;
}

const str = (v: unknown) => (typeof v === 'string' ? v : '');
const quote = (argv: unknown) =>
  Array.isArray(argv)
    ? argv.map((a) => (typeof a === 'string' && /^[\w./:=@%+-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')
    : '';
const terminalName = (file: string) => `terminal ${/\d+/.exec(file)?.[0] ?? '?'}`;

/**
 * The timeline of who did what: one row per action (an exec with its exit, a file change, control taken or
 * released, a terminal opened or closed, a connection out, a status change); exec output is folded into its exec.
 * `tokenNames` names the caller's API tokens by id, so a token's actions read as that token.
 */
export function timeline(
  entries: LogEntry[],
  tokenNames: ReadonlyMap<string, string> = new Map(),
): TimelineItem[] {
  const items: TimelineItem[] = [];
  const execs = new Map<string, TimelineItem & { command: string }>();
  entries.forEach((e, i) => {
    const b = e.body;
    const token = e.actor?.tokenId ? tokenNames.get(e.actor.tokenId) : undefined;
    const base = {
      key: `${i}`,
      ms: e.ms,
      at: e.at,
      who: e.actor ? (token ? `${e.actor.name} · ${token}` : e.actor.name) : 'Studio',
      kind: e.actor?.kind ?? null,
    };
    const push = (what: string, extra: Partial<TimelineItem> = {}) => {
      const item = { ...base, what, ...extra };
      items.push(item);
      return item;
    };
    switch (e.type) {
      case 'exec.started': {
        const command = quote(b.command);
        const item = push(`ran \`${command}\``);
        execs.set(str(b.execId), Object.assign(item, { command }));
        break;
      }
      case 'exec.exited': {
        const started = execs.get(str(b.execId));
        const how =
          b.timedOut === true
            ? 'timed out'
            : b.cancelled === true
              ? 'cancelled'
              : b.signal
                ? `killed by ${str(b.signal)}`
                : `exit ${String(b.exitCode)}`;
        if (started) {
          started.what = `ran \`${started.command}\` (${how})`;
          started.failed = b.exitCode !== 0;
        } else push(`an exec ended (${how})`);
        break;
      }
      case 'exec.output':
        break;
      case 'file.changed': {
        const path = str(b.path);
        const op = str(b.op);
        if (op === 'write') push(`wrote ${path}`);
        else if (op === 'mkdir') push(`made folder ${path}`);
        else if (op === 'remove') push(`removed ${path}`);
        else if (op === 'rename') push(`renamed ${path} to ${str(b.to)}`);
        else push(path === '' ? 'files changed in the sandbox' : `${path} changed in the sandbox`);
        break;
      }
      case 'control.taken':
        push('took control');
        break;
      case 'control.released':
        push('released control');
        break;
      case 'terminal.opened':
        push(`opened ${terminalName(str(b.file))}`, { file: str(b.file) });
        break;
      case 'terminal.closed':
        push(
          `${terminalName(str(b.file))} ended${typeof b.exitCode === 'number' ? ` (exit ${b.exitCode})` : ''}`,
          {
            file: str(b.file),
          },
        );
        break;
      case 'session.status':
        push(`session ${str(b.state)}${b.reason ? `: ${str(b.reason)}` : ''}`);
        break;
      case 'egress':
        push(
          b.allowed === true
            ? `connected to ${str(b.host)}:${String(b.port)}`
            : `was refused ${str(b.host)}:${String(b.port)}${b.message ? ` (${str(b.message)})` : ''}`,
          b.allowed === true ? {} : { failed: true },
        );
        break;
      case 'network.changed':
        push(`set the network to ${str(b.mode)}`);
        break;
      case 'session.forked':
        push(`forked the session (${str(b.forkId)})`);
        break;
      case 'recording.stopped':
        push('recording stopped at its size limit', { failed: true });
        break;
      default:
        push(e.type);
    }
  });
  return items;
}

/** m:ss (or h:mm:ss) of a number of seconds. */
export function formatClock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** The name a downloaded file gets: the session's id, then the recording file's own name. */
export const downloadName = (sessionId: string, file: string) => `${sessionId}-${file}`;
