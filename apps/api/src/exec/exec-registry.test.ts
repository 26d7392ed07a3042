import { describe, expect, it } from 'vitest';
import { AppError } from '../core/errors.ts';
import { ExecLog, ExecRegistry } from './exec-registry.ts';

const read = async (log: ExecLog<string>, after: number, signal = new AbortController().signal) => {
  const got: [number, string][] = [];
  for await (const e of log.read(after, signal)) got.push([e.seq, e.item]);
  return got;
};

const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (error) {
    return error instanceof AppError ? error.code : String(error);
  }
  return 'no error';
};

describe('ExecLog', () => {
  it('replays after any event it still holds, each once and in order', async () => {
    const log = new ExecLog<string>(1000);
    for (const x of ['a', 'b', 'c', 'd']) log.push(x, 10);
    log.end();
    expect(await read(log, 0)).toEqual([
      [1, 'a'],
      [2, 'b'],
      [3, 'c'],
      [4, 'd'],
    ]);
    expect(await read(log, 2)).toEqual([
      [3, 'c'],
      [4, 'd'],
    ]);
    expect(await read(log, 4)).toEqual([]);
  });

  it('is bounded by bytes; resuming before what it holds is RESUME_EXPIRED, never a silent skip', async () => {
    const log = new ExecLog<string>(100);
    for (let i = 1; i <= 10; i++) log.push(`e${i}`, 30);
    expect(log.bytes).toBeLessThanOrEqual(100);
    expect(log.first).toBe(8); // 8, 9, 10 fit in 100 bytes
    log.end();
    expect(await codeOf(read(log, 0))).toBe('RESUME_EXPIRED');
    expect(await codeOf(read(log, 6))).toBe('RESUME_EXPIRED');
    expect((await read(log, 7)).map(([seq]) => seq)).toEqual([8, 9, 10]);
    expect(await codeOf(read(log, 11))).toBe('INPUT_INVALID');
  });

  it('keeps the newest event even when it alone is over the cap (the exit always reaches a reader)', async () => {
    const log = new ExecLog<string>(10);
    log.push('big', 50);
    log.push('exit', 50);
    log.end();
    expect(await read(log, 1)).toEqual([[2, 'exit']]);
  });

  it('a reader that falls behind what is held gets RESUME_EXPIRED mid-stream', async () => {
    const log = new ExecLog<string>(50);
    log.push('a', 20);
    const reader = log.read(0, new AbortController().signal);
    expect((await reader.next()).value).toEqual({ seq: 1, item: 'a' });
    for (let i = 0; i < 5; i++) log.push('x', 20); // pushes event 2 out before it was read
    expect(await codeOf(reader.next())).toBe('RESUME_EXPIRED');
  });

  it('ends with the exec: a failure is thrown to every reader, also one that comes later', async () => {
    const log = new ExecLog<string>(100);
    log.push('a', 1);
    log.end(new AppError('INTERNAL', 'the sandbox went away'));
    expect(await codeOf(read(log, 0))).toBe('INTERNAL');
    expect(await codeOf(read(log, 1))).toBe('INTERNAL');
  });
});

describe('ExecRegistry', () => {
  const add = (registry: ExecRegistry, cancels: { n: number }) => {
    const log = new ExecLog<unknown>(1000);
    const { token } = registry.addStream('exe_aaaaaaaaaaaaaaaaaaaaaa', {
      ownerId: 'usr_a',
      sessionId: 'ses_a',
      log,
      cancel: () => {
        cancels.n++;
      },
    });
    return { log, token };
  };

  it('a new reader takes over the old one; another user or a wrong token is NOT_FOUND', () => {
    const registry = new ExecRegistry();
    const { token } = add(registry, { n: 0 });
    const first = registry.attach('usr_a', 'exe_aaaaaaaaaaaaaaaaaaaaaa', token);
    const second = registry.attach('usr_a', 'exe_aaaaaaaaaaaaaaaaaaaaaa', token);
    expect(first.signal.aborted).toBe(true);
    expect((first.signal.reason as AppError).code).toBe('INVALID_STATE');
    expect(second.signal.aborted).toBe(false);
    first.release(); // the old reader leaving does not detach the new one
    expect(() => registry.attach('usr_b', 'exe_aaaaaaaaaaaaaaaaaaaaaa', token)).toThrow(/not running/);
    expect(() => registry.attach('usr_a', 'exe_aaaaaaaaaaaaaaaaaaaaaa', 'x'.repeat(43))).toThrow(
      /not running/,
    );
  });

  it('an exec with no reader is cancelled after the attach window; an ended one lingers, then is forgotten', async () => {
    const registry = new ExecRegistry({ attachMs: 50, lingerMs: 50 });
    const cancels = { n: 0 };
    const { token } = add(registry, cancels);
    const lease = registry.attach('usr_a', 'exe_aaaaaaaaaaaaaaaaaaaaaa', token);
    await new Promise((r) => setTimeout(r, 80));
    expect(cancels.n).toBe(0); // attached: never cancelled
    lease.release();
    await new Promise((r) => setTimeout(r, 80));
    expect(cancels.n).toBe(1);

    const other = new ExecRegistry({ attachMs: 50, lingerMs: 60 });
    const kept = add(other, cancels);
    kept.log.end();
    other.finished('exe_aaaaaaaaaaaaaaaaaaaaaa');
    await new Promise((r) => setTimeout(r, 30));
    expect(() => other.attach('usr_a', 'exe_aaaaaaaaaaaaaaaaaaaaaa', kept.token).release()).not.toThrow();
    await new Promise((r) => setTimeout(r, 80));
    expect(cancels.n).toBe(1); // an ended exec is not cancelled
    expect(() => other.attach('usr_a', 'exe_aaaaaaaaaaaaaaaaaaaaaa', kept.token)).toThrow(/not running/);
    expect(other.stats().execs).toBe(0);
  });

  it('ended execs together hold a bounded number of bytes: the oldest go early', () => {
    const registry = new ExecRegistry({ lingerMaxBytes: 250 });
    const ids = ['exe_aaaaaaaaaaaaaaaaaaaaa1', 'exe_aaaaaaaaaaaaaaaaaaaaa2', 'exe_aaaaaaaaaaaaaaaaaaaaa3'];
    const tokens = ids.map((id) => {
      const log = new ExecLog<unknown>(1000);
      log.push('output', 100);
      log.end();
      const { token } = registry.addStream(id, {
        ownerId: 'usr_a',
        sessionId: 'ses_a',
        log,
        cancel: () => {},
      });
      registry.finished(id);
      return token;
    });
    expect(registry.stats()).toEqual({ execs: 2, logBytes: 200 });
    expect(() => registry.attach('usr_a', ids[0] as string, tokens[0] as string)).toThrow(/not running/);
    expect(() => registry.attach('usr_a', ids[2] as string, tokens[2] as string)).not.toThrow();
  });
});
