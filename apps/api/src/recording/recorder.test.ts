import { mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPolicy, parsePolicy, RECORDING_FILE_PATTERN } from '@studio/policy';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../core/logger.ts';
import { type Actor, EventBus } from '../realtime/event-bus.ts';
import { Recorder } from './recorder.ts';

const SESSION = 'ses_recordertest000000001';
const alice: Actor = { kind: 'user', userId: 'usr_a', name: 'alice' };
const bot: Actor = { kind: 'agent', userId: 'usr_a', tokenId: 'tok_1', name: 'alice' };
const dirs: string[] = [];

function recorder(limits = defaultPolicy.recording) {
  const dir = mkdtempSync(join(tmpdir(), 'studio-rec-'));
  dirs.push(dir);
  const r = new Recorder({ dir, limits, logger: createLogger({ level: 'silent' }), flushMs: 5 });
  const bus = new EventBus({ sinks: [r] });
  return { dir, r, bus };
}

const lines = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown);

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('Recorder', () => {
  it('writes a terminal as asciicast v2: a header, then timed output and resizes, in order', async () => {
    const { dir, r } = recorder();
    const t = r.terminal({ sessionId: SESSION, terminalId: 'trm_x', cols: 80, rows: 24, actor: alice });
    expect(t).toBeDefined();
    t?.output(new TextEncoder().encode('hello '));
    // A UTF-8 sequence split across two chunks comes out whole.
    const euro = new TextEncoder().encode('€\r\n');
    t?.output(euro.subarray(0, 1));
    t?.output(euro.subarray(1));
    t?.resize(120, 40);
    t?.exit({ exitCode: 0, signal: null });
    await r.flush();
    const [header, ...events] = lines(join(dir, SESSION, 'terminal-1.cast')) as [
      Record<string, unknown>,
      ...[number, string, string][],
    ];
    expect(header).toMatchObject({ version: 2, width: 80, height: 24 });
    expect(typeof header.timestamp).toBe('number');
    expect(header.title).toContain('alice');
    for (const e of events) {
      expect(e).toHaveLength(3);
      expect(typeof e[0]).toBe('number');
      expect(['o', 'r']).toContain(e[1]);
    }
    expect(
      events
        .filter((e) => e[1] === 'o')
        .map((e) => e[2])
        .join(''),
    ).toBe('hello €\r\n');
    expect(events.at(-1)?.slice(1)).toEqual(['r', '120x40']);
    const times = events.map((e) => e[0]);
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    const log = lines(join(dir, SESSION, 'events.jsonl')) as Record<string, unknown>[];
    expect(log.map((e) => e.type)).toEqual(['terminal.opened', 'terminal.closed']);
    expect(log[0]).toMatchObject({ actor: alice, file: 'terminal-1.cast', cols: 80, rows: 24 });
    expect(log[1]).toMatchObject({ exitCode: 0, file: 'terminal-1.cast' });
  });

  it('records the bus events with their actor and time, but not watchers joining and leaving', async () => {
    const { dir, r, bus } = recorder();
    bus.publish(SESSION, bot, { type: 'exec.started', execId: 'exe_1', command: ['echo', 'hi'] });
    bus.publish(SESSION, bot, { type: 'watcher.joined', watcherId: 'wat_1', via: 'events' });
    bus.publish(SESSION, bot, {
      type: 'exec.output',
      execId: 'exe_1',
      stream: 'stdout',
      data: 'hi\n',
      truncated: false,
    });
    bus.publish(SESSION, alice, { type: 'file.changed', op: 'write', path: 'a.txt' });
    bus.publish(SESSION, alice, { type: 'control.taken' });
    await r.flush();
    const log = lines(join(dir, SESSION, 'events.jsonl')) as Record<string, unknown>[];
    expect(log.map((e) => e.type)).toEqual(['exec.started', 'exec.output', 'file.changed', 'control.taken']);
    expect(log[0]).toMatchObject({ actor: bot, command: ['echo', 'hi'] });
    expect(typeof log[0]?.at).toBe('string');
    const listing = await r.list(SESSION);
    expect(listing).toMatchObject({ enabled: true, stopped: false, files: [{ name: 'events.jsonl' }] });
  });

  it('stops at the size bound with one marker, the files together within it', async () => {
    const limits = parsePolicy({ recording: { maxBytesPerSession: 64 * 1024 } }).recording;
    const { dir, r, bus } = recorder(limits);
    const t = r.terminal({ sessionId: SESSION, terminalId: 'trm_x', cols: 80, rows: 24, actor: alice });
    const chunk = new TextEncoder().encode('x'.repeat(1000));
    for (let i = 0; i < 200; i++) t?.output(chunk);
    for (let i = 0; i < 10; i++) {
      bus.publish(SESSION, bot, { type: 'exec.started', execId: `exe_${i}`, command: ['true'] });
    }
    await r.flush();
    const names = readdirSync(join(dir, SESSION));
    let total = 0;
    for (const n of names) total += readFileSync(join(dir, SESSION, n)).byteLength;
    expect(total).toBeLessThanOrEqual(64 * 1024);
    expect(total).toBeGreaterThan(60 * 1024);
    const log = lines(join(dir, SESSION, 'events.jsonl')) as Record<string, unknown>[];
    expect(log.filter((e) => e.type === 'recording.stopped')).toEqual([
      expect.objectContaining({ reason: 'limit', limitBytes: 64 * 1024 }),
    ]);
    expect(log.at(-1)?.type).toBe('recording.stopped');
    // Still a valid cast, cut at a line.
    const cast = lines(join(dir, SESSION, 'terminal-1.cast'));
    expect(cast[0]).toMatchObject({ version: 2 });
    expect((await r.list(SESSION)).stopped).toBe(true);
    // A new terminal after the stop is not recorded.
    expect(r.terminal({ sessionId: SESSION, terminalId: 'trm_y', cols: 80, rows: 24, actor: alice })).toBe(
      undefined,
    );
  });

  it('writes nothing when the operator turned recording off', async () => {
    const limits = parsePolicy({ recording: { enabled: false } }).recording;
    const { dir, r, bus } = recorder(limits);
    expect(r.terminal({ sessionId: SESSION, terminalId: 'trm_x', cols: 80, rows: 24, actor: alice })).toBe(
      undefined,
    );
    bus.publish(SESSION, bot, { type: 'exec.started', execId: 'exe_1', command: ['true'] });
    await r.flush();
    expect(readdirSync(dir)).toEqual([]);
    expect(await r.list(SESSION)).toMatchObject({ enabled: false, files: [] });
  });

  it('numbers terminals on after a restart, lists them, and deletes the folder when the session is dropped', async () => {
    const { dir, r, bus } = recorder();
    r.terminal({ sessionId: SESSION, terminalId: 'trm_x', cols: 80, rows: 24, actor: alice })?.output(
      new TextEncoder().encode('one'),
    );
    await r.close();
    const again = new Recorder({
      dir,
      limits: defaultPolicy.recording,
      logger: createLogger({ level: 'silent' }),
    });
    again.terminal({ sessionId: SESSION, terminalId: 'trm_y', cols: 100, rows: 30, actor: bot });
    const listing = await again.list(SESSION);
    expect(listing.files.map((f) => f.name)).toEqual(['events.jsonl', 'terminal-1.cast', 'terminal-2.cast']);
    expect(listing.files[2]).toMatchObject({ kind: 'terminal', openedBy: bot });
    expect(listing.files[1]?.durationSec).toBeGreaterThanOrEqual(0);
    expect(await again.read(SESSION, '../../etc/passwd')).toBeUndefined();
    expect(await again.read(SESSION, 'terminal-9.cast')).toBeUndefined();
    expect(await again.read(SESSION, 'terminal-1.cast')).toContain('"version":2');
    await again.remove(SESSION);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("keeps a destroyed session's recording for keepDays (replayable after the sandbox is gone), or not at all with 0", async () => {
    const kept = recorder();
    kept.bus.publish(SESSION, bot, { type: 'control.taken' });
    kept.bus.drop(SESSION);
    await kept.r.flush();
    kept.bus.publish(SESSION, bot, { type: 'control.released' }); // after the end: not recorded
    await kept.r.close();
    expect(lines(join(kept.dir, SESSION, 'events.jsonl'))).toHaveLength(1);

    const gone = recorder({ ...defaultPolicy.recording, keepDays: 0 });
    gone.bus.publish(SESSION, bot, { type: 'control.taken' });
    await gone.r.flush();
    gone.bus.drop(SESSION);
    const end = Date.now() + 5000;
    while (readdirSync(gone.dir).length > 0 && Date.now() < end) await new Promise((x) => setTimeout(x, 20));
    expect(readdirSync(gone.dir)).toEqual([]);
    await gone.r.close();
  });

  it('sweeps away the recordings of sessions that are gone, keeping the others', async () => {
    const { dir, r, bus } = recorder();
    const other = 'ses_recordertest000000002';
    bus.publish(SESSION, bot, { type: 'control.taken' });
    bus.publish(other, bot, { type: 'control.taken' });
    await r.flush();
    // Last written long ago: past the days a destroyed session's recording is kept.
    const old = new Date(Date.now() - 8 * 24 * 60 * 60_000);
    for (const name of readdirSync(join(dir, other))) utimesSync(join(dir, other, name), old, old);
    utimesSync(join(dir, other), old, old);
    r.sweep(async (id) => id === other);
    const end = Date.now() + 5000;
    while (readdirSync(dir).length > 1 && Date.now() < end) await new Promise((x) => setTimeout(x, 20));
    expect(readdirSync(dir)).toEqual([SESSION]);
    await r.close();
  });

  it('names files only as the pattern allows', () => {
    for (const ok of ['events.jsonl', 'terminal-1.cast', 'terminal-999999.cast']) {
      expect(RECORDING_FILE_PATTERN.test(ok)).toBe(true);
    }
    for (const bad of [
      '../events.jsonl',
      'terminal-0.cast',
      'terminal-1.cast/',
      'x.cast',
      'events.jsonl\n',
    ]) {
      expect(RECORDING_FILE_PATTERN.test(bad)).toBe(false);
    }
  });
});
