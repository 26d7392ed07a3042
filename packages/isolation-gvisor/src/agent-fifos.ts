import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { IsolationError } from '@studio/isolation';
import { execa } from 'execa';

/**
 * The sandbox's first process's stdin and stdout, two FIFOs in its bundle: the agent's channel (see
 * `GVisorBackend`'s `#connect`). FIFOs, not the pipes Node makes for a child: those are socket pairs, and a
 * detached runsc sandbox reads the end of its input at once from a socket handed to it as stdin (measured:
 * a real pipe or a FIFO works).
 */
export const FIFO_IN = 'agent.in';
export const FIFO_OUT = 'agent.out';

/** Makes the bundle's FIFOs (mode 0600), replacing anything else of those names. */
export async function makeFifos(bundle: string): Promise<void> {
  const missing = [];
  for (const name of [FIFO_IN, FIFO_OUT]) {
    const s = await stat(join(bundle, name)).catch(() => undefined);
    if (!s?.isFIFO()) {
      if (s) await rm(join(bundle, name), { force: true });
      missing.push(join(bundle, name));
    }
  }
  if (missing.length === 0) return;
  try {
    await execa('mkfifo', ['-m', '600', ...missing], { stdin: 'ignore', timeout: 30_000 });
  } catch (error) {
    throw new IsolationError('INTERNAL', `could not make the agent's FIFOs in ${bundle}`, { cause: error });
  }
}

/** See {@link openBoundFifos}. */
export interface BoundFifos {
  /** For runsc: the sandbox's stdin (the read end of `agent.in`). */
  sandboxStdin: number;
  /** For runsc: the sandbox's stdout (the write end of `agent.out`). */
  sandboxStdout: number;
  /** Closes the two descriptors above (once runsc has handed them to the sandbox, or failed). */
  closeSandboxEnds(): void;
  /** The agent's stdout, for an `AgentClient`'s `input`. */
  input: Socket;
  /** The agent's stdin, for an `AgentClient`'s `output`. */
  output: Socket;
}

/**
 * Opens the bundle's FIFOs one way each, for a sandbox that must not outlive this process (a template build):
 * the sandbox gets only the read end of its stdin and the write end of its stdout, this process the other
 * ends. When this process goes away (killed included), the agent reads the end of its input, stops everything
 * and exits, which stops the sandbox. A session's sandbox instead holds both ends (O_RDWR) so that it survives
 * an API restart. Every open is non-blocking, so none waits for the other side.
 */
export function openBoundFifos(bundle: string): BoundFifos {
  const fds: number[] = [];
  const open = (name: string, flags: number) => {
    const fd = openSync(join(bundle, name), flags | fsConstants.O_NONBLOCK);
    fds.push(fd);
    return fd;
  };
  try {
    // Readers first: a non-blocking open for writing fails (ENXIO) while a FIFO has no reader.
    const sandboxStdin = open(FIFO_IN, fsConstants.O_RDONLY);
    const ours = open(FIFO_OUT, fsConstants.O_RDONLY);
    const sandboxStdout = open(FIFO_OUT, fsConstants.O_WRONLY);
    const theirs = open(FIFO_IN, fsConstants.O_WRONLY);
    let closed = false;
    return {
      sandboxStdin,
      sandboxStdout,
      closeSandboxEnds: () => {
        if (closed) return;
        closed = true;
        closeSync(sandboxStdin);
        closeSync(sandboxStdout);
      },
      input: new Socket({ fd: ours, readable: true, writable: false }),
      output: new Socket({ fd: theirs, readable: false, writable: true }),
    };
  } catch (error) {
    for (const fd of fds) closeSync(fd);
    throw new IsolationError('INTERNAL', `could not open the agent's FIFOs in ${bundle}`, { cause: error });
  }
}
