import { describe, expect, it } from 'vitest';
import { logTail, MAX_LOG_TAIL, nextStep, specForAgent } from './template-build.ts';

describe('template answers stay bounded', () => {
  it('returns a short log whole, and the tail of a long one from a line start', () => {
    expect(logTail('#1 file /a\n')).toEqual({ log: '#1 file /a\n', logTruncated: false });
    const long = `${'x'.repeat(MAX_LOG_TAIL)}\n${'line\n'.repeat(2000)}`;
    const tail = logTail(long);
    expect(tail.logTruncated).toBe(true);
    expect(tail.log.length).toBeLessThanOrEqual(MAX_LOG_TAIL);
    expect(tail.log.startsWith('line\n')).toBe(true);
    expect(long.endsWith(tail.log)).toBe(true);
  });

  it("cuts file contents and shows a Dockerfile's text", () => {
    const big = 'y'.repeat(5000);
    expect(
      specForAgent({
        files: [
          { path: '/a', content: big },
          { path: '/b', content: 'b' },
        ],
      }),
    ).toEqual({
      files: [
        { path: '/a', content: 'y'.repeat(512), contentTruncated: true },
        { path: '/b', content: 'b' },
      ],
    });
    expect(specForAgent({ dockerfile: { from: 'default', text: 'FROM default' }, workdir: '' })).toEqual({
      dockerfile: 'FROM default',
      workdir: '',
    });
  });

  it('says what to do next in each state', () => {
    const t = { id: 'tpl_0123456789abcdefgh', name: 'hello', usable: false };
    expect(nextStep({ ...t, state: 'ready', usable: true })).toMatch(
      /create_session with \{ "template": "hello" \}/,
    );
    expect(nextStep({ ...t, state: 'failed' })).toMatch(/read the log/);
    expect(nextStep({ ...t, state: 'failed', usable: true })).toMatch(/previous good build is still usable/);
    expect(nextStep({ ...t, state: 'building' })).toMatch(/get_template/);
  });
});
