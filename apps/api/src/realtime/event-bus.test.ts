import { describe, expect, it } from 'vitest';
import { EventBus, type StreamedEvent } from './event-bus.ts';

const actor = { kind: 'user' as const, userId: 'usr_x', name: 'x' };
const write = (path: string) => ({ type: 'file.changed' as const, op: 'write' as const, path });

async function take(stream: AsyncGenerator<StreamedEvent>, n: number): Promise<StreamedEvent[]> {
  const out: StreamedEvent[] = [];
  while (out.length < n) {
    const r = await stream.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

describe('EventBus', () => {
  it('delivers live events with increasing cursors, and replays after a cursor', async () => {
    const bus = new EventBus({ bufferSize: 10 });
    const ac = new AbortController();
    const live = bus.subscribe('ses_a', undefined, ac.signal);
    const first = bus.publish('ses_a', actor, write('a'));
    bus.publish('ses_b', actor, write('other session'));
    bus.publish('ses_a', actor, write('b'));
    const got = await take(live, 2);
    expect(got.map((e) => (e.type === 'file.changed' ? e.path : e.type))).toEqual(['a', 'b']);
    expect(got[0]?.id).toBe(first?.id);
    const replay = await take(bus.subscribe('ses_a', first?.id, ac.signal), 1);
    expect(replay[0]).toMatchObject({ type: 'file.changed', path: 'b', actor });
    ac.abort();
    expect(await live.next()).toEqual({ done: true, value: undefined });
  });

  it('turns what left the ring, or a foreign cursor, into one gap event', async () => {
    const bus = new EventBus({ bufferSize: 4 });
    const ac = new AbortController();
    const slow = bus.subscribe('ses_a', undefined, ac.signal);
    for (let i = 0; i < 10; i++) bus.publish('ses_a', actor, write(`f${i}`));
    const got = await take(slow, 5);
    expect(got[0]).toMatchObject({ type: 'gap', missed: 6 });
    expect(got.slice(1).map((e) => (e.type === 'file.changed' ? e.path : e.type))).toEqual([
      'f6',
      'f7',
      'f8',
      'f9',
    ]);
    const foreign = await take(bus.subscribe('ses_a', 'ffffffff-3', ac.signal), 1);
    expect(foreign[0]).toMatchObject({ type: 'gap', missed: null });
    ac.abort();
  });

  it('tracks who is connected, caps output per event and forgets dropped sessions', async () => {
    const bus = new EventBus();
    bus.publish('ses_a', actor, { type: 'watcher.joined', watcherId: 'w1', via: 'terminal' });
    expect(bus.watchers('ses_a')).toMatchObject([{ watcherId: 'w1', via: 'terminal', actor }]);
    bus.publish('ses_a', actor, { type: 'watcher.left', watcherId: 'w1', via: 'terminal' });
    expect(bus.watchers('ses_a')).toEqual([]);
    const e = bus.publish('ses_a', null, {
      type: 'exec.output',
      execId: 'exe_1',
      stream: 'stdout',
      data: 'x'.repeat(10_000),
      truncated: false,
    });
    expect(e).toMatchObject({ truncated: true });
    expect(e?.type === 'exec.output' && e.data.length).toBe(4096);
    const ac = new AbortController();
    const s = bus.subscribe('ses_a', undefined, ac.signal);
    bus.drop('ses_a');
    expect(await s.next()).toEqual({ done: true, value: undefined });
    expect(
      bus.publish('ses_a', null, { type: 'watcher.left', watcherId: 'w', via: 'events' }),
    ).toBeUndefined();
  });

  it('names its head: subscribing after it gets what comes next, with no gap', async () => {
    const bus = new EventBus();
    expect(bus.head('ses_a')).toBe(`${bus.epoch}-0`);
    const ac = new AbortController();
    const fromStart = bus.subscribe('ses_a', bus.head('ses_a'), ac.signal);
    const first = bus.publish('ses_a', actor, write('a'));
    expect(bus.head('ses_a')).toBe(first?.id);
    const afterFirst = bus.subscribe('ses_a', bus.head('ses_a'), ac.signal);
    bus.publish('ses_a', actor, write('b'));
    expect((await take(fromStart, 2)).map((e) => e.type === 'file.changed' && e.path)).toEqual(['a', 'b']);
    expect((await take(afterFirst, 1)).map((e) => e.type === 'file.changed' && e.path)).toEqual(['b']);
    ac.abort();
  });
});
