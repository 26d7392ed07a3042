import { fileURLToPath } from 'node:url';

/**
 * Host directory holding the agent binary `studio-agent` (built by scripts/build-agent.sh). Backends
 * bind-mount it read-only at `/opt/studio` in every sandbox.
 */
export const AGENT_DIR: string = fileURLToPath(new URL('../agent', import.meta.url));

/**
 * The sandbox's command: the agent binary (guest/, static, no dynamic libraries) as PID 1. It is its own
 * init (reaps zombies, forwards signals) and makes itself non-dumpable (PR_SET_DUMPABLE 0), so sandbox code
 * running as the same uid cannot ptrace it or open its /proc/<pid>/mem or /proc/<pid>/fd.
 */
export const AGENT_COMMAND: readonly string[] = Object.freeze(['/opt/studio/studio-agent']);
