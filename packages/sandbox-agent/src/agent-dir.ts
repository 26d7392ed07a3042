import { fileURLToPath } from 'node:url';

/**
 * Host directory holding `studio-agent.cjs` and `pty-helper.py`. Backends bind-mount it read-only at
 * `/opt/studio` in every sandbox.
 */
export const AGENT_DIR: string = fileURLToPath(new URL('../agent', import.meta.url));

/**
 * The sandbox's command: tini as PID 1 (reaps zombies, forwards signals) running the agent with the
 * image's Node (Debian bookworm's 18). Both are the image's execute-only copies (infra/image/customize.sh):
 * an executable its user cannot read makes the process non-dumpable, so sandbox code running as the same
 * uid cannot open /proc/<pid>/mem of init or the agent.
 */
export const AGENT_COMMAND: readonly string[] = Object.freeze([
  '/usr/libexec/studio/tini',
  '-s',
  '--',
  '/usr/libexec/studio/node',
  '/opt/studio/studio-agent.cjs',
]);

/**
 * The Rust agent (guest/, built to `agent/studio-agent` by scripts/build-agent.sh) as a sandbox's command: its
 * own init, no tini, no Node in the image. Not yet the backends' default (see the README).
 */
export const AGENT_BINARY_COMMAND: readonly string[] = Object.freeze(['/opt/studio/studio-agent']);
