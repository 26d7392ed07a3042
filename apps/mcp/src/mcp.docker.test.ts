import { spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  type CallToolResult,
  type Progress,
  ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { ADMIN_PASSWORD, startTestApi, type TestApi } from '@studio/api/testing';
import { createStudioClient, type EventSourceConstructor, type StudioClient } from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { DockerBackend } from '@studio/isolation-docker';
import { EventSource } from 'eventsource';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ToolErrorBody } from './errors.ts';
import { eventsUri, fileUri } from './server.ts';

// The harness: the real API (127.0.0.1, PGlite, DockerBackend) and the MCP server spawned over stdio, driven
// by the SDK's own Client like an agent would. Sandboxed per ../../shared/seeds/000_46ff2fc4de087f1e.txt: only
// 127.0.0.1; the server process gets NODE_ENV=test and an allowlist of variables (env -i: nothing else is
// inherited); its cwd is this test's own directory; every process started is tracked and killed in afterAll
// and on SIGINT/SIGTERM. Sandboxes are labelled studio.test=mcp.

const IMAGE = 'studio-sandbox:latest';
const LABELS = { 'studio.test': 'mcp' };
const INSTANCE = 'mcp-test';
const APP_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const REPO = resolve(APP_DIR, '../..');
const TEST_DIR = join(REPO, '.cache/test-data/mcp');
const RUN_DIR = join(TEST_DIR, `run-${process.pid}`);
const MAIN = join(APP_DIR, 'src/main.ts');

const backend = new DockerBackend({
  dataDir: join(TEST_DIR, 'docker'),
  instanceId: INSTANCE,
  seccompProfile: runtimePaths().seccompProfile,
});
const availability = await backend.available();
const inCi = process.env.CI === 'true' || process.env.CI === '1';
if (!availability.ok && inCi) throw new Error(`Docker is required in CI: ${availability.reason}`);
const skip = availability.ok ? undefined : availability.reason;

// A secret alice stores through the API (values are for people): the agent names it, never sees it.
const SECRET_VALUE = 'sk-mcp-harness-value-0123456789';

const WEB_SERVER = `const http = require('http');
http.createServer((req, res) => {
  res.setHeader('content-type', 'text/plain');
  res.end('hello from ' + req.url + ' in the sandbox');
}).listen(3000, '127.0.0.1');
`;

/** Every process this file starts, by pid: killed in afterAll and on SIGINT/SIGTERM. */
const processes = new Set<number>();
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
function killAll(signal: NodeJS.Signals): void {
  for (const pid of processes) {
    if (!alive(pid)) processes.delete(pid);
    else process.kill(pid, signal);
  }
}
const onSignal = (signal: NodeJS.Signals) => {
  killAll('SIGKILL');
  process.exit(signal === 'SIGINT' ? 130 : 143);
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

const transcript: string[] = [];
const brief = (value: unknown, max = 160) => {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max)}…` : text;
};

describe.skipIf(skip !== undefined)(`MCP server over stdio${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let t: TestApi;
  let alice: StudioClient;
  let bob: StudioClient;
  let agent: Client;
  let transport: StdioClientTransport;
  let sessionId = '';
  let bobSession = '';
  let forkId = '';
  const stderr: string[] = [];
  const updated: string[] = [];
  const protocolErrors: unknown[] = [];
  let allowlist: Record<string, string> = {};

  async function tool(
    name: string,
    args: Record<string, unknown>,
    options: { onprogress?: (p: Progress) => void; quiet?: boolean } = {},
  ): Promise<CallToolResult> {
    const result = (await agent.callTool({ name, arguments: args }, undefined, {
      timeout: 90_000,
      ...(options.onprogress ? { onprogress: options.onprogress } : {}),
    })) as CallToolResult;
    if (!options.quiet) {
      transcript.push(`agent → ${name} ${brief(args)}`);
      transcript.push(`      ← ${result.isError ? 'ERROR ' : ''}${brief(result.structuredContent)}`);
    }
    return result;
  }
  function ok(result: CallToolResult): Record<string, unknown> {
    expect(result.isError ?? false, JSON.stringify(result.content)).toBe(false);
    return result.structuredContent as Record<string, unknown>;
  }
  function failed(result: CallToolResult): ToolErrorBody {
    expect(result.isError).toBe(true);
    const body = (result.structuredContent as { error: ToolErrorBody }).error;
    expect(Object.keys(body).sort()).toEqual(['code', 'fix', 'message']);
    expect(JSON.parse((result.content[0] as { text: string }).text)).toEqual({ error: body });
    expect(body.message).not.toMatch(/\n\s+at /); // never a stack trace
    return body;
  }

  beforeAll(async () => {
    mkdirSync(RUN_DIR, { recursive: true });
    t = await startTestApi({
      backends: [backend],
      labels: LABELS,
      env: { STUDIO_DATA_DIR: TEST_DIR, STUDIO_INSTANCE_ID: INSTANCE, STUDIO_PREVIEW_PORT: '0' },
    });
    expect(new URL(t.url).hostname).toBe('127.0.0.1');
    const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
    await admin.users.create.mutate({ username: 'alice', password: 'alice-password-1' });
    await admin.users.create.mutate({ username: 'bob', password: 'bob-password-12' });
    alice = createStudioClient({ url: t.url, token: await t.login('alice', 'alice-password-1') });
    bob = createStudioClient({ url: t.url, token: await t.login('bob', 'bob-password-12') });
    const { token } = await alice.tokens.create.mutate({ name: 'mcp harness', agent: true });

    // env -i: the server sees exactly these variables. node --import tsx runs it in one process (no tsx CLI
    // child), so the tracked pid is the whole server.
    allowlist = {
      NODE_ENV: 'test',
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: RUN_DIR,
      STUDIO_API_URL: t.url,
      STUDIO_API_TOKEN: token,
    };
    transport = new StdioClientTransport({
      command: '/usr/bin/env',
      args: [
        '-i',
        ...Object.entries(allowlist).map(([k, v]) => `${k}=${v}`),
        process.execPath,
        '--import',
        'tsx',
        MAIN,
      ],
      cwd: RUN_DIR,
      stderr: 'pipe',
    });
    transport.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk.toString('utf8')));
    agent = new Client({ name: 'studio-harness', version: '0.0.0' });
    agent.onerror = (error) => {
      // The SDK's client handles a response at once and a notification read in the same chunk a microtask later,
      // so on a loaded machine a progress notification the server wrote before its answer can still find its
      // handler gone. Ordering on the wire is right (the server awaits each notification before answering): that
      // is the client's quirk, not a protocol error on stdout.
      if (/progress notification for an unknown token/.test(String((error as Error)?.message))) return;
      protocolErrors.push(error);
    };
    agent.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
      updated.push(n.params.uri);
    });
    await agent.connect(transport);
    if (transport.pid !== null) processes.add(transport.pid);
  });

  afterAll(async () => {
    for (const [client, id] of [
      [alice, sessionId],
      [bob, bobSession],
      [alice, forkId],
    ] as const) {
      if (client && id) await client.sessions.destroy.mutate({ sessionId: id }).catch(() => undefined);
    }
    await agent?.close().catch(() => undefined);
    killAll('SIGTERM');
    const deadline = Date.now() + 5000;
    while ([...processes].some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    killAll('SIGKILL');
    for (const s of await backend.list({ labels: LABELS }))
      await backend.destroy(s.id).catch(() => undefined);
    await t?.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    rmSync(RUN_DIR, { recursive: true, force: true });
    if (transcript.length > 0) console.log(`MCP harness transcript:\n${transcript.join('\n')}`);
  });

  it('runs in a restricted environment, speaks only protocol on stdout, and lists every tool', async () => {
    expect(agent.getServerVersion()?.name).toBe('claude-studio');
    expect(agent.getServerCapabilities()?.resources?.subscribe).toBe(true);
    const { tools } = await agent.listTools();
    expect(tools.map((x) => x.name).sort()).toEqual(
      [
        'build_template',
        'capabilities',
        'check_egress',
        'create_session',
        'create_template',
        'delete_snapshot',
        'delete_template',
        'destroy_session',
        'exec',
        'fork_session',
        'get_events',
        'get_template',
        'get_watchers',
        'list_files',
        'list_secrets',
        'list_sessions',
        'list_snapshots',
        'list_templates',
        'pause_session',
        'preview_fetch',
        'read_file',
        'resume_session',
        'set_network',
        'snapshot_session',
        'start_session',
        'stop_session',
        'write_file',
      ].sort(),
    );
    for (const x of tools) expect(x.inputSchema.type).toBe('object');
    expect(stderr.join('')).toContain('ready');
    const caps = ok(await tool('capabilities', {}));
    expect(caps.defaultImage).toBe(IMAGE);
  });

  it('creates a session, writes a web server, runs it in the background and fetches its preview', async () => {
    await alice.secrets.create.mutate({
      name: 'MCP_API_KEY',
      value: SECRET_VALUE,
      hosts: ['api.example.com'],
    });
    const secrets = ok(await tool('list_secrets', {}));
    expect(secrets).toEqual({
      secrets: [
        { name: 'MCP_API_KEY', hosts: ['api.example.com'], header: 'Authorization: Bearer {{value}}' },
      ],
    });
    const missing = failed(await tool('create_session', { secrets: ['NOT_STORED_KEY'] }));
    expect(missing.code).toBe('NOT_FOUND');
    expect(missing.fix).toMatch(/list_secrets/);

    const created = ok(
      await tool('create_session', {
        resources: { memoryMb: 512 },
        network: { mode: 'allowlist', allow: ['Registry.NPMJS.org'] },
        secrets: ['MCP_API_KEY'],
      }),
    );
    sessionId = String(created.id);
    expect(created.state).toBe('running');
    expect(created.network).toEqual({ mode: 'allowlist', allow: ['registry.npmjs.org'] });
    expect(created.secrets).toEqual(['MCP_API_KEY']);
    // Its programs hold a placeholder; the value went through none of the agent's calls or answers.
    const env = ok(await tool('exec', { sessionId, command: ['sh', '-c', 'printf %s "$MCP_API_KEY"'] }));
    expect(env.stdout).toMatch(/^studio-placeholder-/);
    expect(JSON.stringify([secrets, missing, created, env])).not.toContain(SECRET_VALUE);
    expect(stderr.join('')).not.toContain(SECRET_VALUE);
    expect(ok(await tool('list_sessions', {})).sessions).toEqual([
      expect.objectContaining({ id: sessionId }),
    ]);

    ok(await tool('write_file', { sessionId, path: 'server.js', content: WEB_SERVER }));
    const listing = ok(await tool('list_files', { sessionId }));
    expect(listing.entries).toEqual([expect.objectContaining({ path: 'server.js', type: 'file' })]);
    expect(ok(await tool('read_file', { sessionId, path: 'server.js' })).content).toBe(WEB_SERVER);

    const started = ok(
      await tool('exec', {
        sessionId,
        command: ['sh', '-c', 'nohup node server.js >/tmp/server.log 2>&1 &'],
        timeoutMs: 10_000,
      }),
    );
    expect(started.exitCode).toBe(0);

    let page: Record<string, unknown> = {};
    const deadline = Date.now() + 20_000;
    for (;;) {
      const result = await tool(
        'preview_fetch',
        { sessionId, port: 3000, path: '/hello?x=1' },
        { quiet: true },
      );
      page = ok(result);
      if (page.status === 200 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    transcript.push(`agent → preview_fetch ${brief({ sessionId, port: 3000, path: '/hello?x=1' })}`);
    transcript.push(`      ← ${brief(page, 400)}`);
    expect(page).toMatchObject({
      status: 200,
      body: 'hello from /hello?x=1 in the sandbox',
      truncated: false,
    });
    expect((page.headers as Record<string, string>)['content-type']).toBe('text/plain');
    const capped = ok(await tool('preview_fetch', { sessionId, port: 3000, maxBytes: 5 }));
    expect(capped).toMatchObject({ status: 200, body: 'hello', bodyBytes: 5, truncated: true });
  });

  it('reports exec output as progress notifications while it runs', async () => {
    const progress: Progress[] = [];
    const run = ok(
      await tool(
        'exec',
        {
          sessionId,
          command: ['sh', '-c', 'for i in 1 2 3; do echo tick $i; sleep 0.4; done; echo oops >&2'],
        },
        { onprogress: (p) => progress.push(p) },
      ),
    );
    expect(run).toMatchObject({ exitCode: 0, stdout: 'tick 1\ntick 2\ntick 3\n', stderr: 'oops\n' });
    expect(progress.some((p) => p.message?.includes('tick 2'))).toBe(true);
    const steps = progress.map((p) => p.progress);
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    const slow = ok(await tool('exec', { sessionId, command: ['sleep', '5'], timeoutMs: 300 }));
    expect(slow.timedOut).toBe(true);
  });

  it('returns events since a cursor', async () => {
    const first = ok(await tool('get_events', { sessionId, waitMs: 200 }));
    const cursor = first.cursor as string;
    expect(cursor).toMatch(/^[0-9a-f]+-\d+$/);
    ok(await tool('write_file', { sessionId, path: 'notes/a.txt', content: 'a', createParents: true }));
    const next = ok(await tool('get_events', { sessionId, cursor, waitMs: 300 }));
    expect(next.events).toContainEqual(
      expect.objectContaining({
        type: 'file.changed',
        op: 'write',
        path: 'notes/a.txt',
        // The harness's token was created with `agent: true`: its events name the actor kind agent.
        actor: expect.objectContaining({ kind: 'agent', name: 'alice' }),
      }),
    );
    expect(next.cursor).not.toBe(cursor);
  });

  it("sets the session's network, checks hosts, and sees the sandbox's connections as events", async () => {
    const { cursor } = ok(await tool('get_events', { sessionId, waitMs: 100 }, { quiet: true }));
    expect(ok(await tool('check_egress', { sessionId, host: 'registry.npmjs.org' }))).toEqual({
      allowed: true,
      host: 'registry.npmjs.org',
      port: 443,
    });
    const denied = failed(await tool('check_egress', { sessionId, host: 'example.com' }));
    expect(denied.code).toBe('EGRESS_DENIED');
    expect(denied.message).toMatch(/^example\.com is not on this session's allowlist/);
    expect(denied.fix).toContain(
      JSON.stringify({
        sessionId,
        network: { mode: 'allowlist', allow: ['registry.npmjs.org', 'example.com'] },
      }),
    );

    const set = ok(
      await tool('set_network', {
        sessionId,
        network: { mode: 'allowlist', allow: ['registry.npmjs.org', 'example.com'] },
      }),
    );
    expect(set.network).toEqual({ mode: 'allowlist', allow: ['registry.npmjs.org', 'example.com'] });
    expect(ok(await tool('check_egress', { sessionId, host: 'example.com', port: 80 })).allowed).toBe(true);
    expect(failed(await tool('check_egress', { sessionId, host: 'example.com', port: 22 })).code).toBe(
      'EGRESS_DENIED',
    );
    const open = failed(await tool('set_network', { sessionId, network: { mode: 'open' } }));
    expect(open.code).toBe('EGRESS_DENIED');
    expect(open.message).toMatch(/does not permit network mode open/);
    expect(
      failed(await tool('set_network', { sessionId, network: { mode: 'allowlist', allow: ['*.com'] } })).code,
    ).toBe('HOST_INVALID');

    // A program in the sandbox goes through the proxy (https_proxy is set for it): a host not on the list is
    // refused at once, and the refusal is an event whose actor is the sandbox.
    const run = ok(
      await tool('exec', {
        sessionId,
        command: [
          'python3',
          '-c',
          "import urllib.request as u; u.urlopen('https://denied.example.org/', timeout=10)",
        ],
        timeoutMs: 20_000,
      }),
    );
    expect(run.exitCode).not.toBe(0);
    const events = ok(await tool('get_events', { sessionId, cursor, waitMs: 500 })).events as {
      type: string;
      actor: { kind: string; name: string } | null;
      [key: string]: unknown;
    }[];
    expect(events).toContainEqual(
      expect.objectContaining({
        type: 'network.changed',
        mode: 'allowlist',
        allow: ['registry.npmjs.org', 'example.com'],
        actor: expect.objectContaining({ kind: 'agent', name: 'alice' }),
      }),
    );
    expect(events).toContainEqual(
      expect.objectContaining({
        type: 'egress',
        host: 'denied.example.org',
        port: 443,
        allowed: false,
        reason: 'not_allowed',
        actor: expect.objectContaining({ kind: 'sandbox' }),
      }),
    );
  });

  it('tells the agent who is watching the session', async () => {
    const sub = createStudioClient({
      url: t.url,
      token: await t.login('alice', 'alice-password-1'),
      EventSource: EventSource as unknown as EventSourceConstructor,
    }).events.subscribe.subscribe({ sessionId }, { onData: () => undefined });
    try {
      const deadline = Date.now() + 10_000;
      let watchers: unknown[] = [];
      while (watchers.length === 0 && Date.now() < deadline) {
        watchers = ok(await tool('get_watchers', { sessionId }, { quiet: true })).watchers as unknown[];
        if (watchers.length === 0) await new Promise((r) => setTimeout(r, 100));
      }
      expect(watchers).toContainEqual(expect.objectContaining({ via: 'events' }));
      transcript.push(`agent → get_watchers ${brief({ sessionId })}`);
      transcript.push(`      ← ${brief({ watchers })}`);
    } finally {
      sub.unsubscribe();
    }
  });

  it('returns structured errors an agent can act on', async () => {
    const traversal = failed(await tool('read_file', { sessionId, path: '../etc/passwd' }));
    expect(traversal).toMatchObject({ code: 'PATH_TRAVERSAL' });
    expect(traversal.fix).toMatch(/relative/);
    expect(failed(await tool('write_file', { sessionId, path: '/etc/x', content: '' })).code).toBe(
      'PATH_ABSOLUTE',
    );
    const badArgs = failed(await tool('exec', { sessionId, command: 'ls -la', extra: 1 }));
    expect(badArgs.code).toBe('INPUT_INVALID');
    expect(badArgs.message).toContain('command');
    expect(failed(await tool('preview_fetch', { sessionId, port: 22 })).code).toBe('PORT_BLOCKED');
    expect(failed(await tool('read_file', { sessionId, path: 'missing.txt' })).code).toBe('NOT_FOUND');
    expect(failed(await tool('no_such_tool', {})).code).toBe('UNKNOWN_TOOL');

    bobSession = (await bob.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256 } })).id;
    const foreign = failed(await tool('list_files', { sessionId: bobSession }));
    expect(foreign.code).toBe('NOT_FOUND');
    expect(foreign.fix).toMatch(/list_sessions/);
    expect(failed(await tool('destroy_session', { sessionId: bobSession })).code).toBe('NOT_FOUND');
    await expect(agent.subscribeResource({ uri: eventsUri(bobSession) })).rejects.toMatchObject({
      data: { code: 'NOT_FOUND' },
    });
    await bob.sessions.destroy.mutate({ sessionId: bobSession });
  });

  it('refuses the agent’s writes with HUMAN_HAS_CONTROL while a person holds control, until released', async () => {
    const { cursor } = ok(await tool('get_events', { sessionId, waitMs: 100 }, { quiet: true }));
    await alice.sessions.takeControl.mutate({ sessionId });
    transcript.push(`web   → sessions.takeControl`);
    const refused = failed(await tool('write_file', { sessionId, path: 'notes/agent.txt', content: 'x' }));
    expect(refused.code).toBe('HUMAN_HAS_CONTROL');
    expect(refused.message).toMatch(/taken control/);
    expect(refused.fix).toMatch(/control\.released/);
    expect(refused.fix).toMatch(/get_events/);
    expect(failed(await tool('exec', { sessionId, command: ['true'] })).code).toBe('HUMAN_HAS_CONTROL');
    expect(failed(await tool('set_network', { sessionId, network: { mode: 'none' } })).code).toBe(
      'HUMAN_HAS_CONTROL',
    );
    expect(ok(await tool('read_file', { sessionId, path: 'notes/a.txt' })).content).toBe('a');

    await alice.sessions.releaseControl.mutate({ sessionId });
    transcript.push(`web   → sessions.releaseControl`);
    const events = ok(await tool('get_events', { sessionId, cursor, waitMs: 300 })).events as {
      type: string;
      actor: { kind: string; name: string } | null;
    }[];
    expect(events.filter((e) => e.type.startsWith('control.'))).toMatchObject([
      { type: 'control.taken', actor: { kind: 'user', name: 'alice' } },
      { type: 'control.released', actor: { kind: 'user', name: 'alice' } },
    ]);
    ok(await tool('write_file', { sessionId, path: 'notes/agent.txt', content: 'x' }));
  });

  it('notifies a resource subscriber of a change made through the web API', async () => {
    const uri = fileUri(sessionId, 'notes/from-web.txt');
    const listed = (await agent.listResources()).resources.map((r) => r.uri);
    expect(listed).toEqual(expect.arrayContaining([fileUri(sessionId, 'server.js'), eventsUri(sessionId)]));
    const templates = (await agent.listResourceTemplates()).resourceTemplates.map((r) => r.uriTemplate);
    expect(templates).toEqual(
      expect.arrayContaining([
        'studio://sessions/{sessionId}/files/{+path}',
        'studio://sessions/{sessionId}/events',
      ]),
    );
    await agent.subscribeResource({ uri });
    await agent.subscribeResource({ uri: eventsUri(sessionId) });
    updated.length = 0;
    await alice.files.write.mutate({
      sessionId,
      path: 'notes/from-web.txt',
      content: 'written in the browser',
    });
    const deadline = Date.now() + 10_000;
    while (!updated.includes(uri) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(updated).toContain(uri);
    expect(updated).toContain(eventsUri(sessionId));
    transcript.push(`web   → files.write notes/from-web.txt`);
    transcript.push(`      ← notifications/resources/updated ${uri}`);
    const read = await agent.readResource({ uri });
    expect(read.contents[0]).toMatchObject({ uri, text: 'written in the browser' });
    const log = await agent.readResource({ uri: eventsUri(sessionId) });
    expect(JSON.parse(String((log.contents[0] as { text: string }).text))).toContainEqual(
      expect.objectContaining({ type: 'file.changed', path: 'notes/from-web.txt' }),
    );
    await agent.unsubscribeResource({ uri });
    await agent.unsubscribeResource({ uri: eventsUri(sessionId) });
  });

  it('refuses to start without a token: the reason on stderr, nothing on stdout', async () => {
    const { STUDIO_API_TOKEN: _omitted, ...env } = allowlist;
    const child = spawn(
      '/usr/bin/env',
      ['-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, '--import', 'tsx', MAIN],
      { cwd: RUN_DIR, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    if (child.pid !== undefined) processes.add(child.pid);
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(code).toBe(1);
    expect(out).toBe('');
    expect(err).toContain('STUDIO_API_TOKEN is required');
  });

  it('pauses the session, resumes it on the next call, forks it and snapshots it', async () => {
    // The call's own subscription announces itself (watcher.joined): its id is the cursor to read on from.
    const { cursor } = ok(await tool('get_events', { sessionId, waitMs: 5000, limit: 1 }, { quiet: true }));
    expect(cursor).toEqual(expect.any(String));
    const paused = ok(await tool('pause_session', { sessionId }));
    expect(paused).toMatchObject({ id: sessionId, state: 'paused', pausedAt: expect.any(String) });
    expect(ok(await tool('pause_session', { sessionId })).state).toBe('paused');
    // Any call resumes it: the agent never has to call resume_session.
    const run = ok(await tool('exec', { sessionId, command: ['cat', 'notes/a.txt'] }));
    expect(run).toMatchObject({ exitCode: 0, stdout: 'a' });
    expect(ok(await tool('list_sessions', {}, { quiet: true })).sessions).toEqual([
      expect.objectContaining({ id: sessionId, state: 'running', pausedAt: null }),
    ]);
    const events = ok(await tool('get_events', { sessionId, cursor, waitMs: 300 })).events as {
      type: string;
      state?: string;
      reason?: string;
    }[];
    expect(events).toContainEqual(expect.objectContaining({ type: 'session.status', state: 'paused' }));
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'session.status', state: 'running', reason: 'resumed on use' }),
    );
    expect(ok(await tool('resume_session', { sessionId })).state).toBe('running');

    const forked = ok(await tool('fork_session', { sessionId }));
    expect(forked.parentId).toBe(sessionId);
    expect(forked.forkIds).toEqual([expect.stringMatching(/^ses_/)]);
    forkId = (forked.forkIds as string[])[0] as string;
    expect(forked.forks).toEqual([
      expect.objectContaining({ id: forkId, parentId: sessionId, state: 'running' }),
    ]);
    // The fork holds the workspace as it was, and goes its own way.
    expect(ok(await tool('read_file', { sessionId: forkId, path: 'notes/a.txt' })).content).toBe('a');
    ok(await tool('write_file', { sessionId: forkId, path: 'notes/a.txt', content: 'fork' }));
    expect(ok(await tool('read_file', { sessionId, path: 'notes/a.txt' }, { quiet: true })).content).toBe(
      'a',
    );
    expect(ok(await tool('destroy_session', { sessionId: forkId })).state).toBe('destroyed');
    forkId = '';

    const snap = ok(await tool('snapshot_session', { sessionId, name: 'notes-ready' }));
    expect(snap).toMatchObject({ name: 'notes-ready', sessionId, memory: false });
    expect(failed(await tool('snapshot_session', { sessionId, name: 'notes-ready' })).code).toBe(
      'ALREADY_EXISTS',
    );
    const listed = ok(await tool('list_snapshots', {}));
    expect(listed.snapshots).toEqual([expect.objectContaining({ id: snap.id, name: 'notes-ready' })]);
    expect(listed.usedBytes).toBe(snap.bytes);
    expect(ok(await tool('delete_snapshot', { snapshot: 'notes-ready' })).id).toBe(snap.id);
    const gone = failed(await tool('delete_snapshot', { snapshot: 'notes-ready' }));
    expect(gone.code).toBe('NOT_FOUND');
    expect(gone.fix).toMatch(/list_snapshots/);
  });

  it('stops, restarts and destroys the session', async () => {
    expect(ok(await tool('stop_session', { sessionId })).state).toBe('stopped');
    const stopped = failed(await tool('exec', { sessionId, command: ['true'] }));
    expect(stopped.code).toBe('INVALID_STATE');
    expect(stopped.fix).toMatch(/start_session/);
    expect(ok(await tool('start_session', { sessionId })).state).toBe('running');
    expect(ok(await tool('read_file', { sessionId, path: 'notes/a.txt' })).content).toBe('a');
    expect(ok(await tool('destroy_session', { sessionId })).state).toBe('destroyed');
    expect(ok(await tool('list_sessions', {})).sessions).toEqual([]);
    sessionId = '';
    expect(protocolErrors).toEqual([]); // stdout carried nothing but JSON-RPC
  });
});
