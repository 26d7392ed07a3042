import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import {
  ADMIN_PASSWORD,
  runCommand as run,
  skipUnlessAvailable,
  startTestApi,
  type TestApi,
} from '@studio/api/testing';
import { createStudioClient } from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { DockerBackend } from '@studio/isolation-docker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The packaged server, installed as the README says (issue 22): `npm pack` in the clone, `npm install -g` of the
// tarball (into a prefix in a temporary folder outside the repository), then started the two ways an MCP client
// does, `studio-mcp` by name and `node path/to/studio-mcp.js`, from an environment holding only PATH (node and
// the installed bin, no dev tools) and the server's two variables, and driven with the official MCP SDK client
// through create_session, exec and destroy_session against a real API (Docker backend).

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const LABELS = { 'studio.test': 'mcp-package' };
const INSTANCE = 'mcp-package-test';
const TEST_DIR = join(REPO, '.cache/test-data/mcp-package');

const backend = new DockerBackend({
  dataDir: join(TEST_DIR, 'docker'),
  instanceId: INSTANCE,
  seccompProfile: runtimePaths().seccompProfile,
});
const skip = await skipUnlessAvailable(backend);

describe.skipIf(skip !== undefined)(`studio-mcp as a package${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let t: TestApi;
  let work = '';
  let prefix = '';
  let token = '';
  const agents: Client[] = [];

  /** Starts the installed server with `env -i`: it sees exactly these variables. */
  async function connect(command: string[]): Promise<{ agent: Client; stderr: string[] }> {
    const env = {
      // node's own folder, then the system's: what a fresh shell has, plus the global bin folder npm wrote to.
      PATH: `${join(prefix, 'bin')}:${dirname(process.execPath)}:/usr/bin:/bin`,
      STUDIO_API_URL: t.url,
      STUDIO_API_TOKEN: token,
    };
    const transport = new StdioClientTransport({
      command: '/usr/bin/env',
      args: ['-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...command],
      cwd: work,
      stderr: 'pipe',
    });
    const stderr: string[] = [];
    transport.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk.toString('utf8')));
    const agent = new Client({ name: 'package-test', version: '0.0.0' });
    agents.push(agent);
    await agent.connect(transport);
    return { agent, stderr };
  }

  async function call(agent: Client, name: string, args: Record<string, unknown>) {
    const result = (await agent.callTool({ name, arguments: args }, undefined, {
      timeout: 90_000,
    })) as CallToolResult;
    expect(result.isError ?? false, JSON.stringify(result.content)).toBe(false);
    return result.structuredContent as Record<string, unknown>;
  }

  beforeAll(async () => {
    mkdirSync(TEST_DIR, { recursive: true });
    work = mkdtempSync(join(tmpdir(), 'studio-mcp-package-'));
    prefix = join(work, 'global');
    t = await startTestApi({
      backends: [backend],
      labels: LABELS,
      env: { STUDIO_DATA_DIR: TEST_DIR, STUDIO_INSTANCE_ID: INSTANCE },
    });
    const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
    await admin.users.create.mutate({ username: 'alice', password: 'alice-password-1' });
    const alice = createStudioClient({ url: t.url, token: await t.login('alice', 'alice-password-1') });
    token = (await alice.tokens.create.mutate({ name: 'packaged mcp', agent: true })).token;

    // Built once for the file: `npm pack` runs the package's prepack (scripts/build.ts, the esbuild bundle).
    await run('npm', ['pack', '-w', '@studio/mcp', '--pack-destination', work], {
      cwd: REPO,
      timeoutMs: 180_000,
    });
    const tarball = readdirSync(work).find((f) => /^studio-mcp-.*\.tgz$/.test(f));
    expect(tarball).toBeDefined();
    // The bundle has no dependencies: nothing is fetched (--offline proves it).
    await run(
      'npm',
      ['install', '-g', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', join(work, tarball!)],
      {
        cwd: work,
        timeoutMs: 120_000,
      },
    );
  });

  afterAll(async () => {
    for (const agent of agents) await agent.close().catch(() => undefined);
    for (const s of await backend.list({ labels: LABELS }))
      await backend.destroy(s.id).catch(() => undefined);
    await t?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('`studio-mcp` by name: create_session, exec, destroy_session', async () => {
    const { agent, stderr } = await connect(['studio-mcp']);
    const tools = (await agent.listTools()).tools.map((tool) => tool.name);
    expect(tools).toEqual(expect.arrayContaining(['create_session', 'exec', 'destroy_session']));

    const session = await call(agent, 'create_session', { image: 'studio-sandbox:latest' });
    expect(session.state).toBe('running');
    const sessionId = String(session.id);
    const exec = await call(agent, 'exec', { sessionId, command: ['sh', '-c', 'echo packaged $((6 * 7))'] });
    expect(exec).toMatchObject({ exitCode: 0, stdout: 'packaged 42\n' });
    expect((await call(agent, 'destroy_session', { sessionId })).state).toBe('destroyed');
    expect(stderr.join('')).toContain(`ready: Studio API ${t.url}`);
  });

  it('`node path/to/studio-mcp.js`: the same server without the bin link', async () => {
    const bin = join(prefix, 'lib', 'node_modules', '@studio', 'mcp', 'dist', 'studio-mcp.js');
    const { agent } = await connect(['node', bin]);
    const capabilities = await call(agent, 'capabilities', {});
    expect(capabilities).toHaveProperty('backends');
  });
});
