import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { IsolationErrorCode } from '@studio/isolation';
import { isIsolationError } from '@studio/isolation';
import { describe } from 'vitest';
import { AgentClient } from './client.ts';
import {
  AGENT_BINARY,
  type LocalAgent,
  type LocalAgentOptions,
  localAgentMissing,
  spawnLocalAgent,
} from './local.ts';
import { encodeFrame, type Frame, FrameDecoder, FrameType, SYNC_MAGIC } from './protocol.ts';

/**
 * Runs `suite` against the agent binary. An agent that is not built skips with the reason outside CI; in
 * CI (CI=true) it runs, and fails.
 */
export function describeAgent(suite: () => void): void {
  const missing = localAgentMissing();
  const ci = process.env.CI === 'true' || process.env.CI === '1';
  if (missing && !ci) describe.skip(`agent (skipped: ${missing})`, suite);
  else describe('agent', suite);
}

/** A temp directory with `ws` (the agent's workspace) and `outside` (what the agent must never touch). */
export interface AgentFixture {
  root: string;
  ws: string;
  outside: string;
  agent: LocalAgent;
  client: AgentClient;
  dispose(): Promise<void>;
}

export async function createFixture(options: Partial<LocalAgentOptions> = {}): Promise<AgentFixture> {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'studio-agent-test-')));
  const ws = join(root, 'ws');
  const outside = join(root, 'outside');
  mkdirSync(ws);
  mkdirSync(outside);
  const agent = await spawnLocalAgent({ ...options, workspace: ws });
  return {
    root,
    ws,
    outside,
    agent,
    client: agent.client,
    async dispose() {
      await agent[Symbol.asyncDispose]();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Asserts that `promise` rejects with an IsolationError of `code`; returns the error. */
export async function expectCode(promise: Promise<unknown>, code: IsolationErrorCode): Promise<Error> {
  const error = await promise.then(
    (value) => {
      throw new Error(`expected ${code}, but it resolved with ${String(value)}`);
    },
    (e: unknown) => e,
  );
  if (!isIsolationError(error, code)) {
    throw new Error(`expected ${code}, got ${String((error as Error)?.stack ?? error)}`);
  }
  return error;
}

/** Polls until `check` returns true (or throws after `timeoutMs`). */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Live (non-zombie) processes whose command line contains `marker`. */
export function processesWith(marker: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'latin1').split('\0').join(' ');
      if (!cmdline.includes(marker)) continue;
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      pids.push(Number(name));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

/** Resident memory of a process in bytes. */
export function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** A `sleep` argument no other test uses, so its processes can be found in /proc. */
export function uniqueSleep(): string {
  return `${1000 + Math.floor(Math.random() * 8000)}.${String(Math.floor(Math.random() * 1e6)).padStart(6, '0')}`;
}

export function text(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('utf8');
}

/**
 * A swapper process that keeps changing what a name is, as fast as it can: `exchange A B` swaps two
 * names atomically (renameat2 RENAME_EXCHANGE, so the name always exists: a directory one instant, a
 * link out the next); `replace NAME LINK_TARGET` keeps replacing NAME by a symlink and by a file
 * (a hardlink of one source file: writing data on every round would make ext4 flush on each rename).
 * It prints its running count of swaps every 500 and exits on SIGTERM.
 */
export const SWAPPER = `
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
count = 0
def tick(n):
    global count
    count += n
    if count % 500 < n:
        sys.stdout.write('%d\\n' % count); sys.stdout.flush()
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
sys.stdout.write('0\\n'); sys.stdout.flush()
mode = sys.argv[1]
if mode == 'exchange':
    a, b = sys.argv[2].encode(), sys.argv[3].encode()
    while True:
        if libc.renameat2(-100, a, -100, b, 2) == 0:
            tick(1)
else:
    name, target = sys.argv[2], sys.argv[3]
    tmp_link, tmp_file, src = name + '.swap-l', name + '.swap-f', name + '.swap-src'
    with open(src, 'w') as fh: fh.write('inside')
    while True:
        try:
            os.symlink(target, tmp_link); os.rename(tmp_link, name)
            os.link(src, tmp_file); os.rename(tmp_file, name)
            tick(2)
        except OSError:
            pass
`;

export interface Swapper {
  /** Swaps done so far (as last reported). */
  readonly swaps: number;
  stop(): Promise<void>;
}

/** Keeps going until at least `min` rounds ran and the swapper has done at least `swaps` swaps. */
export async function race(
  swapper: Swapper,
  min: number,
  swaps: number,
  round: (i: number) => Promise<void>,
): Promise<void> {
  for (let i = 0; i < min || swapper.swaps < swaps; i++) {
    if (i > 100 * min) throw new Error(`the swapper is stuck at ${swapper.swaps} swaps`);
    await round(i);
  }
}

/** An agent spoken to with raw bytes. */
export class RawAgent {
  readonly child: ChildProcessWithoutNullStreams;
  readonly frames: Frame[] = [];
  readonly #decoder = new FrameDecoder();

  /** `wrap` runs the agent under another program (e.g. `unshare -fp --mount-proc`); `extraArgs` follow its own. */
  constructor(workspace: string, wrap: string[] = [], extraArgs: string[] = []) {
    const argv = [...wrap, AGENT_BINARY, ...extraArgs];
    this.child = spawn(argv[0] as string, argv.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', STUDIO_WORKSPACE: workspace },
    });
    this.child.stdout.on('data', (c: Buffer) => this.frames.push(...this.#decoder.push(c)));
    this.child.stderr.resume();
    this.child.stdin.on('error', () => undefined);
  }

  /** Resolves once everything written so far has reached the agent's pipe. */
  flushed(): Promise<void> {
    return new Promise((resolve) => this.child.stdin.write(Buffer.alloc(0), () => resolve()));
  }

  write(bytes: Uint8Array): void {
    this.child.stdin.write(bytes);
  }

  json(type: number, channel: number, value: unknown): void {
    this.write(encodeFrame(type as FrameType, channel, Buffer.from(JSON.stringify(value))));
  }

  async next(match: (f: Frame) => boolean, what: string): Promise<Frame> {
    let found: Frame | undefined;
    await until(
      () => {
        const i = this.frames.findIndex(match);
        if (i >= 0) found = this.frames.splice(i, 1)[0];
        return found !== undefined;
      },
      10_000,
      what,
    );
    return found as Frame;
  }

  async ping(channel: number): Promise<void> {
    this.json(FrameType.OPEN, channel, { op: 'ping' });
    const f = await this.next((x) => x.channel === channel && x.type === FrameType.REPLY, `ping ${channel}`);
    if (JSON.parse(f.payload.toString()).ok !== true) throw new Error(`ping ${channel} failed`);
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async kill(): Promise<void> {
    if (!this.alive) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGKILL');
    await exited;
  }
}

/**
 * An in-process stand-in for the agent, for attacking the host side: answers hello properly (with credit
 * `window`) and hands every other OPEN, with its op, to `onOpen`, which writes whatever it likes back.
 */
export function fakeAgent(
  onOpen: (channel: number, write: (b: Buffer) => void, op: string) => void,
  window: number,
): AgentClient {
  const fromAgent = new PassThrough();
  const toAgent = new PassThrough();
  const write = (b: Buffer) => fromAgent.write(b);
  const decoder = new FrameDecoder();
  decoder.expect(SYNC_MAGIC);
  toAgent.on('data', (c: Buffer) => {
    for (const frame of decoder.push(c)) {
      if (frame.type !== FrameType.OPEN) continue;
      const msg = JSON.parse(frame.payload.toString()) as { op: string; nonce?: string };
      if (msg.op !== 'hello') {
        onOpen(frame.channel, write, msg.op);
        continue;
      }
      write(Buffer.concat([SYNC_MAGIC, Buffer.from(msg.nonce ?? '')]));
      write(
        encodeFrame(
          FrameType.REPLY,
          frame.channel,
          Buffer.from(JSON.stringify({ ok: true, protocol: 1, window })),
        ),
      );
    }
  });
  return new AgentClient({ input: fromAgent, output: toAgent });
}
