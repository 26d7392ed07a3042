// Issue 15: the host treats everything the agent says as untrusted input. A fake agent (the host's real client on
// the other end of a pipe) sends what a compromised agent could: oversized frames, bad JSON, paths outside the
// workspace and floods. Each is refused by the host side with a clear error, and the host's memory stays bounded.
import { isIsolationError } from '@studio/isolation';
import { describe, expect, it } from 'vitest';
import type { AgentClient } from './client.ts';
import { encodeFrame, FrameType } from './protocol.ts';
import { fakeAgent } from './test-utils.ts';

const WINDOW = 256 * 1024;
type Write = (b: Buffer) => void;

/** A fake agent (see `fakeAgent`) that hands every request but hello to `onOpen`, with its op first. */
const hostileAgent = (onOpen: (op: string, channel: number, write: Write) => void): AgentClient =>
  fakeAgent((channel, write, op) => onOpen(op, channel, write), WINDOW);

async function failure(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (error) {
    if (!isIsolationError(error)) throw error;
    return { code: error.code, message: error.message };
  }
  throw new Error('expected the call to fail');
}

const reply = (channel: number, body: unknown) =>
  encodeFrame(FrameType.REPLY, channel, Buffer.from(JSON.stringify(body)));

describe('a hostile agent', () => {
  it('an oversized frame: the connection is dropped, nothing is buffered for it', async () => {
    const client = hostileAgent((_op, _channel, write) => {
      const header = Buffer.alloc(9);
      header.writeUInt32BE(64 * 1024 * 1024, 0);
      write(header);
    });
    await client.hello();
    expect((await failure(client.stat('x'))).code).toBe('UNAVAILABLE');
    expect(client.bufferedBytes()).toBe(0);
  });

  it('bad JSON in a reply: the call fails with a clear error', async () => {
    const client = hostileAgent((_op, channel, write) => {
      write(encodeFrame(FrameType.REPLY, channel, Buffer.from('{"ok":tru')));
    });
    await client.hello();
    const f = await failure(client.stat('x'));
    expect(['INTERNAL', 'UNAVAILABLE']).toContain(f.code);
    expect(f.message).not.toMatch(/at .*\.ts:\d+/);
  });

  it('a listing naming entries outside its directory is refused', async () => {
    for (const name of ['../../etc/passwd', 'a/b', '..', '.', '', '/etc']) {
      const client = hostileAgent((op, channel, write) => {
        if (op !== 'list') return;
        write(encodeFrame(FrameType.DATA, channel, Buffer.from(JSON.stringify([{ name, type: 'file' }]))));
        write(reply(channel, { ok: true }));
      });
      await client.hello();
      const f = await failure(client.list('.'));
      expect(f.code).toBe('INTERNAL');
      expect(f.message).toMatch(/outside its directory|malformed/);
      await client.close();
    }
    // The same shape with a plain name is accepted: the refusal above is about the name.
    const fine = hostileAgent((op, channel, write) => {
      if (op !== 'list') return;
      write(
        encodeFrame(FrameType.DATA, channel, Buffer.from(JSON.stringify([{ name: 'ok.txt', type: 'file' }]))),
      );
      write(reply(channel, { ok: true }));
    });
    await fine.hello();
    expect((await fine.list('.')).map((e) => e.name)).toEqual(['ok.txt']);
  });

  it('a watch event with a path outside the workspace ends the watch; none reaches the listener', async () => {
    for (const path of ['../outside', '/etc/passwd', 'a/../../b']) {
      const seen: string[] = [];
      const client = hostileAgent((op, channel, write) => {
        if (op !== 'watch') return;
        write(reply(channel, { ok: true, dirs: 1 }));
        const line = (p: string) => `${JSON.stringify({ changes: [{ path: p, kind: 'change' }] })}\n`;
        write(encodeFrame(FrameType.DATA, channel, Buffer.from(line('inside.txt') + line(path))));
      });
      await client.hello();
      const watch = await client.watch((batch) => {
        for (const c of batch.changes) seen.push(c.path);
      });
      await watch.ended;
      expect(seen).toEqual(['inside.txt']);
      await client.close();
    }
  });

  it('a flood of watch events is collapsed into one overflow batch a second; the host stays up and bounded', async () => {
    const client = hostileAgent((op, channel, write) => {
      if (op !== 'watch') return;
      write(reply(channel, { ok: true, dirs: 1 }));
      const line = `${JSON.stringify({ changes: [{ path: 'f', kind: 'change' }] })}\n`;
      const chunk = Buffer.from(line.repeat(Math.floor((32 * 1024) / line.length)));
      for (let i = 0; i < 6; i++) write(encodeFrame(FrameType.DATA, channel, chunk));
    });
    await client.hello();
    const batches: { changes: number; overflow: boolean }[] = [];
    const watch = await client.watch((b) =>
      batches.push({ changes: b.changes.length, overflow: b.overflow }),
    );
    await new Promise((r) => setTimeout(r, 300));
    // Thousands of batches were sent within the second; 50 were handed on, then one overflow.
    expect(batches).toHaveLength(51);
    expect(batches.at(-1)).toEqual({ changes: 0, overflow: true });
    expect(client.isClosed).toBe(false);
    watch.close();
    await client.close();
  });
});
