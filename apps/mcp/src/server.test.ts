import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { type StudioClient, StudioClientError } from '@studio/client';
import { afterEach, describe, expect, it } from 'vitest';
import { parseEnv } from './env.ts';
import {
  createStudioMcpServer,
  eventsUri,
  fileUri,
  parseResourceUri,
  type StudioMcpServer,
} from './server.ts';

const SID = 'ses_0123456789abcdefgh';
const notFound = () =>
  new StudioClientError(`session ${SID} not found`, {
    code: 'NOT_FOUND',
    trpcCode: 'NOT_FOUND',
    httpStatus: 404,
    path: 'files.read',
    requestId: 'req_1',
  });

// A stand-in for the API client: only what these tests call.
const fakeClient = {
  sessions: {
    create: { mutate: async (input: unknown) => ({ id: SID, state: 'running', input }) },
    get: {
      query: async () => {
        throw notFound();
      },
    },
  },
  files: {
    read: {
      query: async () => {
        throw notFound();
      },
    },
    list: {
      query: async () => {
        throw new TypeError('socket hang up at internal.js:1:1');
      },
    },
  },
} as unknown as StudioClient;

let studio: StudioMcpServer | undefined;
const logs: string[] = [];

async function connect(): Promise<Client> {
  studio = createStudioMcpServer({
    env: parseEnv({ STUDIO_API_TOKEN: 'sst_test' }),
    client: fakeClient,
    log: (line) => logs.push(line),
  });
  const [a, b] = InMemoryTransport.createLinkedPair();
  const client = new Client({ name: 'unit', version: '0' });
  await Promise.all([studio.server.connect(a), client.connect(b)]);
  return client;
}

afterEach(async () => {
  await studio?.close();
  logs.length = 0;
});

const errorOf = (r: CallToolResult) => (r.structuredContent as { error: Record<string, string> }).error;

describe('the Studio MCP server (fake API)', () => {
  it('validates arguments before calling the API, answering { code, message, fix }', async () => {
    const client = await connect();
    const r = (await client.callTool({
      name: 'read_file',
      arguments: { sessionId: SID, path: '../../etc/shadow' },
    })) as CallToolResult;
    expect(r.isError).toBe(true);
    expect(errorOf(r)).toMatchObject({ code: 'PATH_TRAVERSAL' });
    const missing = (await client.callTool({ name: 'read_file', arguments: {} })) as CallToolResult;
    expect(errorOf(missing).code).toBe('INPUT_INVALID');
    expect(errorOf(missing).message).toMatch(/sessionId/);
  });

  it("maps the API's errors and hides unexpected ones", async () => {
    const client = await connect();
    const r = (await client.callTool({
      name: 'read_file',
      arguments: { sessionId: SID, path: 'a' },
    })) as CallToolResult;
    expect(errorOf(r)).toMatchObject({
      code: 'NOT_FOUND',
      message: `session ${SID} not found (request req_1)`,
    });
    const boom = (await client.callTool({
      name: 'list_files',
      arguments: { sessionId: SID },
    })) as CallToolResult;
    expect(errorOf(boom)).toEqual({
      code: 'INTERNAL',
      message: 'the MCP server failed unexpectedly',
      fix: expect.any(String),
    });
    expect(JSON.stringify(boom)).not.toContain('socket hang up');
    expect(logs.join('\n')).toContain('socket hang up'); // the operator still sees it, on stderr
  });

  it('fills in the default image', async () => {
    const client = await connect();
    const r = (await client.callTool({ name: 'create_session', arguments: {} })) as CallToolResult;
    expect(r.structuredContent).toMatchObject({ input: { image: 'studio-sandbox:latest', backend: 'auto' } });
  });

  it('refuses subscriptions to unknown URIs and to sessions the API does not show', async () => {
    const client = await connect();
    expect(client.getServerCapabilities()?.resources).toMatchObject({ subscribe: true });
    await expect(client.subscribeResource({ uri: 'file:///etc/passwd' })).rejects.toMatchObject({
      data: { code: 'INPUT_INVALID' },
    });
    await expect(client.subscribeResource({ uri: fileUri(SID, 'a/../../b') })).rejects.toMatchObject({
      data: { code: 'PATH_TRAVERSAL' },
    });
    await expect(client.subscribeResource({ uri: eventsUri(SID) })).rejects.toMatchObject({
      data: { code: 'NOT_FOUND', fix: expect.stringMatching(/list_sessions/) },
    });
  });
});

describe('resource URIs', () => {
  it('round-trip through fileUri / parseResourceUri with the canonical path', () => {
    expect(parseResourceUri(fileUri(SID, 'src/my file.ts'))).toEqual({
      kind: 'file',
      sessionId: SID,
      path: 'src/my file.ts',
    });
    expect(parseResourceUri(eventsUri(SID))).toEqual({ kind: 'events', sessionId: SID });
    expect(() => parseResourceUri(`studio://sessions/ses_x/events`)).toThrow(/not a Studio resource/);
  });
});
