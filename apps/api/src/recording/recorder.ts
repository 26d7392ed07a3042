import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { appendFile, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { RECORDING_FILE_PATTERN, type RecordingLimits } from '@studio/policy';
import type { Logger } from '../core/logger.ts';
import type { Actor, EventSink, SessionEvent } from '../realtime/event-bus.ts';
import type { TerminalRecorder, TerminalRecording } from '../terminal/terminal.ts';

/** The event log's file name in a session's recording folder. */
export const EVENTS_FILE = 'events.jsonl';

/** Kept free under the bound for the one marker that says recording stopped at the limit. */
const MARKER_RESERVE = 512;
const DAY_MS = 24 * 60 * 60_000;

/** When a recording folder's files were last written (appends leave the folder's own time alone). */
async function lastWriteOf(dir: string): Promise<number> {
  let last = (await stat(dir)).mtimeMs;
  for (const name of await readdir(dir)) last = Math.max(last, (await stat(join(dir, name))).mtimeMs);
  return last;
}

/** What `recordings.list` says of one file. */
export interface RecordingFile {
  name: string;
  kind: 'terminal' | 'events';
  size: number;
  /** When the file was started (ISO). */
  startedAt: string | null;
  /** Seconds from the start to its last entry (terminals). */
  durationSec: number | null;
  /** Who opened the terminal (terminals). */
  openedBy: Actor | null;
  title: string | null;
}

/** A session's recording as `recordings.list` returns it. */
export interface RecordingListing {
  enabled: boolean;
  maxBytes: number;
  bytes: number;
  /** Recording of this session stopped at the size limit. */
  stopped: boolean;
  files: RecordingFile[];
}

interface SessionState {
  dir: string;
  bytes: number;
  stopped: boolean;
  nextTerminal: number;
  /** Lines not yet on disk, per file. */
  pending: Map<string, string[]>;
  /** The flush in progress (appends are chained: lines reach each file in order). */
  writing: Promise<void>;
}

/** Options for {@link Recorder}. */
export interface RecorderOptions {
  /** The folder holding `<sessionId>/` folders (`<dataDir>/recordings`). */
  dir: string;
  limits: RecordingLimits;
  logger: Logger;
  /** How long lines are buffered before they are appended (ms, default 250). */
  flushMs?: number;
}

const seconds = (ms: number) => Math.round(ms * 1000) / 1_000_000;

/**
 * Records sessions under `<dataDir>/recordings/<sessionId>/`: one asciicast v2 file per terminal
 * (`terminal-<n>.cast`: a header line, then `[t, "o", data]` output and `[t, "r", "COLSxROWS"]` resizes) and the
 * event log (`events.jsonl`: one JSON object per event, with `at`, `actor` and the event's body). Output only:
 * terminal input is keystrokes, passwords typed at prompts among them, so it is never written. Lines are
 * buffered and appended in order; a session's files together stay within `limits.maxBytesPerSession`: past it
 * one `recording.stopped` event is written and nothing more. With `limits.enabled` false nothing is written.
 * A destroyed session's folder is kept `limits.keepDays` after its last write, so what an agent did can be
 * replayed after it ended its sandbox, then deleted by {@link sweep} (at once with `keepDays: 0`).
 */
export class Recorder implements EventSink {
  readonly #o: RecorderOptions;
  readonly #sessions = new Map<string, SessionState>();
  /** Sessions deleted in this process: a late event must not bring their folder back. */
  readonly #removed = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #sweeps: NodeJS.Timeout | undefined;

  constructor(options: RecorderOptions) {
    this.#o = options;
  }

  get enabled(): boolean {
    return this.#o.limits.enabled;
  }

  #state(sessionId: string): SessionState | undefined {
    if (!this.enabled || this.#removed.has(sessionId)) return undefined;
    let s = this.#sessions.get(sessionId);
    if (s) return s;
    const dir = join(this.#o.dir, sessionId);
    let bytes = 0;
    let nextTerminal = 1;
    let stopped = false;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      // A folder from before a restart: the bound counts what is already there, numbering continues.
      for (const name of readdirSync(dir)) {
        if (!RECORDING_FILE_PATTERN.test(name)) continue;
        bytes += statSync(join(dir, name)).size;
        const n = /^terminal-(\d+)\.cast$/.exec(name);
        if (n) nextTerminal = Math.max(nextTerminal, Number(n[1]) + 1);
      }
      stopped = bytes >= this.#o.limits.maxBytesPerSession - MARKER_RESERVE;
    } catch (error) {
      this.#o.logger.warn('recording folder unusable; this session is not recorded', { sessionId, error });
      stopped = true;
    }
    s = { dir, bytes, stopped, nextTerminal, pending: new Map(), writing: Promise.resolve() };
    this.#sessions.set(sessionId, s);
    return s;
  }

  /** Queues a line for a file, within the session's bound; false when recording has stopped. */
  #append(sessionId: string, s: SessionState, file: string, line: string): boolean {
    if (s.stopped) return false;
    const text = `${line}\n`;
    const size = Buffer.byteLength(text);
    const max = this.#o.limits.maxBytesPerSession;
    if (s.bytes + size > max - MARKER_RESERVE) {
      s.stopped = true;
      const marker = `${JSON.stringify({
        at: new Date().toISOString(),
        actor: null,
        type: 'recording.stopped',
        reason: 'limit',
        limitBytes: max,
      })}\n`;
      this.#queue(s, EVENTS_FILE, marker);
      this.#o.logger.info('session recording stopped at its size limit', { sessionId, limitBytes: max });
      return false;
    }
    this.#queue(s, file, text);
    return true;
  }

  #queue(s: SessionState, file: string, text: string): void {
    s.bytes += Buffer.byteLength(text);
    const lines = s.pending.get(file);
    if (lines) lines.push(text);
    else s.pending.set(file, [text]);
    if (!this.#timer) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        void this.flush();
      }, this.#o.flushMs ?? 250);
      this.#timer.unref();
    }
  }

  #flushSession(sessionId: string, s: SessionState): Promise<void> {
    if (s.pending.size > 0) {
      const batch = [...s.pending];
      s.pending.clear();
      s.writing = s.writing.then(async () => {
        for (const [file, lines] of batch) {
          await appendFile(join(s.dir, file), lines.join(''), { mode: 0o600 }).catch((error: unknown) =>
            this.#o.logger.warn('recording write failed', { sessionId, file, error }),
          );
        }
      });
    }
    return s.writing;
  }

  /** Writes what is buffered (of one session, or of all). */
  async flush(sessionId?: string): Promise<void> {
    if (sessionId !== undefined) {
      const s = this.#sessions.get(sessionId);
      if (s) await this.#flushSession(sessionId, s);
      return;
    }
    await Promise.all([...this.#sessions].map(([id, s]) => this.#flushSession(id, s)));
  }

  /** Records one event of a session's stream (watchers joining and leaving are presence, not actions: skipped). */
  record(e: SessionEvent): void {
    if (e.type === 'watcher.joined' || e.type === 'watcher.left') return;
    const s = this.#state(e.sessionId);
    if (!s) return;
    const { id: _id, sessionId: _session, at, actor, ...body } = e;
    this.#append(e.sessionId, s, EVENTS_FILE, JSON.stringify({ at, actor, ...body }));
  }

  /** The hook the terminal server calls for each new terminal. */
  readonly terminal: TerminalRecorder = ({ sessionId, cols, rows, actor }) => {
    const s = this.#state(sessionId);
    if (!s || s.stopped) return undefined;
    const file = `terminal-${s.nextTerminal++}.cast`;
    const start = Date.now();
    const at = new Date(start).toISOString();
    this.#append(
      sessionId,
      s,
      EVENTS_FILE,
      JSON.stringify({ at, actor, type: 'terminal.opened', file, cols, rows }),
    );
    const header = {
      version: 2,
      width: cols,
      height: rows,
      timestamp: Math.floor(start / 1000),
      title: `${file} opened by ${actor.name} (${actor.kind})`,
    };
    if (!this.#append(sessionId, s, file, JSON.stringify(header))) return undefined;
    // PTY chunks may split a UTF-8 sequence: the decoder carries the rest to the next chunk.
    const decoder = new TextDecoder('utf-8');
    let open = true;
    const line = (kind: 'o' | 'r', data: string) => {
      if (
        open &&
        !this.#append(sessionId, s, file, JSON.stringify([seconds(Date.now() - start), kind, data]))
      ) {
        open = false;
      }
    };
    const recording: TerminalRecording = {
      output: (chunk) => {
        const text = decoder.decode(chunk, { stream: true });
        if (text) line('o', text);
      },
      resize: (c, r) => line('r', `${c}x${r}`),
      exit: (exit) => {
        const rest = decoder.decode();
        if (rest) line('o', rest);
        open = false;
        this.#append(
          sessionId,
          s,
          EVENTS_FILE,
          JSON.stringify({ at: new Date().toISOString(), actor, type: 'terminal.closed', file, ...exit }),
        );
      },
    };
    return recording;
  };

  /**
   * The session was destroyed (the bus dropped it): what is buffered is written and no more is recorded in this
   * process; the folder goes at once with `keepDays: 0`, else with the sweep once its time is up.
   */
  async forget(sessionId: string): Promise<void> {
    if (this.#o.limits.keepDays === 0) return this.remove(sessionId);
    await this.flush(sessionId);
    this.#removed.add(sessionId);
    this.#sessions.delete(sessionId);
  }

  /** Deletes a session's recording now. */
  async remove(sessionId: string): Promise<void> {
    this.#removed.add(sessionId);
    const s = this.#sessions.get(sessionId);
    this.#sessions.delete(sessionId);
    if (s) {
      s.pending.clear();
      await s.writing;
    }
    await rm(join(this.#o.dir, sessionId), { recursive: true, force: true });
  }

  /**
   * Deletes the recordings of sessions that are gone (`isGone`: destroyed, or unknown to the store) and were
   * last written more than `limits.keepDays` ago, however the session ended (through the bus, a create whose
   * template failed, a fork rolled back, a destroy finished by reconciliation after a restart). Now, then every
   * `everyMs`.
   */
  sweep(isGone: (sessionId: string) => Promise<boolean>, everyMs = 60 * 60_000): void {
    const run = async () => {
      const names = await readdir(this.#o.dir).catch(() => [] as string[]);
      for (const sessionId of names) {
        if (!/^ses_[A-Za-z0-9_-]{16,64}$/.test(sessionId)) continue;
        const lastWrite = await lastWriteOf(join(this.#o.dir, sessionId)).catch(() => Date.now());
        if (lastWrite > Date.now() - this.#o.limits.keepDays * DAY_MS) continue;
        const gone = await isGone(sessionId).catch(() => false);
        if (gone) await this.remove(sessionId).catch(() => undefined);
      }
    };
    const guarded = () =>
      void run().catch((error: unknown) => this.#o.logger.warn('recording sweep failed', { error }));
    guarded();
    clearInterval(this.#sweeps);
    this.#sweeps = setInterval(guarded, everyMs);
    this.#sweeps.unref();
  }

  /** The files of a session's recording (none when it has none). */
  async list(sessionId: string): Promise<RecordingListing> {
    await this.flush(sessionId);
    const dir = join(this.#o.dir, sessionId);
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) =>
      RECORDING_FILE_PATTERN.test(n),
    );
    const opened = await this.#openedBy(dir, names.includes(EVENTS_FILE));
    const files: RecordingFile[] = [];
    let bytes = 0;
    for (const name of names) {
      const st = await stat(join(dir, name)).catch(() => undefined);
      if (!st) continue;
      bytes += st.size;
      if (name === EVENTS_FILE) {
        files.push({
          name,
          kind: 'events',
          size: st.size,
          startedAt: st.birthtime.getTime() > 0 ? st.birthtime.toISOString() : null,
          durationSec: null,
          openedBy: null,
          title: 'event log',
        });
        continue;
      }
      const { header, last } = await headAndTail(join(dir, name), st.size);
      files.push({
        name,
        kind: 'terminal',
        size: st.size,
        startedAt:
          typeof header?.timestamp === 'number' ? new Date(header.timestamp * 1000).toISOString() : null,
        durationSec: last,
        openedBy: opened.get(name) ?? null,
        title: typeof header?.title === 'string' ? header.title : null,
      });
    }
    const order = (f: RecordingFile) => (f.kind === 'events' ? 0 : Number(/\d+/.exec(f.name)?.[0] ?? 0));
    files.sort((a, b) => order(a) - order(b));
    const s = this.#sessions.get(sessionId);
    return {
      enabled: this.enabled,
      maxBytes: this.#o.limits.maxBytesPerSession,
      bytes,
      stopped: s?.stopped === true && bytes > 0,
      files,
    };
  }

  /** Who opened each terminal, from the event log's `terminal.opened` entries. */
  async #openedBy(dir: string, hasLog: boolean): Promise<Map<string, Actor>> {
    const out = new Map<string, Actor>();
    if (!hasLog) return out;
    const text = await readFile(join(dir, EVENTS_FILE), 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (!line.includes('"terminal.opened"')) continue;
      try {
        const e = JSON.parse(line) as { type?: string; file?: string; actor?: Actor };
        if (e.type === 'terminal.opened' && e.file && e.actor) out.set(e.file, e.actor);
      } catch {
        // A line cut by a crash: skipped.
      }
    }
    return out;
  }

  /** One file's text, or undefined when the session has no such file. `file` must match the pattern. */
  async read(sessionId: string, file: string): Promise<string | undefined> {
    if (!RECORDING_FILE_PATTERN.test(file)) return undefined;
    await this.flush(sessionId);
    const path = join(this.#o.dir, sessionId, file);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    // Bounded by the session's limit (a file never grows past it; this guards against one put there by hand).
    const handle = await open(path, 'r');
    try {
      const size = Math.min(st.size, this.#o.limits.maxBytesPerSession);
      const buffer = Buffer.alloc(size);
      const { bytesRead } = await handle.read(buffer, 0, size, 0);
      return buffer.subarray(0, bytesRead).toString('utf8');
    } finally {
      await handle.close();
    }
  }

  /** Writes what is buffered and stops the timer (shutdown). */
  async close(): Promise<void> {
    clearTimeout(this.#timer);
    clearInterval(this.#sweeps);
    this.#timer = undefined;
    await this.flush();
  }
}

/** A cast's header and the time of its last entry, reading only its first and last bytes. */
async function headAndTail(
  path: string,
  size: number,
): Promise<{ header: Record<string, unknown> | undefined; last: number | null }> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(Math.min(size, 4096));
    await handle.read(head, 0, head.length, 0);
    let header: Record<string, unknown> | undefined;
    try {
      header = JSON.parse(head.toString('utf8').split('\n')[0] ?? '') as Record<string, unknown>;
    } catch {
      header = undefined;
    }
    const tailSize = Math.min(size, 256 * 1024);
    const tail = Buffer.alloc(tailSize);
    await handle.read(tail, 0, tailSize, size - tailSize);
    const lines = tail.toString('utf8').split('\n');
    let last: number | null = 0;
    for (let i = lines.length - 1; i >= 0; i--) {
      const l = lines[i];
      if (!l?.startsWith('[')) continue;
      try {
        const t = (JSON.parse(l) as unknown[])[0];
        if (typeof t === 'number') {
          last = t;
          break;
        }
      } catch {
        // cut by the tail window or a crash: look further back
      }
    }
    return { header, last };
  } finally {
    await handle.close();
  }
}
