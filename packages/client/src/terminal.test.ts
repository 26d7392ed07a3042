import { describe, expect, it } from 'vitest';
import { openTerminal, type TerminalServerMessage } from './terminal.ts';

// A WebSocket double: records what the helper sends and lets the test play the server.
class FakeSocket {
  static last: FakeSocket | undefined;
  binaryType = 'blob';
  readyState = 0;
  sent: string[] = [];
  readonly listeners = new Map<string, ((event: never) => void)[]>();
  constructor(readonly url: string) {
    FakeSocket.last = this;
  }
  send(data: string) {
    this.sent.push(data);
  }
  close(code = 1000, reason = '') {
    this.emit('close', { code, reason });
  }
  addEventListener(type: string, listener: (event: never) => void) {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  emit(type: string, event: unknown) {
    for (const l of this.listeners.get(type) ?? []) l(event as never);
  }
}

describe('openTerminal', () => {
  it('authenticates first, then sends the initial size, input and resizes as JSON', async () => {
    const term = openTerminal({
      url: 'https://studio.example/',
      token: 'sst_t',
      sessionId: 'ses_1',
      cols: 100,
      rows: 30,
      WebSocket: FakeSocket,
    });
    const socket = FakeSocket.last as FakeSocket;
    expect(socket.url).toBe('wss://studio.example/terminal');
    expect(socket.binaryType).toBe('arraybuffer');
    socket.emit('open', {});
    expect(JSON.parse(socket.sent[0] ?? '')).toEqual({ type: 'auth', token: 'sst_t', sessionId: 'ses_1' });
    const messages: TerminalServerMessage[] = [];
    term.onMessage((m) => messages.push(m));
    const chunks: Uint8Array[] = [];
    term.onData((c) => chunks.push(c));
    socket.emit('message', { data: JSON.stringify({ type: 'ready', sessionId: 'ses_1' }) });
    await term.ready;
    expect(JSON.parse(socket.sent[1] ?? '')).toEqual({ type: 'resize', cols: 100, rows: 30 });
    term.write('ls\n');
    expect(JSON.parse(socket.sent[2] ?? '')).toEqual({ type: 'input', data: 'ls\n' });
    socket.emit('message', { data: new Uint8Array([104, 105]).buffer });
    expect(chunks.map((c) => [...c])).toEqual([[104, 105]]);
    expect(messages).toEqual([{ type: 'ready', sessionId: 'ses_1' }]);
    term.close();
    expect(await term.closed).toEqual({ code: 1000, reason: 'bye' });
  });

  it('input before the socket opens follows the auth message; the latest size is sent when it is ready', () => {
    const term = openTerminal({
      url: 'http://h:1',
      token: 't',
      sessionId: 's',
      cols: 80,
      rows: 24,
      WebSocket: FakeSocket,
    });
    const socket = FakeSocket.last as FakeSocket;
    term.resize(90, 20);
    term.write('echo early\n');
    term.resize(120, 40);
    expect(socket.sent).toEqual([]);
    socket.emit('open', {});
    term.resize(132, 43);
    expect(socket.sent.map((m) => JSON.parse(m))).toEqual([
      { type: 'auth', token: 't', sessionId: 's' },
      { type: 'input', data: 'echo early\n' },
    ]);
    socket.emit('message', { data: JSON.stringify({ type: 'ready', sessionId: 's' }) });
    term.resize(100, 30);
    expect(socket.sent.slice(2).map((m) => JSON.parse(m))).toEqual([
      { type: 'resize', cols: 132, rows: 43 },
      { type: 'resize', cols: 100, rows: 30 },
    ]);
    term.close();
  });

  it('rejects ready when the server closes first (e.g. 1008)', async () => {
    const term = openTerminal({ url: 'http://h:1', token: 't', sessionId: 's', WebSocket: FakeSocket });
    (FakeSocket.last as FakeSocket).emit('close', { code: 1008, reason: 'auth' });
    await expect(term.ready).rejects.toThrow(/1008/);
  });
});
