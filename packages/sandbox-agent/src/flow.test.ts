import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient } from './client.ts';
import { encodeFrame, FrameType, MAX_PAYLOAD } from './protocol.ts';
import {
  type AgentFixture,
  createFixture,
  describeAgent,
  expectCode,
  fakeAgent,
  RawAgent,
  rssOf,
  text,
  until,
} from './test-utils.ts';

const WINDOW = 256 * 1024;
/** The agent's resident memory must stay well below what an unbounded flood reaches in a second (GiBs). */
const RSS_BOUND = 200 * 1024 * 1024;

describeAgent(() => {
  let f: AgentFixture;
  beforeAll(async () => {
    f = await createFixture();
  });
  afterAll(async () => {
    await f?.dispose();
  });

  async function listen(
    onConnection: (socket: Socket) => void,
    allowHalfOpen = false,
  ): Promise<{ server: Server; port: number }> {
    const server = createServer({ allowHalfOpen }, onConnection);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    if (typeof address !== 'object' || address === null) throw new Error('no address');
    return { server, port: address.port };
  }

  /** Reads until the stream's readable side ends (without `for await`, which destroys the stream). */
  async function readAll(stream: Duplex): Promise<Buffer> {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    await once(stream, 'end');
    return Buffer.concat(chunks);
  }

  describe('connect', () => {
    it('carries bytes both ways with half-close', async () => {
      const { server, port } = await listen((socket) => {
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('end', () => socket.end(Buffer.concat(chunks).reverse()));
      });
      try {
        const stream = await f.client.connect(port);
        const payload = randomBytes(3 * 1024 * 1024 + 5);
        stream.end(payload);
        const echoed = await readAll(stream);
        expect(echoed.equals(Buffer.from(payload).reverse())).toBe(true);
      } finally {
        server.close();
      }
    });

    it('keeps each direction open until its own EOF', async () => {
      let received = '';
      let ended!: () => void;
      const serverGotEnd = new Promise<void>((resolve) => {
        ended = resolve;
      });
      const { server, port } = await listen((socket) => {
        socket.end('server first');
        socket.setEncoding('utf8');
        socket.on('data', (s: string) => {
          received += s;
        });
        socket.on('end', () => ended());
      }, true);
      try {
        const stream = await f.client.connect(port);
        expect((await readAll(stream)).toString()).toBe('server first');
        stream.end('client after the server ended');
        await serverGotEnd;
        expect(received).toBe('client after the server ended');
      } finally {
        server.close();
      }
    });

    it('refuses closed and invalid ports', async () => {
      const { server, port } = await listen(() => undefined);
      server.close();
      await once(server, 'close');
      await expectCode(f.client.connect(port), 'NOT_FOUND');
      await expectCode(f.client.connect(0), 'INVALID_INPUT');
      await expectCode(f.client.connect(65_536), 'INVALID_INPUT');
      await expectCode(f.client.connect(1.5), 'INVALID_INPUT');
    });

    it('a flood that nobody reads stays bounded: in the client, in the agent and at the source', async () => {
      let written = 0;
      let source: Socket | undefined;
      const chunk = Buffer.alloc(64 * 1024, 'y\n');
      const { server, port } = await listen((socket) => {
        source = socket;
        const pump = () => {
          while (socket.writable && socket.write(chunk)) written += chunk.length;
          written += chunk.length;
        };
        socket.on('drain', pump);
        socket.on('error', () => undefined);
        pump();
      });
      try {
        const stream = await f.client.connect(port);
        // Let it run with nobody reading: the window fills, the agent stops reading the socket, the
        // kernel buffers fill, and the source's writes stop succeeding.
        await until(() => written > 0, 5000, 'the flood to start');
        let last = -1;
        await until(
          async () => {
            await new Promise((r) => setTimeout(r, 200));
            const settled = written === last;
            last = written;
            return settled;
          },
          20_000,
          'the source to stall',
        );
        expect(f.client.bufferedBytes()).toBeLessThanOrEqual(WINDOW + 128 * 1024);
        expect(rssOf(f.agent.child.pid as number)).toBeLessThan(RSS_BOUND);
        // Kernel socket buffers hold a few MiB at most; an unbounded relay would have taken everything.
        expect(written).toBeLessThan(64 * 1024 * 1024);
        // Reading again lets it flow.
        let got = 0;
        stream.on('data', (c: Buffer) => {
          got += c.length;
        });
        await until(() => got > 4 * 1024 * 1024, 20_000, 'data to flow again');
        stream.destroy();
        source?.destroy();
      } finally {
        server.close();
      }
    });
  });

  describe('terminal flood', () => {
    it('`yes` into a terminal whose client never reads stays bounded, then flows when read', async () => {
      const t = await f.client.openTerminal({ cols: 80, rows: 24, command: ['yes'] });
      try {
        await until(() => f.client.bufferedBytes() > 0, 10_000, 'output to arrive');
        let last = -1;
        await until(
          async () => {
            await new Promise((r) => setTimeout(r, 200));
            const now = f.client.bufferedBytes();
            const settled = now === last;
            last = now;
            return settled;
          },
          20_000,
          'the terminal to stall',
        );
        expect(f.client.bufferedBytes()).toBeLessThanOrEqual(WINDOW);
        expect(rssOf(f.agent.child.pid as number)).toBeLessThan(RSS_BOUND);
        let got = 0;
        t.onData((c) => {
          got += c.length;
        });
        await until(() => got > 2 * 1024 * 1024, 20_000, 'output to flow again');
      } finally {
        await t.close();
      }
    });

    it('exec output is bounded by maxOutputBytes even when the callbacks are slow', async () => {
      let calls = 0;
      const r = await f.client.exec(['yes'], {
        timeoutMs: 1500,
        maxOutputBytes: 2_000_000,
        onStdout: () => {
          calls++;
        },
      });
      expect(r.timedOut).toBe(true);
      expect(r.truncated).toBe(true);
      expect(r.stdout.length).toBe(2_000_000);
      expect(calls).toBeGreaterThan(0);
      expect(rssOf(f.agent.child.pid as number)).toBeLessThan(RSS_BOUND);
    });
  });

  const localFake = (onOpen: (channel: number, write: (b: Buffer) => void) => void) => ({
    client: fakeAgent(onOpen, WINDOW),
  });

  describe('frame fuzz', () => {
    it('answers unknown types, bad JSON and stray frames with errors, and stays in sync', async () => {
      const raw = new RawAgent(f.ws);
      try {
        await raw.ping(1);
        raw.write(encodeFrame(99 as FrameType, 5, Buffer.from('x')));
        const err = await raw.next((x) => x.channel === 0 && x.type === FrameType.ERROR, 'an error frame');
        expect(JSON.parse(err.payload.toString())).toMatchObject({ code: 'INVALID_INPUT' });
        raw.write(encodeFrame(FrameType.OPEN, 2, Buffer.from('{not json')));
        const bad = await raw.next((x) => x.channel === 2 && x.type === FrameType.REPLY, 'a refusal');
        expect(JSON.parse(bad.payload.toString())).toMatchObject({
          ok: false,
          error: { code: 'INVALID_INPUT' },
        });
        raw.json(FrameType.OPEN, 3, { op: 'no-such-op' });
        const unknown = await raw.next((x) => x.channel === 3, 'unknown op');
        expect(JSON.parse(unknown.payload.toString())).toMatchObject({
          ok: false,
          error: { code: 'UNSUPPORTED' },
        });
        raw.write(encodeFrame(FrameType.DATA, 777, Buffer.from('to nobody')));
        raw.write(encodeFrame(FrameType.WINDOW, 777, Buffer.from('bad')));
        raw.write(encodeFrame(FrameType.OPEN, 0, Buffer.from('{}')));
        raw.json(FrameType.OPEN, 4, { op: 'readFile', path: '../../etc/passwd' });
        const esc = await raw.next((x) => x.channel === 4, 'a refused path');
        expect(JSON.parse(esc.payload.toString())).toMatchObject({
          ok: false,
          error: { code: 'INVALID_INPUT' },
        });
        await raw.ping(6);
        expect(raw.alive).toBe(true);
      } finally {
        await raw.kill();
      }
    });

    it('garbage and oversized lengths: an error, then it waits for a sync marker; memory stays bounded', async () => {
      const raw = new RawAgent(f.ws);
      try {
        await raw.ping(1);
        const huge = Buffer.alloc(9);
        huge.writeUInt32BE(0x7fffffff, 0);
        raw.write(huge);
        const err = await raw.next((x) => x.channel === 0 && x.type === FrameType.ERROR, 'a length error');
        expect(err.payload.toString()).toContain('bad frame length');
        // Megabytes of garbage while it looks for a marker: nothing is kept, nothing is answered.
        for (let i = 0; i < 32; i++) raw.write(randomBytes(1024 * 1024));
        await raw.flushed();
        await new Promise((r) => setTimeout(r, 200));
        expect(raw.alive).toBe(true);
        expect(rssOf(raw.child.pid as number)).toBeLessThan(RSS_BOUND);
        // A host that says hello (with its sync preamble) gets a working agent back.
        const client = new AgentClient({ input: raw.child.stdout, output: raw.child.stdin });
        await client.hello();
        expect(await client.ping()).toBeGreaterThanOrEqual(0);
        await client.close();
      } finally {
        await raw.kill();
      }
    });

    it('a host that attaches to a stream left mid-frame (and after garbage) gets a working connection', async () => {
      const raw = new RawAgent(f.ws);
      try {
        await raw.ping(1);
        // A previous host died halfway through a 1 MiB frame ...
        const half = encodeFrame(FrameType.DATA, 9, Buffer.alloc(MAX_PAYLOAD, 7)).subarray(0, 300_000);
        raw.write(half);
        // ... and some garbage followed.
        raw.write(randomBytes(200_000));
        await new Promise((r) => setTimeout(r, 100));
        const rssBefore = rssOf(raw.child.pid as number);
        const client = new AgentClient({ input: raw.child.stdout, output: raw.child.stdin });
        const hello = await client.hello();
        expect(hello.pid).toBe(raw.child.pid);
        expect(hello.workspaceDev).not.toBeNull();
        expect(
          (await client.exec(['echo', 'back in sync'], { timeoutMs: 5000, maxOutputBytes: 100 })).exitCode,
        ).toBe(0);
        await client.writeFile('resync.txt', 'ok');
        expect(text(await client.readFile('resync.txt'))).toBe('ok');
        expect(rssOf(raw.child.pid as number)).toBeLessThan(Math.max(rssBefore * 2, RSS_BOUND));
        expect(raw.alive).toBe(true);
        await client.close();
      } finally {
        await raw.kill();
      }
    });

    it('the client refuses an agent that breaks the protocol', async () => {
      // Terminal output past the window we granted (no listener, so no credit came back).
      const overrun = localFake((channel, write) => {
        write(encodeFrame(FrameType.REPLY, channel, Buffer.from('{"ok":true}')));
        for (let i = 0; i < 5; i++) write(encodeFrame(FrameType.DATA, channel, Buffer.alloc(64 * 1024)));
      });
      await overrun.client.hello();
      const t = await overrun.client.openTerminal({ cols: 80, rows: 24 });
      await overrun.client.closed;
      expect(overrun.client.isClosed).toBe(true);
      expect(await t.exited).toEqual({ exitCode: null, signal: null });
      await expectCode(overrun.client.ping(), 'UNAVAILABLE');

      // A frame longer than the maximum: the connection is dropped, nothing is buffered for it.
      const oversized = localFake((_channel, write) => {
        const header = Buffer.alloc(9);
        header.writeUInt32BE(64 * 1024 * 1024, 0);
        write(header);
      });
      await oversized.client.hello();
      await expectCode(oversized.client.stat('x'), 'UNAVAILABLE');
      expect(oversized.client.bufferedBytes()).toBe(0);
    });

    it('ACCEPT frames are sandbox output too: one for no listener of ours is refused, a malformed one drops the agent', async () => {
      const stray = localFake((channel, write) => {
        const accept = { listener: 999, peer: '127.0.0.1:1' };
        write(encodeFrame(FrameType.ACCEPT, 0x80000001, Buffer.from(JSON.stringify(accept))));
        write(encodeFrame(FrameType.REPLY, channel, Buffer.from('{"ok":true,"time":1}')));
      });
      await stray.client.hello();
      expect(await stray.client.ping()).toBeGreaterThanOrEqual(0);
      expect(stray.client.isClosed).toBe(false);

      const malformed = localFake((channel, write) => {
        write(encodeFrame(FrameType.ACCEPT, 5, Buffer.from('not json')));
        write(encodeFrame(FrameType.REPLY, channel, Buffer.from('{"ok":true,"time":1}')));
      });
      await malformed.client.hello();
      await expectCode(malformed.client.ping(), 'UNAVAILABLE');
    });
  });
});
