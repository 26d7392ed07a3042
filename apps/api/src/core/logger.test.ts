import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.ts';

describe('createLogger', () => {
  it('writes JSON lines and redacts secret-looking fields at any depth', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'debug', write: (l) => lines.push(l) }).child({ requestId: 'req_1' });
    log.info('login', {
      password: 'p',
      nested: { authorization: 'Bearer x', ok: 1 },
      token: 't',
      cookie: 'c',
    });
    const entry = JSON.parse(lines[0] as string);
    expect(entry).toMatchObject({
      level: 'info',
      msg: 'login',
      requestId: 'req_1',
      password: '[redacted]',
      token: '[redacted]',
      cookie: '[redacted]',
      nested: { authorization: '[redacted]', ok: 1 },
    });
  });

  it('logs errors without stack or cause, and respects the level', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'warn', write: (l) => lines.push(l) });
    log.info('hidden');
    log.error('failed', { error: new Error('boom', { cause: new Error('/host/path') }) });
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toMatch(/stack|host\/path/);
    expect(JSON.parse(lines[0] as string).error).toEqual({ name: 'Error', message: 'boom' });
  });
});
