import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Terminal } from '@studio/isolation';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AgentFixture,
  createFixture,
  describeAgent,
  expectCode,
  processesWith,
  uniqueSleep,
  until,
} from './test-utils.ts';

describeAgent(() => {
  let f: AgentFixture;
  beforeAll(async () => {
    f = await createFixture();
  });
  afterAll(async () => {
    await f?.dispose();
  });

  /** Collects a terminal's output as text. */
  function record(t: Terminal): { text(): string } {
    let out = '';
    t.onData((chunk) => {
      out += Buffer.from(chunk).toString('utf8');
    });
    return { text: () => out };
  }

  describe('terminal', () => {
    it('echoes input and runs commands in a shell', async () => {
      await using t = await f.client.openTerminal({ cols: 80, rows: 24, command: ['/bin/sh'] });
      const out = record(t);
      t.write('echo $((6 * 7))\n');
      await until(() => out.text().includes('42'), 10_000, 'the answer');
      expect(out.text()).toContain('echo $((6 * 7))');
    });

    it('opens a login shell by default, in the workspace or the given cwd', async () => {
      mkdirSync(join(f.ws, 'term-cwd'));
      await using t = await f.client.openTerminal({ cols: 80, rows: 24, cwd: 'term-cwd' });
      const out = record(t);
      t.write('echo "[$PWD|$TERM]"\n');
      await until(() => out.text().includes(`[${join(f.ws, 'term-cwd')}|xterm-256color]`), 10_000, 'pwd');
    });

    it('is a real tty whose size follows resize', async () => {
      await using t = await f.client.openTerminal({ cols: 80, rows: 24, command: ['/bin/sh'] });
      const out = record(t);
      t.write('stty size; tty\n');
      await until(
        () => out.text().includes('24 80') && /\/dev\/pts\/\d+/.test(out.text()),
        10_000,
        'initial size',
      );
      t.resize(132, 43);
      t.write('stty size\n');
      await until(() => out.text().includes('43 132'), 10_000, 'new size');
    });

    it('reports the exit status of the program', async () => {
      const t = await f.client.openTerminal({ cols: 80, rows: 24, command: ['/bin/sh'] });
      t.write('exit 7\n');
      expect(await t.exited).toEqual({ exitCode: 7, signal: null });
      const t2 = await f.client.openTerminal({ cols: 80, rows: 24, command: ['sh', '-c', 'kill -TERM $$'] });
      expect(await t2.exited).toEqual({ exitCode: null, signal: 'SIGTERM' });
      const t3 = await f.client.openTerminal({ cols: 80, rows: 24, command: ['no-such-program-xyz'] });
      const out = record(t3);
      expect((await t3.exited).exitCode).toBe(127);
      await until(() => out.text().includes('no-such-program-xyz'), 5000, 'error message');
    });

    it('close() kills the program and everything it started', async () => {
      const s = uniqueSleep();
      const t = await f.client.openTerminal({ cols: 80, rows: 24, command: ['/bin/sh'] });
      t.write(`sleep ${s} & sleep ${s}\n`);
      await until(() => processesWith(`sleep ${s}`).length === 2, 10_000, 'sleeps to start');
      await t.close();
      expect((await t.exited).signal).toBe('SIGKILL');
      await until(() => processesWith(`sleep ${s}`).length === 0, 5000, 'sleeps to die');
      t.write('ignored after exit');
    });

    it('refuses bad sizes and commands', async () => {
      await expectCode(f.client.openTerminal({ cols: 0, rows: 24 }), 'INVALID_INPUT');
      await expectCode(f.client.openTerminal({ cols: 80, rows: 24, command: [] }), 'INVALID_INPUT');
      await expectCode(f.client.openTerminal({ cols: 80, rows: 24, cwd: '../x' }), 'INVALID_INPUT');
    });
  });

  // The agent opens PTYs itself: no python3 helper.
  describe('terminal without python3', () => {
    it('needs no python3: a PTY opens with an empty PATH', async () => {
      const empty = join(f.root, 'empty-bin-rust');
      mkdirSync(empty);
      const g = await createFixture({ env: { PATH: empty } });
      try {
        expect(g.client.info?.terminal).toBe(true);
        const t = await g.client.openTerminal({ cols: 80, rows: 24, command: ['/bin/sh'] });
        const out = record(t);
        t.write('echo "tty:$(( 6 * 7 ))"; exit 3\n');
        expect(await t.exited).toEqual({ exitCode: 3, signal: null });
        await until(() => out.text().includes('tty:42'), 5000, 'the shell to answer');
      } finally {
        await g.dispose();
      }
    });
  });
});
