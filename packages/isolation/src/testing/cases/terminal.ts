import { describe, expect } from 'vitest';
import type { Terminal } from '../../types.ts';
import { expectIsolationError, sleep, text } from '../fixtures.ts';
import type { ConformanceHarness } from '../harness.ts';

/** Collects a terminal's output and waits for patterns in it. */
class Screen {
  #buffer = '';
  readonly #waiters = new Set<() => void>();
  readonly #unsubscribe: () => void;

  constructor(terminal: Terminal) {
    this.#unsubscribe = terminal.onData((chunk) => {
      this.#buffer += text(chunk);
      for (const wake of this.#waiters) wake();
    });
  }

  get output(): string {
    return this.#buffer;
  }

  /** Resolves with the first match of `pattern` in output received after `from`. */
  waitFor(pattern: RegExp, from = 0, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = this.#buffer.slice(from).match(pattern);
        if (match === null) return;
        cleanup();
        resolve(match);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(`terminal: no ${pattern} within ${timeoutMs} ms; got ${JSON.stringify(this.#buffer)}`),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  dispose(): void {
    this.#unsubscribe();
  }
}

/** PTYs: echo, exit codes and resize; or UNSUPPORTED when `capabilities().terminal` is false. */
export function terminalCases(h: ConformanceHarness): void {
  describe('terminal', () => {
    h.case('terminal.echo-exit', 'a PTY echoes typed input, runs it and reports the exit code', async () => {
      const sandbox = await h.shared();
      if (!h.backend.capabilities().terminal) {
        await expectIsolationError(
          sandbox.openTerminal({ cols: 80, rows: 24 }),
          ['UNSUPPORTED'],
          'openTerminal without the capability',
        );
        return;
      }
      const terminal = await sandbox.openTerminal({ cols: 80, rows: 24, command: ['bash', '--norc', '-i'] });
      const screen = new Screen(terminal);
      try {
        terminal.write('echo typed-$((6*7))\r');
        await screen.waitFor(/echo typed-\$\(\(6\*7\)\)/); // the line discipline echoes what was typed
        await screen.waitFor(/typed-42/); // and the shell ran it
        terminal.write('exit 3\r');
        const exited = await terminal.exited;
        expect(exited.exitCode, screen.output).toBe(3);
      } finally {
        screen.dispose();
        await terminal.close();
      }
    });

    h.case('terminal.resize', 'stty size follows resize()', async () => {
      const sandbox = await h.shared();
      if (!h.backend.capabilities().terminal) {
        await expectIsolationError(
          sandbox.openTerminal({ cols: 80, rows: 24 }),
          ['UNSUPPORTED'],
          'openTerminal without the capability',
        );
        return;
      }
      const terminal = await sandbox.openTerminal({ cols: 80, rows: 24 });
      const screen = new Screen(terminal);
      try {
        terminal.write('stty size; echo END-$((1+1))\r');
        const before = await screen.waitFor(/(\d+) (\d+)\r?\nEND-2/);
        expect([before[1], before[2]]).toEqual(['24', '80']);
        terminal.resize(100, 30);
        // resize() returns void, so the new size may land a moment later: ask until it shows (or give up).
        let size: string[] = [];
        for (let attempt = 0; attempt < 10; attempt++) {
          const mark = screen.output.length;
          terminal.write(`stty size; echo END-$((${attempt}+100))\r`);
          const after = await screen.waitFor(new RegExp(`(\\d+) (\\d+)\\r?\\nEND-${attempt + 100}`), mark);
          size = [after[1] ?? '', after[2] ?? ''];
          if (size[0] === '30') break;
          await sleep(300);
        }
        expect(size).toEqual(['30', '100']);
        terminal.write('exit 0\r');
        expect((await terminal.exited).exitCode).toBe(0);
      } finally {
        screen.dispose();
        await terminal.close();
      }
    });

    h.case(
      'terminal.resize-at-once',
      'a resize sent the moment the terminal opens is not undone',
      async () => {
        const sandbox = await h.shared();
        if (!h.backend.capabilities().terminal) return;
        // A browser fits its terminal and sends the size as soon as it opens; the shell's own start-up must
        // not set the opening size again after it. Several rounds, since the race is about timing.
        for (let round = 0; round < 5; round++) {
          const terminal = await sandbox.openTerminal({ cols: 80, rows: 24 });
          terminal.resize(132, 43);
          const screen = new Screen(terminal);
          try {
            await sleep(200);
            terminal.write(`stty size; echo END-$((${round}+200))\r`);
            const after = await screen.waitFor(new RegExp(`(\\d+) (\\d+)\\r?\\nEND-${round + 200}`));
            expect([after[1], after[2]], `round ${round}`).toEqual(['43', '132']);
          } finally {
            screen.dispose();
            await terminal.close();
          }
        }
      },
    );
  });
}
