import { fileURLToPath } from 'node:url';

export type { AgentClientOptions, AgentHello, AgentLogEntry } from './client.ts';
export { AgentClient } from './client.ts';

/**
 * Host directory holding `studio-agent.cjs` and `pty-helper.py`. Backends bind-mount it read-only at
 * `/opt/studio` in every sandbox.
 */
export const AGENT_DIR: string = fileURLToPath(new URL('../../agent', import.meta.url));

/**
 * The sandbox's command: tini as PID 1 (reaps zombies, forwards signals) running the agent with the
 * image's Node (Debian bookworm: /usr/bin/node 18, /usr/bin/tini).
 */
export const AGENT_COMMAND: readonly string[] = Object.freeze([
  '/usr/bin/tini',
  '-s',
  '--',
  '/usr/bin/node',
  '/opt/studio/studio-agent.cjs',
]);
