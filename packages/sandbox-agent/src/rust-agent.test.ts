import { type ChildProcessWithoutNullStreams, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_BINARY, localAgentMissing } from './local.ts';
import { encodeFrame, type Frame, FrameType } from './protocol.ts';
import { createFixture, processesWith, RawAgent, text, uniqueSleep, until } from './test-utils.ts';

// Frames the agent added to protocol 1 (PROTOCOL.md, "TCP streams"): ACCEPT announces a stream the
// agent opened (id with the high bit set) for a connection made to a `listen` socket inside the sandbox.
const ACCEPT = 11 as FrameType;
const ci = process.env.CI === 'true' || process.env.CI === '1';
const missing = localAgentMissing();

function json(f: Frame): Record<string, unknown> {
  return JSON.parse(f.payload.toString('utf8'));
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

describe.skipIf(missing !== undefined && !ci)(
  `agent: TCP streams, init, seccomp${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    let root: string;
    let ws: string;
    beforeAll(() => {
      root = realpathSync(mkdtempSync(join(tmpdir(), 'studio-rust-agent-')));
      ws = join(root, 'ws');
      mkdirSync(ws);
    });
    afterAll(() => {
      rmSync(root, { recursive: true, force: true });
    });

    describe('TCP streams', () => {
      it('listen: a connection made inside is carried to the host as a stream, both ways, with credit', async () => {
        const raw = new RawAgent(ws);
        let sock: Socket | undefined;
        try {
          // A small agent->host window per accepted stream, to see credit at work.
          raw.json(FrameType.OPEN, 1, { op: 'listen', port: 0, window: 1000 });
          const reply = json(await raw.next((x) => x.channel === 1 && x.type === FrameType.REPLY, 'listen'));
          expect(reply.ok).toBe(true);
          const port = reply.port as number;
          expect(port).toBeGreaterThan(0);

          const s = connect({ port, host: '127.0.0.1' });
          sock = s;
          await once(s, 'connect');
          const got: Buffer[] = [];
          s.on('data', (c: Buffer) => got.push(c));
          const accept = await raw.next((x) => x.type === ACCEPT, 'ACCEPT');
          const id = accept.channel;
          expect(id >>> 31).toBe(1);
          expect(json(accept)).toMatchObject({ listener: 1 });
          expect(String(json(accept).peer)).toContain('127.0.0.1');

          // host -> sandbox
          raw.write(encodeFrame(FrameType.DATA, id, Buffer.from('hello from the host')));
          await until(() => Buffer.concat(got).toString() === 'hello from the host', 5000, 'data inward');

          // sandbox -> host: 5000 bytes against a window of 1000: only 1000 arrive until credit is granted.
          s.write(Buffer.alloc(5000, 'z'));
          const bytes = () =>
            raw.frames
              .filter((x) => x.channel === id && x.type === FrameType.DATA)
              .reduce((n, x) => n + x.payload.length, 0);
          await until(() => bytes() === 1000, 5000, 'the first window');
          await new Promise((r) => setTimeout(r, 200));
          expect(bytes()).toBe(1000);
          raw.write(encodeFrame(FrameType.WINDOW, id, u32(4000)));
          await until(() => bytes() === 5000, 5000, 'the rest after credit');

          // Half-close both ways, then the agent's final CLOSE.
          raw.write(encodeFrame(FrameType.EOF, id));
          await once(s, 'end');
          s.end();
          await raw.next((x) => x.channel === id && x.type === FrameType.EOF, 'EOF from the sandbox side');
          const close = await raw.next((x) => x.channel === id && x.type === FrameType.CLOSE, 'CLOSE');
          expect(json(close)).toEqual({});

          // The host aborts a second stream: the socket inside is closed, the agent confirms.
          const s2 = connect({ port, host: '127.0.0.1' });
          s2.on('error', () => undefined);
          s2.resume();
          const s2closed = once(s2, 'close');
          const a2 = await raw.next((x) => x.type === ACCEPT, 'second ACCEPT');
          raw.write(encodeFrame(FrameType.CLOSE, a2.channel));
          await raw.next((x) => x.channel === a2.channel && x.type === FrameType.CLOSE, 'CLOSE after abort');
          await s2closed;

          // Closing the listener stops listening.
          raw.write(encodeFrame(FrameType.CLOSE, 1));
          await raw.next((x) => x.channel === 1 && x.type === FrameType.CLOSE, 'listener CLOSE');
          const s3 = connect({ port, host: '127.0.0.1' });
          const [err] = (await once(s3, 'error')) as [NodeJS.ErrnoException];
          expect(err.code).toBe('ECONNREFUSED');
        } finally {
          sock?.destroy();
          await raw.kill();
        }
      });

      it('AgentClient.listen: a program inside connects out, and the host holds the other end as a Duplex', async () => {
        const f = await createFixture();
        try {
          expect(f.client.info?.streams).toBe(true);
          const sockets: Duplex[] = [];
          const l = await f.client.listen(0, (socket, peer) => {
            expect(peer).toContain('127.0.0.1');
            sockets.push(socket);
            socket.on('data', (c: Buffer) => socket.write(Buffer.from(c.toString().toUpperCase())));
            socket.on('end', () => socket.end());
          });
          expect(l.port).toBeGreaterThan(0);
          // A sandbox program (here python3, run by the agent) talks to the port and reads the answer.
          const script = `import socket; s = socket.create_connection(('127.0.0.1', ${l.port})); s.sendall(b'egress'); s.shutdown(socket.SHUT_WR); print(s.recv(100).decode())`;
          const r = await f.client.exec(['python3', '-c', script], {
            timeoutMs: 10_000,
            maxOutputBytes: 1000,
          });
          expect(r.exitCode).toBe(0);
          expect(text(r.stdout).trim()).toBe('EGRESS');
          expect(sockets).toHaveLength(1);
          l.close();
          await l.ended;
        } finally {
          await f.dispose();
        }
      });

      it('refuses a listen on a bad port', async () => {
        const raw = new RawAgent(ws);
        try {
          raw.json(FrameType.OPEN, 1, { op: 'listen', port: 70000 });
          const r = json(await raw.next((x) => x.channel === 1, 'refusal'));
          expect(r).toMatchObject({ ok: false, error: { code: 'INVALID_INPUT' } });
        } finally {
          await raw.kill();
        }
      });
    });

    describe('init', () => {
      it('forwards SIGTERM to what it runs and exits', async () => {
        const raw = new RawAgent(ws);
        const s = uniqueSleep();
        try {
          raw.json(FrameType.OPEN, 1, {
            op: 'exec',
            argv: ['sleep', s],
            timeoutMs: 60_000,
            maxOutputBytes: 100,
          });
          await until(() => processesWith(`sleep ${s}`).length === 1, 5000, 'sleep to start');
          const exited = once(raw.child, 'exit');
          raw.child.kill('SIGTERM');
          const [code] = await exited;
          expect(code).toBe(0);
          await until(() => processesWith(`sleep ${s}`).length === 0, 5000, 'sleep to die');
        } finally {
          await raw.kill();
        }
      });

      const unshare = spawnSync('unshare', ['-fp', '--mount-proc', 'true']).status === 0;
      it.skipIf(!unshare)('as PID 1 (unshare -fp --mount-proc) reaps orphans it never started', async () => {
        const raw: RawAgent = new RawAgent(ws, ['unshare', '-fp', '--mount-proc']);
        try {
          raw.json(FrameType.OPEN, 1, { op: 'hello' });
          const hello = json(await raw.next((x) => x.channel === 1, 'hello'));
          expect(hello).toMatchObject({ ok: true, pid: 1, init: true });
          // The subshell exits at once; its `sleep` is orphaned to PID 1 (the agent) and exits later.
          raw.json(FrameType.OPEN, 2, {
            op: 'exec',
            argv: ['sh', '-c', '(sleep 0.2 &); (true &); exit 0'],
            timeoutMs: 10_000,
            maxOutputBytes: 100,
          });
          expect(json(await raw.next((x) => x.channel === 2, 'exec'))).toMatchObject({
            ok: true,
            exitCode: 0,
          });
          await new Promise((r) => setTimeout(r, 600));
          raw.json(FrameType.OPEN, 3, {
            op: 'exec',
            argv: ['sh', '-c', 'cat /proc/[0-9]*/stat 2>/dev/null'],
            timeoutMs: 10_000,
            maxOutputBytes: 1 << 20,
          });
          await raw.next((x) => x.channel === 3 && x.type === FrameType.REPLY, 'ps');
          const stats = raw.frames
            .filter((x) => x.channel === 3 && x.type === FrameType.DATA)
            .map((x) => x.payload.toString())
            .join('');
          const states = stats
            .split('\n')
            .filter(Boolean)
            .map((l) => l.slice(l.lastIndexOf(')') + 2, l.lastIndexOf(')') + 3));
          expect(states.length).toBeGreaterThan(0);
          expect(states).not.toContain('Z');
        } finally {
          await killTree(raw.child);
        }
      });
    });

    it('--seccomp FILE installs a filter before serving (what the gVisor wrapper does today)', async () => {
      // One instruction, BPF_RET|BPF_K SECCOMP_RET_ALLOW: a filter that allows everything, to see it installed.
      const filter = Buffer.alloc(8);
      filter.writeUInt16LE(0x06, 0);
      filter.writeUInt32LE(0x7fff0000, 4);
      const file = join(root, 'allow.bpf');
      writeFileSync(file, filter);
      const raw = new RawAgent(ws, [], ['--seccomp', file]);
      try {
        await raw.ping(1);
        const status = readFileSync(`/proc/${raw.child.pid}/status`, 'latin1');
        expect(status).toMatch(/^Seccomp:\s+2$/m);
        expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
      } finally {
        await raw.kill();
      }
      const bad = new RawAgent(ws, [], ['--seccomp', join(root, 'missing.bpf')]);
      const [code] = await once(bad.child, 'exit');
      expect(code).toBe(126);
    });

    it('is a static binary well under the size of a Node runtime', () => {
      const file = spawnSync('file', ['-L', AGENT_BINARY], { encoding: 'utf8' });
      if (file.status === 0) expect(file.stdout).toMatch(/static/);
    });
  },
);

async function killTree(child: ChildProcessWithoutNullStreams): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  // Closing stdin ends the agent (and with PID 1 gone, the namespace); SIGKILL if it lingers.
  child.stdin.end();
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}
