import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { type McpEnv, parseEnv } from './env.ts';
import { createStudioMcpServer } from './server.ts';

// stdout carries the protocol and nothing else: every diagnostic goes to stderr.
const log = (line: string) => process.stderr.write(`[studio-mcp] ${line}\n`);

let env: McpEnv;
try {
  env = parseEnv();
} catch (error) {
  log(error instanceof Error ? error.message : String(error));
  process.exit(1);
}

const studio = createStudioMcpServer({ env, log });
let closing = false;
async function shutdown(reason: string): Promise<void> {
  if (closing) return;
  closing = true;
  log(`shutting down (${reason})`);
  await studio.close().catch(() => undefined);
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.stdin.on('end', () => void shutdown('stdin closed'));
studio.server.server.onclose = () => void shutdown('transport closed');

await studio.server.connect(new StdioServerTransport());
log(`ready: Studio API ${env.STUDIO_API_URL}`);
