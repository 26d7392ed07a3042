import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_DIR } from './agent-dir.ts';
import { AgentClient, type AgentClientOptions } from './client.ts';

/** The agent binary, where `packages/sandbox-agent/scripts/build-agent.sh` puts it. */
export const AGENT_BINARY: string = join(AGENT_DIR, 'studio-agent');

/** Why the agent cannot run here (it is not built), or undefined when it can. */
export function localAgentMissing(): string | undefined {
  if (!existsSync(AGENT_BINARY)) {
    return 'the agent is not built: run packages/sandbox-agent/scripts/build-agent.sh (needs cargo, gcc, libc6-dev)';
  }
  return undefined;
}

/** Options of {@link spawnLocalAgent}. */
export interface LocalAgentOptions extends Omit<AgentClientOptions, 'input' | 'output'> {
  /** Directory the agent treats as its workspace. */
  workspace: string;
  /** Extra environment for the agent process (PATH and HOME default to this process's). */
  env?: Record<string, string>;
}

export interface LocalAgent extends AsyncDisposable {
  client: AgentClient;
  child: ChildProcessWithoutNullStreams;
  /** What the agent wrote to stderr (the last 64 KiB). */
  stderr(): string;
}

/**
 * For tests only: runs the agent as a plain child process of this one (no sandbox) over pipes, with
 * `workspace` as its workspace, and says hello. Disposing closes the connection, which ends the agent.
 */
export async function spawnLocalAgent(options: LocalAgentOptions): Promise<LocalAgent> {
  const { workspace, env, ...clientOptions } = options;
  const missing = localAgentMissing();
  if (missing) throw new Error(missing);
  const child = spawn(AGENT_BINARY, [], {
    stdio: ['pipe', 'pipe', 'pipe'],
    // A fixed environment, not the host's: what runs under the agent sees what it would see in a sandbox.
    env: {
      PATH: '/usr/local/bin:/usr/bin:/bin',
      HOME: workspace,
      ...env,
      STUDIO_WORKSPACE: workspace,
    },
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    stderr = (stderr + s).slice(-65536);
  });
  const client = new AgentClient({ ...clientOptions, input: child.stdout, output: child.stdin });
  const exited = once(child, 'exit').catch(() => undefined);
  const dispose = async () => {
    await client.close();
    if (child.exitCode === null && child.signalCode === null) {
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(timer);
    }
  };
  try {
    await client.hello();
  } catch (error) {
    await dispose();
    throw new Error(`local agent did not start: ${String(error)}\n${stderr}`, { cause: error });
  }
  return { client, child, stderr: () => stderr, [Symbol.asyncDispose]: dispose };
}
