import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import {
  createStudioClient,
  type EventSourceConstructor,
  isStudioClientError,
  type StudioClient,
} from '@studio/client';
import { sessionIdSchema, workspacePathSchema } from '@studio/policy';
import { EventSource } from 'eventsource';
import type { McpEnv } from './env.ts';
import { errorResult, fixFor, type ToolErrorBody, toToolError } from './errors.ts';
import { PreviewFetcher } from './preview-fetch.ts';
import { inputJsonSchema, studioTools, type ToolContext } from './tools.ts';

/** Options of {@link createStudioMcpServer}. */
export interface StudioMcpServerOptions {
  env: McpEnv;
  /** A client to use instead of one built from `env` (tests). */
  client?: StudioClient;
  /** Where diagnostics go; default stderr (stdout belongs to the protocol). */
  log?: (line: string) => void;
}

/** The server and what it holds open (event subscriptions), to close together. */
export interface StudioMcpServer {
  server: McpServer;
  close(): Promise<void>;
}

const VERSION = '0.1.0';
const EVENT_LOG_SIZE = 200;
const FILE_URI = /^studio:\/\/sessions\/([^/]+)\/files\/(.+)$/;
const EVENTS_URI = /^studio:\/\/sessions\/([^/]+)\/events$/;
const RECORDING_URI = /^studio:\/\/sessions\/([^/]+)\/recording$/;
/** Most text the recording resource returns (the rest: recordings.get, or the IDE's download). */
export const RECORDING_RESOURCE_MAX_CHARS = 2 * 1024 * 1024;

/** `studio://sessions/<id>/files/<path>`: a file of a session's workspace. */
export const fileUri = (sessionId: string, path: string) =>
  `studio://sessions/${sessionId}/files/${path.split('/').map(encodeURIComponent).join('/')}`;
/** `studio://sessions/<id>/events`: the events this server has seen for a session. */
export const eventsUri = (sessionId: string) => `studio://sessions/${sessionId}/events`;
/** `studio://sessions/<id>/recording`: the session's recording (event log and terminal casts, as text). */
export const recordingUri = (sessionId: string) => `studio://sessions/${sessionId}/recording`;

/** A resource URI, parsed and checked with the policy schemas; throws an McpError carrying {code, message, fix}. */
export function parseResourceUri(
  uri: string,
):
  | { kind: 'file'; sessionId: string; path: string }
  | { kind: 'events'; sessionId: string }
  | { kind: 'recording'; sessionId: string } {
  const file = FILE_URI.exec(uri);
  const events = EVENTS_URI.exec(uri);
  const recording = RECORDING_URI.exec(uri);
  const sessionId = sessionIdSchema.safeParse(file?.[1] ?? events?.[1] ?? recording?.[1]);
  if ((!file && !events && !recording) || !sessionId.success) {
    throw resourceError({
      code: 'INPUT_INVALID',
      message: `not a Studio resource: ${uri}`,
      fix: 'use studio://sessions/<session id>/files/<path>, studio://sessions/<session id>/events or studio://sessions/<session id>/recording',
    });
  }
  if (events) return { kind: 'events', sessionId: sessionId.data };
  if (recording) return { kind: 'recording', sessionId: sessionId.data };
  let raw: string;
  try {
    raw = decodeURIComponent(file?.[2] ?? '');
  } catch {
    throw resourceError({
      code: 'PATH_ENCODING',
      message: 'malformed percent-encoding',
      fix: fixFor('PATH_ENCODING'),
    });
  }
  const path = workspacePathSchema.safeParse(raw);
  if (!path.success) throw resourceError(toToolError(path.error));
  return { kind: 'file', sessionId: sessionId.data, path: path.data };
}

function resourceError(body: ToolErrorBody): McpError {
  const code =
    body.code === 'INTERNAL' || body.code === 'NETWORK' ? ErrorCode.InternalError : ErrorCode.InvalidParams;
  return new McpError(code, `${body.code}: ${body.message} (fix: ${body.fix})`, body);
}

interface Watcher {
  uris: Set<string>;
  log: unknown[];
  stop: () => void;
}

interface StudioEvent {
  type?: unknown;
  path?: unknown;
  to?: unknown;
}

/** True when a change of `changed` concerns the subscribed file path (the file itself or a folder above it). */
/** Whether a change of `changed` (a path, or '' for "many changed inside the sandbox") may alter `subscribed`. */
function touches(subscribed: string, changed: unknown): boolean {
  return (
    typeof changed === 'string' &&
    (changed === '' || subscribed === changed || subscribed.startsWith(`${changed}/`))
  );
}

/**
 * Builds the Studio MCP server: the tools of `studioTools` (inputs validated with the policy schemas, every
 * failure a `{ code, message, fix }` tool error), resources for a session's files and event log, and
 * resources/subscribe forwarding the API's live events as notifications/resources/updated.
 */
export function createStudioMcpServer(options: StudioMcpServerOptions): StudioMcpServer {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const client =
    options.client ??
    createStudioClient({
      url: options.env.STUDIO_API_URL,
      token: options.env.STUDIO_API_TOKEN,
      EventSource: EventSource as unknown as EventSourceConstructor,
    });
  const previews = new PreviewFetcher({ client });
  const server = new McpServer(
    { name: 'claude-studio', version: VERSION },
    {
      capabilities: { tools: {}, resources: { subscribe: true, listChanged: true } },
      instructions:
        'Claude Studio: create a sandbox session (create_session), write files, run commands (exec), fetch what a dev server serves (preview_fetch), and destroy the session when done. A session reaches no network unless allowed: check_egress says whether a host is reachable, set_network allows hosts. API keys are secrets a person stored: list_secrets names them, the secrets argument of create_session gives them to a session, whose programs use them without seeing the values. Every error has a code, a message and a fix.',
    },
  );
  // The protocol's own server: tools are served here rather than through registerTool, so that argument
  // validation errors (the SDK's are plain text) come back in the same { code, message, fix } shape.
  const low = server.server;

  const toolsByName = new Map(studioTools.map((t) => [t.name, t]));
  const listing = studioTools.map((t) => ({
    name: t.name,
    title: t.title,
    description: t.description,
    inputSchema: inputJsonSchema(t),
    annotations: t.annotations,
  }));
  low.setRequestHandler(ListToolsRequestSchema, () => ({ tools: listing }));
  low.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const tool = toolsByName.get(request.params.name);
    if (!tool) {
      return errorResult({
        code: 'UNKNOWN_TOOL',
        message: `no tool named ${request.params.name}`,
        fix: `use one of: ${[...toolsByName.keys()].join(', ')}`,
      });
    }
    const token = extra._meta?.progressToken;
    let step = 0;
    // Progress after the result is a protocol error at the client: stop sending once the call is answered,
    // and let those already under way reach the wire first.
    let answered = false;
    const pending = new Set<Promise<void>>();
    const ctx: ToolContext = {
      client,
      defaultImage: options.env.STUDIO_MCP_DEFAULT_IMAGE,
      previews,
      signal: extra.signal,
      progress: async (message) => {
        if (token === undefined || answered || extra.signal.aborted) return;
        step += 1;
        const sent = extra
          .sendNotification({
            method: 'notifications/progress',
            params: { progressToken: token, progress: step, message },
          })
          .catch(() => undefined);
        pending.add(sent);
        await sent;
        pending.delete(sent);
      },
    };
    const settle = async () => {
      answered = true;
      await Promise.all(pending);
      // The SDK's client handles a response at once but a notification a microtask later, so a progress
      // notification read in the same chunk as the response finds its handler gone ("unknown token").
      if (step > 0) await new Promise((resolve) => setTimeout(resolve, 50));
    };
    try {
      const result = await tool.call(request.params.arguments, ctx);
      await settle();
      return { content: [{ type: 'text', text: JSON.stringify(result) }], structuredContent: result };
    } catch (error) {
      await settle();
      const body = toToolError(error);
      if (body.code === 'INTERNAL')
        log(`tool ${tool.name} failed: ${error instanceof Error ? error.stack : String(error)}`);
      return errorResult(body);
    }
  });

  // Resources: a session's files and its event log. Listing shows every live session's event log and the
  // files at the root of its workspace.
  const watchers = new Map<string, Watcher>();

  async function readEventLog(sessionId: string): Promise<unknown[]> {
    const watcher = watchers.get(sessionId);
    if (watcher) return [...watcher.log];
    await client.sessions.get.query({ sessionId });
    return [];
  }

  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (error) {
      if (error instanceof McpError) throw error;
      throw resourceError(toToolError(error));
    }
  };

  server.registerResource(
    'session-file',
    new ResourceTemplate('studio://sessions/{sessionId}/files/{+path}', {
      list: () =>
        call(async () => {
          const sessions = await client.sessions.list.query();
          const resources = [];
          for (const s of sessions.filter((x) => x.state === 'running')) {
            const entries = await client.files.list.query({ sessionId: s.id }).catch(() => []);
            for (const e of entries.filter((x) => x.type === 'file')) {
              resources.push({
                uri: fileUri(s.id, e.path),
                name: `${s.id}/${e.path}`,
                mimeType: 'text/plain',
              });
            }
          }
          return { resources };
        }),
    }),
    { title: "A file of a session's workspace", description: 'UTF-8 text, or base64 when it is binary.' },
    (uri) =>
      call(async () => {
        const parsed = parseResourceUri(uri.href);
        if (parsed.kind !== 'file') {
          throw resourceError({
            code: 'INPUT_INVALID',
            message: `not a file: ${uri.href}`,
            fix: fixFor('INPUT_INVALID'),
          });
        }
        try {
          const file = await client.files.read.query({ sessionId: parsed.sessionId, path: parsed.path });
          return { contents: [{ uri: uri.href, mimeType: 'text/plain', text: file.content }] };
        } catch (error) {
          if (!isStudioClientError(error, 'FILE_NOT_TEXT')) throw error;
          const file = await client.files.read.query({
            sessionId: parsed.sessionId,
            path: parsed.path,
            encoding: 'base64',
          });
          return { contents: [{ uri: uri.href, mimeType: 'application/octet-stream', blob: file.content }] };
        }
      }),
  );

  server.registerResource(
    'session-events',
    new ResourceTemplate('studio://sessions/{sessionId}/events', {
      list: () =>
        call(async () => ({
          resources: (await client.sessions.list.query()).map((s) => ({
            uri: eventsUri(s.id),
            name: `${s.id} events`,
            mimeType: 'application/json',
          })),
        })),
    }),
    {
      title: "A session's event log",
      description: `The last ${EVENT_LOG_SIZE} events seen while subscribed (subscribe to this resource to start recording).`,
    },
    (uri) =>
      call(async () => {
        const parsed = parseResourceUri(uri.href);
        const events = await readEventLog(parsed.sessionId);
        return { contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(events) }] };
      }),
  );

  // The session's recording (docs/recording.md): what its terminals printed (asciicast v2) and its event log
  // (who did what), kept by the API; one text document for an agent to read.
  server.registerResource(
    'session-recording',
    new ResourceTemplate('studio://sessions/{sessionId}/recording', {
      list: () =>
        call(async () => ({
          resources: (await client.sessions.list.query()).map((s) => ({
            uri: recordingUri(s.id),
            name: `${s.id} recording`,
            mimeType: 'text/plain',
          })),
        })),
    }),
    {
      title: "A session's recording",
      description:
        "What the session's terminals printed (asciicast v2, output only) and its event log (JSON lines: execs with their output and exit, file changes, control taken and released, terminals opened and closed, each with who did it and when).",
    },
    (uri) =>
      call(async () => {
        const { sessionId } = parseResourceUri(uri.href);
        return {
          contents: [{ uri: uri.href, mimeType: 'text/plain', text: await readRecording(sessionId) }],
        };
      }),
  );

  async function readRecording(sessionId: string): Promise<string> {
    const listing = await client.recordings.list.query({ sessionId });
    const parts = [
      `# Recording of session ${sessionId}: recording is ${listing.enabled ? 'on' : 'off (the operator turned it off)'}; ${listing.bytes} of ${listing.maxBytes} bytes${listing.stopped ? '; stopped at the size limit' : ''}`,
    ];
    if (listing.files.length === 0) parts.push('(nothing recorded yet)');
    let budget = RECORDING_RESOURCE_MAX_CHARS;
    for (const f of listing.files) {
      const who = f.openedBy ? `, opened by ${f.openedBy.name} (${f.openedBy.kind})` : '';
      const took = f.durationSec === null ? '' : `, ${f.durationSec} s`;
      parts.push(
        `\n## ${f.name} (${f.kind === 'events' ? 'event log, JSON lines' : `terminal, asciicast v2${who}${took}`})`,
      );
      if (budget <= 0) {
        parts.push(
          `(left out: over ${RECORDING_RESOURCE_MAX_CHARS} characters; read it with recordings.get)`,
        );
        continue;
      }
      const { text } = await client.recordings.get.query({ sessionId, file: f.name });
      parts.push(
        text.length > budget
          ? `${text.slice(0, budget)}\n(cut here; read the rest with recordings.get)`
          : text,
      );
      budget -= text.length;
    }
    return parts.join('\n');
  }

  function onEvent(sessionId: string, watcher: Watcher, event: StudioEvent) {
    watcher.log.push(event);
    if (watcher.log.length > EVENT_LOG_SIZE) watcher.log.shift();
    for (const uri of watcher.uris) {
      const parsed = parseResourceUri(uri);
      const changed =
        parsed.kind !== 'file' ||
        (event.type === 'file.changed' &&
          (touches(parsed.path, event.path) || touches(parsed.path, event.to)));
      if (changed) {
        low.sendResourceUpdated({ uri }).catch((e: unknown) => log(`resources/updated ${uri}: ${String(e)}`));
      }
    }
    if (event.type === 'session.status')
      log(`session ${sessionId} is ${String((event as { state?: unknown }).state)}`);
  }

  low.setRequestHandler(SubscribeRequestSchema, (request) =>
    call(async () => {
      const { uri } = request.params;
      const { sessionId } = parseResourceUri(uri);
      const existing = watchers.get(sessionId);
      if (existing) {
        existing.uris.add(uri);
        return {};
      }
      // Ownership first, so another user's session is a NOT_FOUND answer rather than a silent stream.
      await client.sessions.get.query({ sessionId });
      const watcher: Watcher = { uris: new Set([uri]), log: [], stop: () => undefined };
      const sub = client.events.subscribe.subscribe(
        { sessionId },
        {
          onData: ({ data }) => onEvent(sessionId, watcher, data as StudioEvent),
          onError: (error) => {
            log(`events of ${sessionId} ended: ${toToolError(error).code}`);
            watcher.stop();
            watchers.delete(sessionId);
          },
        },
      );
      watcher.stop = () => sub.unsubscribe();
      watchers.set(sessionId, watcher);
      return {};
    }),
  );

  low.setRequestHandler(UnsubscribeRequestSchema, (request) =>
    call(async () => {
      const { uri } = request.params;
      const { sessionId } = parseResourceUri(uri);
      const watcher = watchers.get(sessionId);
      watcher?.uris.delete(uri);
      if (watcher && watcher.uris.size === 0) {
        watcher.stop();
        watchers.delete(sessionId);
      }
      return {};
    }),
  );

  return {
    server,
    async close() {
      for (const watcher of watchers.values()) watcher.stop();
      watchers.clear();
      await server.close();
    },
  };
}
