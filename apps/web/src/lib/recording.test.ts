import { describe, expect, it } from 'vitest';
import { formatClock, indexAfter, parseCast, parseEventLog, parseSize, timeline } from './recording.ts';

const CAST = [
  JSON.stringify({ version: 2, width: 80, height: 24, timestamp: 1700000000, title: 'terminal-1.cast' }),
  '[0.5, "o", "$ "]',
  '[1.25, "o", "echo hi\\r\\nhi\\r\\n"]',
  '[2, "r", "100x30"]',
  '[3, "o", "bye',
  '',
].join('\n');

const line = (o: Record<string, unknown>) => JSON.stringify(o);
const LOG = [
  line({
    at: '2026-01-01T00:00:00.000Z',
    actor: { kind: 'user', name: 'alice' },
    type: 'terminal.opened',
    file: 'terminal-1.cast',
  }),
  line({
    at: '2026-01-01T00:00:01.000Z',
    actor: { kind: 'token', name: 'alice', tokenId: 'tok_1' },
    type: 'exec.started',
    execId: 'exe_1',
    command: ['echo', 'hi there'],
  }),
  line({
    at: '2026-01-01T00:00:01.100Z',
    actor: { kind: 'token', name: 'alice', tokenId: 'tok_1' },
    type: 'exec.output',
    execId: 'exe_1',
    stream: 'stdout',
    data: 'hi there\n',
  }),
  line({
    at: '2026-01-01T00:00:01.200Z',
    actor: { kind: 'token', name: 'alice', tokenId: 'tok_1' },
    type: 'exec.exited',
    execId: 'exe_1',
    exitCode: 0,
    signal: null,
    timedOut: false,
    cancelled: false,
  }),
  line({
    at: '2026-01-01T00:00:02.000Z',
    actor: { kind: 'agent', name: 'alice' },
    type: 'file.changed',
    op: 'write',
    path: 'src/a.ts',
  }),
  line({ at: '2026-01-01T00:00:03.000Z', actor: { kind: 'user', name: 'alice' }, type: 'control.taken' }),
  line({
    at: '2026-01-01T00:00:04.000Z',
    actor: { kind: 'user', name: 'alice' },
    type: 'terminal.closed',
    file: 'terminal-1.cast',
    exitCode: 0,
  }),
  'not json',
  line({ at: '2026-01-01T00:00:05.000Z', actor: null, type: 'recording.stopped', reason: 'limit' }),
].join('\n');

describe('recording in the browser', () => {
  it('parses an asciicast v2 file, skipping a line cut short', () => {
    const cast = parseCast(CAST);
    expect(cast).toMatchObject({ width: 80, height: 24, timestamp: 1700000000, duration: 2 });
    expect(cast.events.map((e) => e.kind)).toEqual(['o', 'o', 'r']);
    expect(indexAfter(cast, 0)).toBe(0);
    expect(indexAfter(cast, 1.25)).toBe(2);
    expect(indexAfter(cast, 99)).toBe(3);
    expect(() => parseCast('{"version":1}\n')).toThrow(/version 2/);
    expect(() => parseCast('nope')).toThrow(/not JSON/);
    expect(parseSize('100x30')).toEqual({ cols: 100, rows: 30 });
    expect(parseSize('9999x9999')).toEqual({ cols: 500, rows: 200 });
    expect(parseSize('x')).toBeUndefined();
  });

  it('makes a timeline of who did what, an exec with its exit, tokens by name', () => {
    const items = timeline(parseEventLog(LOG), new Map([['tok_1', 'ci-bot']]));
    expect(items.map((i) => [i.who, i.kind, i.what])).toEqual([
      ['alice', 'user', 'opened terminal 1'],
      ['alice · ci-bot', 'token', 'ran `echo "hi there"` (exit 0)'],
      ['alice', 'agent', 'wrote src/a.ts'],
      ['alice', 'user', 'took control'],
      ['alice', 'user', 'terminal 1 ended (exit 0)'],
      ['Studio', null, 'recording stopped at its size limit'],
    ]);
    expect(items[0]?.file).toBe('terminal-1.cast');
    expect(formatClock(0)).toBe('0:00');
    expect(formatClock(75.9)).toBe('1:15');
    expect(formatClock(3723)).toBe('1:02:03');
  });
});
