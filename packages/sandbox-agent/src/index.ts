// The public surface of @studio/sandbox-agent: the in-sandbox agent's location and command, its host-side
// client, and the Sandbox base class every agent-driven backend extends. The protocol codec is internal;
// `./local` (spawnLocalAgent) runs the agent as a plain host process, for tests only.

export { AgentConnections } from './agent-connections.ts';
export { AGENT_COMMAND, AGENT_DIR } from './agent-dir.ts';
export { AgentSandbox } from './agent-sandbox.ts';
export type { AgentClientOptions, AgentHello, AgentLogEntry } from './client.ts';
export { AgentClient } from './client.ts';
