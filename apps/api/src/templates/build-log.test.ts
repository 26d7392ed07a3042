import { describe, expect, it } from 'vitest';
import { BUILD_LOG_BYTES, BuildLog, type BuildLogItem } from './build-log.ts';

async function collect(log: BuildLog, signal = new AbortController().signal): Promise<BuildLogItem[]> {
  const items: BuildLogItem[] = [];
  for await (const item of log.follow(signal)) items.push(item);
  return items;
}

describe('BuildLog', () => {
  it('gives a late reader what was logged, then the rest live, then the end', async () => {
    const log = new BuildLog();
    log.append('#1 first\n');
    const items = collect(log);
    log.append('#2 second\n');
    log.end('failed', 'step 2 failed');
    log.append('after the end is dropped\n');
    expect(await items).toEqual([
      { type: 'log', text: '#1 first\n' },
      { type: 'log', text: '#2 second\n' },
      { type: 'end', state: 'failed', failure: 'step 2 failed' },
    ]);
    expect(await collect(log)).toEqual([
      { type: 'log', text: '#1 first\n#2 second\n' },
      { type: 'end', state: 'failed', failure: 'step 2 failed' },
    ]);
  });

  it('keeps only the tail of a log without end, and lets a reader go', async () => {
    const log = new BuildLog();
    for (let i = 0; i < 300; i++) log.append(`${String(i).padStart(4, '0')}${'x'.repeat(1019)}\n`);
    expect(log.text().length).toBeLessThanOrEqual(BUILD_LOG_BYTES);
    expect(log.text().endsWith(`0299${'x'.repeat(1019)}\n`)).toBe(true);
    const stop = new AbortController();
    const reading = collect(log, stop.signal);
    stop.abort();
    expect((await reading).length).toBeLessThanOrEqual(1);
  });
});
