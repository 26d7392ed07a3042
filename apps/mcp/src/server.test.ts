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

// A session with an allowlist, for the network tools (every other id is NOT_FOUND).
const NET_SID = 'ses_netnetnetnetnetnetne';
const egressDenied = (host: string) =>
  new StudioClientError(
    `${host} is not on this session's allowlist; add it with sessions.setNetwork (or ask the session's owner) (not_allowed)`,
    {
      code: 'EGRESS_DENIED',
      trpcCode: 'FORBIDDEN',
      httpStatus: 403,
      path: 'sessions.checkEgress',
      requestId: 'req_2',
    },
  );
const setNetworkCalls: unknown[] = [];
const SECRET_VALUE = 'sk-unit-value-never-returned';
const missingSecret = new StudioClientError(
  'you have no secret named NOPE_KEY; store it first with secrets.create (names are case-sensitive)',
  { code: 'NOT_FOUND', trpcCode: 'NOT_FOUND', httpStatus: 404, path: 'sessions.create', requestId: 'req_3' },
);

// A template whose build logs two steps and ends ready; 'broken-stream' ends the same way but its log stream
// fails, so the tool polls templates.get instead.
const TPL = 'tpl_0123456789abcdefgh';
const BUILD_LOG = `#1 file /opt/hello/greeting.txt\n#2 run 1: echo built\n${'output\n'.repeat(3000)}# ready in 1.0 s\n`;
let templateGets = 0;
const templateView = (state: string) => ({
  id: TPL,
  name: 'hello',
  description: null,
  owner: 'you',
  shared: false,
  state,
  usable: state === 'ready',
  image: null,
  sizeBytes: null,
  failure: null,
  spec: { files: [{ path: '/opt/hello/greeting.txt', content: 'g'.repeat(2000) }] },
  createdAt: '2025-01-01T00:00:00.000Z',
  builtAt: null,
});
const templateCalls: unknown[] = [];

// Pause, fork and snapshots (issue 20): SID pauses and forks; forks past two reach the live-session limit; the
// snapshot 'full' passes the quota; 'nope' is no snapshot of the caller's.
const studioError = (code: string, message: string, path: string) =>
  new StudioClientError(message, { code, trpcCode: null, httpStatus: 409, path, requestId: 'req_4' });
const forkCalls: unknown[] = [];

// A stand-in for the API client: only what these tests call.
const fakeClient = {
  templates: {
    create: {
      mutate: async (input: { name: string }) => {
        templateCalls.push(input);
        templateGets = 0;
        return { ...templateView('building'), name: input.name };
      },
    },
    get: {
      query: async () => {
        templateGets += 1;
        // The log stream of 'broken-stream' fails: the tool polls until the build is over (the third read).
        const last = templateCalls.at(-1) as { name: string } | undefined;
        const done = last?.name !== 'broken-stream' || templateGets >= 3;
        return { ...templateView(done ? 'ready' : 'building'), log: done ? BUILD_LOG : '#1 file' };
      },
    },
    logs: {
      subscribe: (
        _input: unknown,
        handlers: { onData: (item: unknown) => void; onError: (e: unknown) => void },
      ) => {
        const last = templateCalls.at(-1) as { name: string } | undefined;
        setTimeout(() => {
          if (last?.name === 'broken-stream') {
            handlers.onError(new Error('stream dropped'));
            return;
          }
          handlers.onData({ type: 'log', text: '#1 file /opt/hello/greeting.txt\n' });
          handlers.onData({ type: 'log', text: '#2 run 1: echo built\n' });
          handlers.onData({ type: 'end', state: 'ready', failure: null });
        }, 5);
        return { unsubscribe: () => undefined };
      },
    },
  },
  snapshots: {
    create: {
      mutate: async (input: { sessionId: string; name: string }) => {
        if (input.name === 'full')
          throw studioError(
            'LIMIT_EXCEEDED',
            'snapshots would take 11 GiB of your 10 GiB',
            'snapshots.create',
          );
        return { id: 'snp-0123456789abcdef', name: input.name, sessionId: input.sessionId, memory: false };
      },
    },
    delete: {
      mutate: async ({ snapshot }: { snapshot: string }) => {
        throw studioError('NOT_FOUND', `you have no snapshot ${snapshot}; snapshots.list shows yours`, 'x');
      },
    },
  },
  sessions: {
    pause: {
      mutate: async ({ sessionId }: { sessionId: string }) => ({ id: sessionId, state: 'paused' }),
    },
    resume: {
      mutate: async ({ sessionId }: { sessionId: string }) => {
        throw studioError('RESTORE_FAILED', `session ${sessionId} could not be restored`, 'sessions.resume');
      },
    },
    fork: {
      mutate: async (input: { sessionId: string; count: number }) => {
        forkCalls.push(input);
        if (input.count > 2)
          throw studioError('SESSION_LIMIT', 'you already have 5 live sessions', 'sessions.fork');
        return Array.from({ length: input.count }, (_, i) => ({
          id: `ses_fork${i}fork${i}fork${i}fork`,
          state: 'running',
          parentId: input.sessionId,
        }));
      },
    },
    create: {
      mutate: async (input: { secrets?: string[]; fromSnapshot?: string }) => {
        if (input.secrets?.includes('NOPE_KEY')) throw missingSecret;
        if (input.fromSnapshot === 'nope')
          throw studioError('NOT_FOUND', 'you have no snapshot nope; snapshots.list shows yours', 'x');
        return { id: SID, state: 'running', input };
      },
    },
    get: {
      query: async ({ sessionId }: { sessionId: string }) => {
        if (sessionId !== NET_SID) throw notFound();
        return {
          id: NET_SID,
          state: 'running',
          network: { mode: 'allowlist', allow: ['registry.npmjs.org'] },
        };
      },
    },
    setNetwork: {
      mutate: async (input: { sessionId: string; network: unknown }) => {
        setNetworkCalls.push(input);
        return { id: input.sessionId, state: 'running', network: input.network };
      },
    },
    checkEgress: {
      query: async ({ host, port }: { host: string; port: number }) => {
        if (host === 'registry.npmjs.org' && port === 443) return { allowed: true, host, port };
        throw egressDenied(host);
      },
    },
  },
  secrets: {
    list: {
      // A record with a field the API never sends: list_secrets must pass on names, hosts and header only.
      query: async () => [
        {
          name: 'OPENAI_API_KEY',
          hosts: ['api.openai.com'],
          header: 'Authorization: Bearer {{value}}',
          createdAt: '2025-01-01T00:00:00.000Z',
          updatedAt: '2025-01-01T00:00:00.000Z',
          value: SECRET_VALUE,
        },
      ],
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

  it('creates a template from top-level recipe fields, waits for its build and returns the log tail', async () => {
    const client = await connect();
    templateCalls.length = 0;
    const progress: string[] = [];
    const r = (await client.callTool(
      {
        name: 'create_template',
        arguments: { name: 'hello', files: [{ path: '/opt/hello/greeting.txt', content: 'hi' }] },
      },
      undefined,
      { onprogress: (p) => progress.push(p.message ?? '') },
    )) as CallToolResult;
    expect(r.isError ?? false).toBe(false);
    expect(templateCalls).toEqual([
      {
        name: 'hello',
        spec: {
          files: [
            {
              path: '/opt/hello/greeting.txt',
              content: 'hi',
              encoding: 'utf8',
              mode: 0o644,
              owner: 'studio',
            },
          ],
        },
      },
    ]);
    const body = r.structuredContent as Record<string, unknown> & {
      template: { spec: { files: unknown[] } };
    };
    expect(body).toMatchObject({
      outcome: 'ready',
      logTruncated: true,
      next: expect.stringMatching(/create_session/),
    });
    expect((body.log as string).length).toBeLessThanOrEqual(8 * 1024);
    expect(body.log).toMatch(/# ready in 1\.0 s\n$/);
    expect(body.template.spec.files[0]).toMatchObject({ contentTruncated: true });
    expect(progress).toContain('#2 run 1: echo built');
  });

  it('polls templates.get when the log stream fails, and returns at once with wait: false', async () => {
    const client = await connect();
    templateCalls.length = 0;
    const r = (await client.callTool({
      name: 'create_template',
      arguments: { name: 'broken-stream' },
    })) as CallToolResult;
    expect(r.structuredContent).toMatchObject({ outcome: 'ready' });
    // Three polls (the build ends on the third), then the read the answer is made of.
    expect(templateGets).toBe(4);
    const quick = (await client.callTool({
      name: 'create_template',
      arguments: { name: 'broken-stream', wait: false },
    })) as CallToolResult;
    expect(quick.structuredContent).toMatchObject({
      outcome: 'building',
      next: expect.stringMatching(/get_template/),
    });
  });

  it('passes a template to sessions.create instead of the default image', async () => {
    const client = await connect();
    const r = (await client.callTool({
      name: 'create_session',
      arguments: { template: 'hello' },
    })) as CallToolResult;
    expect(r.structuredContent).toMatchObject({ input: { template: 'hello', backend: 'auto' } });
    expect((r.structuredContent as { input: Record<string, unknown> }).input.image).toBeUndefined();
  });

  it('lists secrets by name, hosts and header, never a value', async () => {
    const client = await connect();
    const r = (await client.callTool({ name: 'list_secrets', arguments: {} })) as CallToolResult;
    expect(r.structuredContent).toEqual({
      secrets: [
        { name: 'OPENAI_API_KEY', hosts: ['api.openai.com'], header: 'Authorization: Bearer {{value}}' },
      ],
    });
    expect(JSON.stringify(r)).not.toContain(SECRET_VALUE);
  });

  it('gives a session secrets by name; a missing one says who can add it', async () => {
    const client = await connect();
    const r = (await client.callTool({
      name: 'create_session',
      arguments: { secrets: ['OPENAI_API_KEY'] },
    })) as CallToolResult;
    expect(r.structuredContent).toMatchObject({ input: { secrets: ['OPENAI_API_KEY'] } });
    const missing = errorOf(
      (await client.callTool({
        name: 'create_session',
        arguments: { secrets: ['NOPE_KEY'] },
      })) as CallToolResult,
    );
    expect(missing).toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringMatching(/^you have no secret named NOPE_KEY; .* \(request req_3\)$/),
    });
    expect(missing.fix).toMatch(/list_secrets/);
    expect(missing.fix).toMatch(/Secrets page/);
    // A session that does not exist is still the ordinary NOT_FOUND.
    const read = errorOf(
      (await client.callTool({
        name: 'read_file',
        arguments: { sessionId: SID, path: 'a' },
      })) as CallToolResult,
    );
    expect(read.fix).not.toMatch(/Secrets page/);
  });

  it('sets the network through the API with the canonical allowlist', async () => {
    const client = await connect();
    setNetworkCalls.length = 0;
    const r = (await client.callTool({
      name: 'set_network',
      arguments: {
        sessionId: NET_SID,
        network: { mode: 'allowlist', allow: ['Example.COM', '*.pypi.org:8443'] },
      },
    })) as CallToolResult;
    expect(r.isError ?? false).toBe(false);
    expect(setNetworkCalls).toEqual([
      { sessionId: NET_SID, network: { mode: 'allowlist', allow: ['example.com', '*.pypi.org:8443'] } },
    ]);
    expect(r.structuredContent).toMatchObject({ network: { mode: 'allowlist' } });
    const bad = (await client.callTool({
      name: 'set_network',
      arguments: { sessionId: NET_SID, network: { mode: 'allowlist', allow: ['localhost'] } },
    })) as CallToolResult;
    expect(errorOf(bad)).toMatchObject({
      code: 'HOST_INVALID',
      fix: expect.stringMatching(/\*\.example\.com/),
    });
    expect(setNetworkCalls).toHaveLength(1);
  });

  it('check_egress: allowed, or EGRESS_DENIED naming the host and the set_network call that allows it', async () => {
    const client = await connect();
    const allowed = (await client.callTool({
      name: 'check_egress',
      arguments: { sessionId: NET_SID, host: 'registry.npmjs.org' },
    })) as CallToolResult;
    expect(allowed.structuredContent).toEqual({ allowed: true, host: 'registry.npmjs.org', port: 443 });

    const denied = (await client.callTool({
      name: 'check_egress',
      arguments: { sessionId: NET_SID, host: 'GitHub.com', port: 8443 },
    })) as CallToolResult;
    expect(denied.isError).toBe(true);
    const body = errorOf(denied);
    expect(body.code).toBe('EGRESS_DENIED');
    expect(body.message).toMatch(/^GitHub\.com is not on this session's allowlist; .* \(request req_2\)$/);
    // The fix is the exact call: the entries already there, plus this host and port.
    expect(body.fix).toContain('call set_network with');
    expect(body.fix).toContain(
      JSON.stringify({
        sessionId: NET_SID,
        network: { mode: 'allowlist', allow: ['registry.npmjs.org', 'github.com:8443'] },
      }),
    );
    expect(body.fix).toMatch(/HUMAN_HAS_CONTROL/);
    expect(JSON.stringify(denied)).not.toMatch(/\n\s+at /);

    // An IP address is allowed only as a block: the API's message says which; the fix stays the general one.
    const literal = errorOf(
      (await client.callTool({
        name: 'check_egress',
        arguments: { sessionId: NET_SID, host: '203.0.113.7' },
      })) as CallToolResult,
    );
    expect(literal.code).toBe('EGRESS_DENIED');
    expect(literal.fix).toMatch(/^the session's network settings do not let/);
    // So is a local name, which no entry can allow.
    const local = errorOf(
      (await client.callTool({
        name: 'check_egress',
        arguments: { sessionId: NET_SID, host: 'metadata.internal' },
      })) as CallToolResult,
    );
    expect(local.code).toBe('EGRESS_DENIED');
    expect(local.fix).not.toContain('metadata.internal');
  });

  it('pauses, forks (returning the fork ids) and resumes, with fixes an agent can act on', async () => {
    const client = await connect();
    const call = async (name: string, args: Record<string, unknown>) =>
      (await client.callTool({ name, arguments: args })) as CallToolResult;
    expect((await call('pause_session', { sessionId: SID })).structuredContent).toEqual({
      id: SID,
      state: 'paused',
    });
    forkCalls.length = 0;
    const forked = (await call('fork_session', { sessionId: SID, count: 2 })).structuredContent;
    expect(forkCalls).toEqual([{ sessionId: SID, count: 2 }]);
    expect(forked).toMatchObject({
      parentId: SID,
      forkIds: ['ses_fork0fork0fork0fork', 'ses_fork1fork1fork1fork'],
      forks: [{ parentId: SID }, { parentId: SID }],
    });
    expect((await call('fork_session', { sessionId: SID })).structuredContent).toMatchObject({
      forkIds: ['ses_fork0fork0fork0fork'],
    });
    const limit = errorOf(await call('fork_session', { sessionId: SID, count: 3 }));
    expect(limit).toMatchObject({
      code: 'SESSION_LIMIT',
      message: 'you already have 5 live sessions (request req_4)',
    });
    expect(limit.fix).toMatch(/Forks made before the limit was reached are kept/);
    const restore = errorOf(await call('resume_session', { sessionId: SID }));
    expect(restore.code).toBe('RESTORE_FAILED');
    expect(restore.fix).toMatch(/start_session/);
  });

  it('snapshots a session, starts one from a snapshot without the default image, and says how to free quota', async () => {
    const client = await connect();
    const call = async (name: string, args: Record<string, unknown>) =>
      (await client.callTool({ name, arguments: args })) as CallToolResult;
    expect(
      (await call('snapshot_session', { sessionId: SID, name: 'ready' })).structuredContent,
    ).toMatchObject({
      id: 'snp-0123456789abcdef',
      name: 'ready',
    });
    const full = errorOf(await call('snapshot_session', { sessionId: SID, name: 'full' }));
    expect(full.code).toBe('LIMIT_EXCEEDED');
    expect(full.fix).toMatch(/list_snapshots.*delete_snapshot/);
    const created = await call('create_session', { fromSnapshot: 'ready', keepAwake: true });
    expect(created.structuredContent).toMatchObject({
      input: { fromSnapshot: 'ready', keepAwake: true, backend: 'auto' },
    });
    expect((created.structuredContent as { input: Record<string, unknown> }).input.image).toBeUndefined();
    const missing = errorOf(await call('create_session', { fromSnapshot: 'nope' }));
    expect(missing).toMatchObject({ code: 'NOT_FOUND', fix: expect.stringMatching(/list_snapshots/) });
    const gone = errorOf(await call('delete_snapshot', { snapshot: 'nope' }));
    expect(gone).toMatchObject({ code: 'NOT_FOUND', fix: expect.stringMatching(/list_snapshots/) });
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
