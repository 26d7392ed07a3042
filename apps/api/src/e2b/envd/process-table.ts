import type { Terminal } from '@studio/isolation';
import { StdinQueue } from '../../exec/exec-registry.ts';
import { EnvdError } from './envd-errors.ts';
import { EventQueue } from './event-queue.ts';

/** How a process ended, in envd's terms. */
export interface ProcessEnd {
  exitCode: number;
  /** True when it exited by itself (not killed by a signal). */
  exited: boolean;
  /** As Go's ProcessState says it: "exit status 1", "signal: killed". */
  status: string;
  error?: string;
}

/** An event a process's streams send after the start. */
export type ProcessOutput =
  | { type: 'data'; stream: 'stdout' | 'stderr' | 'pty'; data: Uint8Array }
  | { type: 'end'; end: ProcessEnd };

/** The command as the client gave it, for List. */
export interface ProcessConfigView {
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd?: string;
}

/** Unsent output one stream may hold for a slow reader before further output is dropped for it. */
const STREAM_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * One process started through envd. It outlives the streams that read it: a Start stream that ends (the client
 * disconnected) leaves it running, and Connect attaches new readers, which see output from then on (none is
 * replayed, as in envd).
 */
export class EnvdProcess {
  readonly pid: number;
  readonly tag: string | undefined;
  readonly config: ProcessConfigView;
  /** Set for a PTY process once its terminal is open. */
  terminal: Terminal | undefined;
  /** Set for a non-PTY process started with stdin open. */
  readonly stdin: StdinQueue | undefined;
  readonly isPty: boolean;
  #kill: () => void = () => undefined;
  #end: ProcessEnd | undefined;
  readonly #readers = new Set<EventQueue<ProcessOutput>>();
  readonly #onEnd: () => void;

  constructor(options: {
    pid: number;
    tag: string | undefined;
    config: ProcessConfigView;
    isPty: boolean;
    stdin: StdinQueue | undefined;
    onEnd: () => void;
  }) {
    this.pid = options.pid;
    this.tag = options.tag;
    this.config = options.config;
    this.isPty = options.isPty;
    this.stdin = options.stdin;
    this.#onEnd = options.onEnd;
  }

  get ended(): boolean {
    return this.#end !== undefined;
  }

  /** How to end the process (abort its exec, close its terminal). */
  setKill(kill: () => void): void {
    this.#kill = kill;
  }

  kill(): void {
    if (!this.ended) this.#kill();
  }

  /** A new reader of its output from now on. */
  attach(): EventQueue<ProcessOutput> {
    if (this.#end) throw new EnvdError('NOT_FOUND', `process ${this.pid} has ended`);
    const queue = new EventQueue<ProcessOutput>(STREAM_BUFFER_BYTES);
    queue.onClose = () => this.#readers.delete(queue);
    this.#readers.add(queue);
    return queue;
  }

  output(stream: 'stdout' | 'stderr' | 'pty', data: Uint8Array): void {
    if (this.#end || data.byteLength === 0) return;
    for (const r of this.#readers) r.push({ type: 'data', stream, data }, data.byteLength);
  }

  /** The process ended: readers get the end, and it leaves its session's table. */
  finish(end: ProcessEnd): void {
    if (this.#end) return;
    this.#end = end;
    this.stdin?.close();
    for (const r of this.#readers) {
      r.push({ type: 'end', end }, 64, false);
      r.end();
    }
    this.#onEnd();
  }
}

/**
 * A session's envd processes, by pid and tag. Pids are Studio's handles, numbered from 1 per session and never
 * reused while the API runs; they are not the kernel's pids. An ended process leaves the table at once (as in
 * envd, Connect to it then answers NotFound).
 */
export class ProcessTable {
  readonly #byPid = new Map<number, EnvdProcess>();
  #nextPid = 1;
  readonly #max: number;

  constructor(maxProcesses: number) {
    this.#max = maxProcesses;
  }

  get size(): number {
    return this.#byPid.size;
  }

  add(options: Omit<ConstructorParameters<typeof EnvdProcess>[0], 'pid' | 'onEnd'>): EnvdProcess {
    if (this.#byPid.size >= this.#max) {
      throw new EnvdError(
        'RESOURCE_EXHAUSTED',
        `this sandbox already runs ${this.#max} processes started through the E2B API; wait for one to end or kill one`,
      );
    }
    const pid = this.#nextPid++;
    const process = new EnvdProcess({ ...options, pid, onEnd: () => this.#byPid.delete(pid) });
    this.#byPid.set(pid, process);
    return process;
  }

  /** A running process by its selector; NOT_FOUND when there is none. */
  find(
    selector: { case: 'pid'; value: number } | { case: 'tag'; value: string } | { case: undefined },
  ): EnvdProcess {
    const found =
      selector.case === 'pid'
        ? this.#byPid.get(selector.value)
        : selector.case === 'tag'
          ? this.#byTag(selector.value)
          : undefined;
    if (selector.case === undefined)
      throw new EnvdError('INVALID_ARGUMENT', 'name the process by pid or tag');
    if (!found || found.ended) {
      throw new EnvdError(
        'NOT_FOUND',
        `process with ${selector.case} ${selector.value} not found (it may have ended)`,
      );
    }
    return found;
  }

  list(): EnvdProcess[] {
    return [...this.#byPid.values()].filter((p) => !p.ended);
  }

  /** Ends every process (the sandbox was killed or paused). */
  killAll(): void {
    for (const p of this.#byPid.values()) p.kill();
  }

  #byTag(tag: string): EnvdProcess | undefined {
    for (const p of this.#byPid.values()) if (p.tag === tag && !p.ended) return p;
    return undefined;
  }
}

export { StdinQueue };
