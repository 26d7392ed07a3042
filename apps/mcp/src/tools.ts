import { isStudioClientError, type StudioClient, streamExec as streamExecOnApi } from '@studio/client';
import {
  canonicalEgressList,
  canonicalizeHost,
  checkEgressTarget,
  DEFAULT_TEMPLATE_NAME,
  defaultPolicy,
  eventsSubscribeInput,
  execRunInput,
  filesListInput,
  filesReadInput,
  filesWriteInput,
  imageNameSchema,
  MAX_DOCKERFILE_CHARS,
  previewPathSchema,
  previewRequestInput,
  sessionByIdInput,
  sessionCreateInput,
  sessionEgressCheckInput,
  sessionForkInput,
  sessionSetNetworkInput,
  snapshotByRefInput,
  snapshotCreateInput,
  templateByRefInput,
  templateCreateInput,
  templateNameSchema,
  templateRecipeSchema,
  templateRefSchema,
} from '@studio/policy';
import { z } from 'zod';
import {
  EGRESS_CONTROL_NOTE,
  McpToolError,
  MISSING_SECRET_FIX,
  SESSION_LIMIT_FORK_FIX,
  SNAPSHOT_NOT_FOUND_FIX,
  SNAPSHOT_QUOTA_FIX,
} from './errors.ts';
import type { PreviewFetcher } from './preview-fetch.ts';
import {
  buildOutcome,
  DEFAULT_BUILD_WAIT_MS,
  logTail,
  MAX_BUILD_WAIT_MS,
  nextStep,
  templateForAgent,
} from './template-build.ts';

/** What a tool gets besides its parsed input. */
export interface ToolContext {
  /** The Studio API client (authenticated with STUDIO_API_TOKEN; subscriptions over SSE). */
  client: StudioClient;
  /** The image `create_session` uses when none is given. */
  defaultImage: string;
  previews: PreviewFetcher;
  /** Aborts when the MCP client cancels the call. */
  signal: AbortSignal;
  /** Sends a progress notification when the caller asked for them (a no-op otherwise). */
  progress: (message: string) => Promise<void>;
}

/** A tool with its input schema erased: `call` validates raw arguments with the schema, then runs. */
export interface StudioTool {
  name: string;
  title: string;
  description: string;
  input: z.ZodType;
  annotations: { readOnlyHint?: boolean; destructiveHint?: boolean; idempotentHint?: boolean };
  /** Throws a ZodError for invalid arguments (shaped by `toToolError`), or whatever the API call threw. */
  call(args: unknown, ctx: ToolContext): Promise<Record<string, unknown>>;
}

function defineTool<S extends z.ZodType>(tool: {
  name: string;
  title: string;
  description: string;
  input: S;
  annotations?: StudioTool['annotations'];
  run(input: z.output<S>, ctx: ToolContext): Promise<Record<string, unknown>>;
}): StudioTool {
  return {
    name: tool.name,
    title: tool.title,
    description: tool.description,
    input: tool.input,
    annotations: tool.annotations ?? {},
    async call(args, ctx) {
      return tool.run(await tool.input.parseAsync(args ?? {}), ctx);
    },
  };
}

/** The most output characters `exec` returns per stream; the rest is dropped and `outputCut` set. */
export const MAX_EXEC_TEXT = 256 * 1024;
const HEARTBEAT_MS = 2000;
const EXEC_GRACE_MS = 30_000;

const getEventsInput = eventsSubscribeInput.extend({
  waitMs: z.int().min(0).max(10_000).default(1000).describe('how long to collect events, in ms'),
  limit: z.int().min(1).max(500).default(200).describe('return early once this many events arrived'),
});

const previewFetchInput = previewRequestInput.extend({
  path: previewPathSchema.default('/'),
  maxBytes: z
    .int()
    .min(1)
    .max(1024 * 1024)
    .default(64 * 1024)
    .describe('body bytes to return at most'),
});

/** Runs a command through exec.start + exec.stream (streamExec of @studio/client), reporting output as progress, and resolves with its result. */
function streamExec(input: z.output<typeof execRunInput>, ctx: ToolContext) {
  const { cwd, ...rest } = input;
  const request = { ...rest, ...(cwd ? { cwd } : {}) };
  return new Promise<Record<string, unknown>>((resolve, reject) => {
    const out = { stdout: '', stderr: '', cut: false };
    let execId: string | null = null;
    let settled = false;
    const started = Date.now();
    const append = (stream: 'stdout' | 'stderr', data: string) => {
      const room = MAX_EXEC_TEXT - out[stream].length;
      if (data.length > room) out.cut = true;
      out[stream] += data.slice(0, Math.max(0, room));
    };
    const lastLine = (data: string) => data.trimEnd().split('\n').pop()?.slice(0, 200) ?? '';
    const heartbeat = setInterval(() => {
      void ctx.progress(`running for ${Math.round((Date.now() - started) / 1000)} s`);
    }, HEARTBEAT_MS);
    // The API kills the command at its timeout; this only guards against a stream that never ends (the SSE
    // link reconnects on network errors rather than failing).
    const limitMs = (input.timeoutMs ?? defaultPolicy.exec.defaultTimeoutMs) + EXEC_GRACE_MS;
    const guard = setTimeout(() => {
      sub.unsubscribe();
      finish(() =>
        reject(
          new McpToolError(
            'TIMEOUT',
            `no result from the API ${Math.round(limitMs / 1000)} s after the command started`,
            'check that the Studio API is reachable (STUDIO_API_URL), then run the command again',
          ),
        ),
      );
    }, limitMs);
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearInterval(heartbeat);
      clearTimeout(guard);
      ctx.signal.removeEventListener('abort', onAbort);
      fn();
    };
    const sub = streamExecOnApi(ctx.client, request, {
      onData: (event) => {
        if (event.type === 'started') {
          execId = event.execId;
          void ctx.progress('started');
        } else if (event.type === 'stdout' || event.type === 'stderr') {
          append(event.type, event.data);
          void ctx.progress(`${event.type}: ${lastLine(event.data)}`);
        } else if (event.type === 'exit') {
          finish(() =>
            resolve({
              execId,
              exitCode: event.exitCode,
              signal: event.signal,
              timedOut: event.timedOut,
              oomKilled: event.oomKilled,
              durationMs: event.durationMs,
              stdout: out.stdout,
              stderr: out.stderr,
              truncated: event.truncated || out.cut,
            }),
          );
        }
      },
      onError: (error) => finish(() => reject(error)),
      onComplete: () =>
        finish(() =>
          reject(
            new McpToolError(
              'INTERNAL',
              'the exec stream ended before the command exited',
              'retry once; check the session with list_sessions',
            ),
          ),
        ),
    });
    const onAbort = () => {
      sub.unsubscribe();
      finish(() =>
        reject(
          new McpToolError('CANCELLED', 'the call was cancelled; the command was killed', 'run it again'),
        ),
      );
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Subscribes to a session's events from `cursor` and returns what arrives within `waitMs`. */
function collectEvents(input: z.output<typeof getEventsInput>, ctx: ToolContext) {
  return new Promise<Record<string, unknown>>((resolve, reject) => {
    const events: unknown[] = [];
    let cursor = input.cursor ?? null;
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ctx.signal.removeEventListener('abort', done);
      // Deferred: onData may run inside subscribe() before `sub` is assigned.
      queueMicrotask(() => sub.unsubscribe());
      fn();
    };
    const done = () => finish(() => resolve({ events, cursor, more: events.length >= input.limit }));
    const timer = setTimeout(done, input.waitMs);
    const sub = ctx.client.events.subscribe.subscribe(
      { sessionId: input.sessionId, ...(input.cursor ? { cursor: input.cursor } : {}) },
      {
        onData: ({ id, data }) => {
          if (settled) return;
          events.push(data);
          cursor = id;
          if (events.length >= input.limit) done();
        },
        onError: (error) => finish(() => reject(error)),
      },
    );
    ctx.signal.addEventListener('abort', done, { once: true });
  });
}

/** The allowlist entry that lets a session reach `host:port` (a name; 80 and 443 need no port). */
function entryFor(host: string, port: number): string {
  return port === 80 || port === 443 ? host : `${host}:${port}`;
}

/** The canonical host name, or null for an IP address (allowed only as a block) or what is no host at all. */
function nameOf(host: string): string | null {
  try {
    const canonical = canonicalizeHost(host);
    return canonical.kind === 'name' ? canonical.value : null;
  } catch {
    return null;
  }
}

/**
 * The session's allowlist plus `name:port`, when the egress rules would then let it out (never for a local name,
 * which no entry allows); else null.
 */
function widenedAllowlist(current: readonly string[], name: string, port: number): string[] | null {
  try {
    const allow = canonicalEgressList([...current, entryFor(name, port)]);
    return checkEgressTarget({ mode: 'allowlist', allow }, name, port, { allowOpen: false }).allowed
      ? allow
      : null;
  } catch {
    return null;
  }
}

/**
 * `sessions.checkEgress`, with a denial's fix spelled out for this session: the `set_network` call that would
 * allow the host, keeping the entries already on its list. Where no entry can allow it (an IP address, a local
 * name, open mode refused), the API's message already says what to do and the fix stays the general one.
 */
async function checkEgress(input: z.output<typeof sessionEgressCheckInput>, ctx: ToolContext) {
  try {
    return await ctx.client.sessions.checkEgress.query(input);
  } catch (error) {
    const name = nameOf(input.host);
    if (!isStudioClientError(error, 'EGRESS_DENIED') || name === null) throw error;
    const session = await ctx.client.sessions.get.query({ sessionId: input.sessionId }).catch(() => null);
    if (!session || session.network.mode === 'open') throw error;
    const allow = widenedAllowlist(session.network.allow, name, input.port);
    if (!allow) throw error;
    throw new McpToolError(
      'EGRESS_DENIED',
      `${error.message}${error.requestId ? ` (request ${error.requestId})` : ''}`,
      `to let this session reach ${name}:${input.port}, call set_network with ${JSON.stringify({
        sessionId: input.sessionId,
        network: { mode: 'allowlist', allow },
      })} (the list replaces the current one, so it keeps the entries already there), then check_egress again. ${EGRESS_CONTROL_NOTE}`,
    );
  }
}

/** write_file's NOT_FOUND without createParents: most often the file's folder does not exist yet. */
export const WRITE_FILE_NOT_FOUND_FIX =
  "the file's folder does not exist: call write_file again with createParents: true to make it (list_files shows what is there); if the session itself is NOT_FOUND, list_sessions lists yours";

/** Re-raises an API error whose code has a fix of this tool's own (the API's message kept); any other as it was. */
async function withFixes<T>(call: Promise<T>, fixes: Readonly<Record<string, string>>): Promise<T> {
  try {
    return await call;
  } catch (error) {
    const fix = isStudioClientError(error) ? fixes[error.code] : undefined;
    if (!isStudioClientError(error) || fix === undefined) throw error;
    throw new McpToolError(
      error.code,
      `${error.message}${error.requestId ? ` (request ${error.requestId})` : ''}`,
      fix,
    );
  }
}

/**
 * `sessions.create`: from `fromSnapshot` when given (its template comes with it), else from `template`, else from
 * `image` (the older way), else from the default image. A secret name the owner has no secret of is NOT_FOUND
 * from the API, whose message says to store it with secrets.create: an agent cannot, so the fix says who can.
 */
async function createSession(input: z.output<typeof createSessionInput>, ctx: ToolContext) {
  const { template, image, ...rest } = input;
  try {
    return await ctx.client.sessions.create.mutate({
      ...rest,
      ...(rest.fromSnapshot !== undefined
        ? {}
        : template !== undefined
          ? { template }
          : { image: image ?? ctx.defaultImage }),
    });
  } catch (error) {
    if (!isStudioClientError(error, 'NOT_FOUND')) throw error;
    const message = `${error.message}${error.requestId ? ` (request ${error.requestId})` : ''}`;
    // NOT_FOUND names what is missing: the snapshot, or a secret.
    if (input.fromSnapshot !== undefined && (!input.secrets?.length || /snapshot/i.test(error.message))) {
      throw new McpToolError('NOT_FOUND', message, SNAPSHOT_NOT_FOUND_FIX);
    }
    if (!input.secrets?.length) throw error;
    throw new McpToolError('NOT_FOUND', message, MISSING_SECRET_FIX);
  }
}

const createSessionInput = sessionCreateInput
  .extend({
    template: templateRefSchema
      .optional()
      .describe(
        `the template to start from, by name or id (list_templates); default "${DEFAULT_TEMPLATE_NAME}", the server's image`,
      ),
    image: imageNameSchema
      .optional()
      .describe("the older way to pick an operator's image by name; prefer template"),
    fromSnapshot: sessionCreateInput.shape.fromSnapshot.describe(
      'a snapshot of yours to start from, by name or id (snapshot_session, list_snapshots): its workspace, and its running programs where it saved memory; its template, backend and resources come with it (give no template or image)',
    ),
    keepAwake: sessionCreateInput.shape.keepAwake.describe(
      'true: never paused automatically while idle (a long build or test run nobody watches); default false',
    ),
  })
  .refine((input) => input.template === undefined || input.image === undefined, {
    error: 'give template or image, not both (image is the older name for an operator template)',
  })
  .refine(
    (input) =>
      input.fromSnapshot === undefined || (input.template === undefined && input.image === undefined),
    {
      error: "a session made from a snapshot runs the snapshot's template: leave out template and image",
      path: ['fromSnapshot'],
    },
  );

// What create_template and build_template wait for.
const waitShape = {
  wait: z
    .boolean()
    .default(true)
    .describe('wait for the build to end and return its outcome and log (default true)'),
  waitMs: z
    .int()
    .min(1000)
    .max(MAX_BUILD_WAIT_MS)
    .default(DEFAULT_BUILD_WAIT_MS)
    .describe('the longest wait, in ms (default 10 minutes); the build goes on after it'),
};

const recipe = templateRecipeSchema.shape;
// The keys only a recipe has: with `dockerfile` none of them may be given.
const RECIPE_ONLY = ['base', 'debian', 'npm', 'pip', 'files', 'run'] as const;

/**
 * create_template's arguments: the spec's fields at the top level beside name and description (a recipe's, or
 * `dockerfile`), checked as `templates.create` checks them. `workdir` and `dockerfile` are taken as written and
 * checked by the policy's spec schema below: both are transformed by it, and the API parses what it is sent.
 */
const createTemplateInput = z
  .strictObject({
    name: templateNameSchema.describe(
      'the template\'s name: a-z 0-9 and -, starting with a letter (e.g. "node-api"); sessions name it',
    ),
    description: templateCreateInput.shape.description.describe('what the template is for, for people'),
    shared: z.boolean().optional().describe('admins only: every user may use it'),
    base: recipe.base.describe(
      `the template to start from, by name or id; default "${DEFAULT_TEMPLATE_NAME}" (Debian with Node, Python, git and build tools)`,
    ),
    debian: recipe.debian.describe(
      'Debian packages to apt-get install, e.g. ["postgresql-client", "jq=1.6-2.1"]',
    ),
    npm: recipe.npm.describe('npm packages to install globally, e.g. ["typescript", "@angular/cli@17"]'),
    pip: recipe.pip.describe('pip packages to install system-wide, e.g. ["requests", "django>=5,<6"]'),
    files: recipe.files.describe(
      'files to put into the image: { path (absolute, not under /workspace, /tmp or /opt/studio), content, encoding? utf8|base64, mode? (default 0o644), owner? studio|root }',
    ),
    run: recipe.run.describe(
      'shell lines run as root after the packages and files, in order (e.g. "git clone … /opt/app"); a non-zero exit fails the build',
    ),
    dockerfile: z
      .string()
      .min(1)
      .max(MAX_DOCKERFILE_CHARS)
      .optional()
      .describe(
        'instead of the recipe fields: a Dockerfile whose FROM names a template (e.g. "FROM default"); RUN, ENV, ARG, WORKDIR, USER (root or studio), CMD (start command) and HEALTHCHECK CMD (ready check); no COPY/ADD (use a recipe\'s files), no multi-stage',
      ),
    env: recipe.env.describe('environment variables every command of its sessions gets'),
    workdir: z
      .string()
      .max(1024)
      .optional()
      .describe(
        "where its sessions' commands and terminals start, relative to /workspace (default the root)",
      ),
    start: recipe.start.describe(
      'run when a session starts and left running: { command, ready?: { command, timeoutMs? } }; create_session returns once the ready command exits 0',
    ),
    ...waitShape,
  })
  .superRefine((input, ctx) => {
    const spec = specOf(input);
    if (input.dockerfile !== undefined) {
      const both = RECIPE_ONLY.filter((key) => input[key] !== undefined);
      if (both.length > 0) {
        ctx.addIssue({
          code: 'custom',
          path: ['dockerfile'],
          message: `give either dockerfile or the recipe fields, not both (remove ${both.join(', ')}, or put them in the Dockerfile)`,
        });
        return;
      }
    }
    // The spec's own rules (file sizes, duplicate paths, the Dockerfile's instructions, the working directory),
    // with their paths, which are this input's keys.
    const parsed = templateCreateInput.shape.spec.safeParse(spec);
    if (!parsed.success) for (const issue of parsed.error.issues) ctx.addIssue({ ...issue } as never);
  })
  .transform(({ name, description, shared, wait, waitMs, ...rest }) => ({
    create: {
      name,
      ...(description !== undefined ? { description } : {}),
      ...(shared !== undefined ? { shared } : {}),
      spec: specOf(rest),
    },
    wait: { wait, waitMs },
  }));

/** The spec part of create_template's arguments, only the keys given. */
function specOf(input: Record<string, unknown>): Record<string, unknown> {
  const keys = ['dockerfile', ...RECIPE_ONLY, 'env', 'workdir', 'start'];
  return Object.fromEntries(keys.filter((k) => input[k] !== undefined).map((k) => [k, input[k]]));
}

const buildTemplateInput = templateByRefInput.extend(waitShape);

/** Every tool of the server, in the order `tools/list` shows them. */
export const studioTools: readonly StudioTool[] = [
  defineTool({
    name: 'create_session',
    title: 'Create a sandbox session',
    description:
      "Creates a session: a hardened sandbox (Linux container) with its own /workspace. Returns the session (its `id` is used by every other tool). `template` picks what is installed in it, by name or id: a template you built with create_template or a shared one (list_templates), default \"default\" (the server's image: Debian with Node, Python, git and build tools); a template's env, working directory and start command apply, and create returns once its ready check passes. `image` is the older way to name one of the server's images (see capabilities); give template or image, not both. `resources` can only lower the policy limits. `network` decides what its programs may reach (default mode 'none': nothing): { mode: 'allowlist', allow: ['registry.npmjs.org', '*.pypi.org', 'example.com:8443', '203.0.113.0/24'] } lets out only those hosts (ports 80 and 443 unless one is given); mode 'open' only where the server permits it. Change it later with set_network. `secrets` gives the session some of your secrets by name (see list_secrets), e.g. ['OPENAI_API_KEY']: its programs see a placeholder in the environment variable of that name, and Studio's egress proxy swaps in the real value in HTTPS requests to that secret's hosts (allow them in `network`); neither you nor the programs ever see the value. A session's secrets are chosen when it is created. `fromSnapshot` starts it from a snapshot of yours (snapshot_session): its files, and its running programs where memory was saved. Idle sessions are paused automatically after some minutes (any tool call resumes them); `keepAwake: true` keeps one running for a long job nobody watches.",
    input: createSessionInput,
    async run(input, ctx) {
      return createSession(input, ctx);
    },
  }),
  defineTool({
    name: 'list_secrets',
    title: 'List your secrets',
    description:
      "Your secrets, by name, with the hosts each may be sent to and the header it goes in; never their values. Give one to a new session with create_session's `secrets`; programs there read a placeholder from the environment variable of that name (e.g. $OPENAI_API_KEY) and Studio's egress proxy puts the value into HTTPS requests to the secret's hosts. Secrets are added, rotated and deleted by people in the Studio web app: this server cannot create one or read a value.",
    input: z.strictObject({}),
    annotations: { readOnlyHint: true },
    async run(_input, ctx) {
      const secrets = await ctx.client.secrets.list.query();
      // Names, hosts and header only: the API never returns a value, and this keeps it so if it ever added a field.
      return { secrets: secrets.map(({ name, hosts, header }) => ({ name, hosts, header })) };
    },
  }),
  defineTool({
    name: 'list_sessions',
    title: 'List sessions',
    description:
      'Lists your live sessions (id, state: running, paused, stopped…; image, backend, resources; parentId for a fork, fromSnapshotId, pausedAt, keepAwake); with includeEnded also destroyed ones. A paused session resumes on its next use.',
    input: z.strictObject({ includeEnded: z.boolean().optional() }),
    annotations: { readOnlyHint: true },
    async run(input, ctx) {
      return { sessions: await ctx.client.sessions.list.query(input) };
    },
  }),
  defineTool({
    name: 'capabilities',
    title: 'Sandbox capabilities',
    description:
      'The isolation backends this Studio server offers, whether each is available now and what it supports; and the default image create_session uses.',
    input: z.strictObject({}),
    annotations: { readOnlyHint: true },
    async run(_input, ctx) {
      return { backends: await ctx.client.backends.list.query(), defaultImage: ctx.defaultImage };
    },
  }),
  defineTool({
    name: 'list_templates',
    title: 'List templates',
    description:
      'The templates you can create sessions from: yours (owner "you") and shared ones. Each has `state` (building, ready, failed), `usable` (a good build exists: create_session accepts it), `failure` (why the last build failed), `sizeBytes` and `builtAt`. "default", the server\'s own image, is listed first (it has no build log). A template is an image you describe once (packages, files, build commands, or a Dockerfile) with create_template, so every session made from it starts ready instead of installing the same things each time.',
    input: z.strictObject({}),
    annotations: { readOnlyHint: true },
    async run(_input, ctx) {
      const templates = await ctx.client.templates.list.query();
      // Specs can carry a megabyte of files each: get_template shows one.
      return {
        templates: templates.map(({ spec: _spec, ...t }) => t),
        defaultTemplate: DEFAULT_TEMPLATE_NAME,
      };
    },
  }),
  defineTool({
    name: 'get_template',
    title: 'Get a template and its build log',
    description:
      'One template by name or id: its `state` (building, ready, failed), `failure`, its spec (file contents cut to 512 characters) and the tail of its latest build log (the last 8 KiB: each step starts with a line such as "#3 file /opt/app/config.json" or "#4 run 1: make", followed by its output; a failed step is near the end). `next` says what to do next. Poll it while a build runs when you created it with wait: false.',
    input: templateByRefInput,
    annotations: { readOnlyHint: true },
    async run(input, ctx) {
      const { log, ...view } = await ctx.client.templates.get.query(input);
      return { ...templateForAgent(view), ...logTail(log), next: nextStep(view) };
    },
  }),
  defineTool({
    name: 'create_template',
    title: 'Create (and build) a template',
    description:
      'Creates a template and builds it in an isolated sandbox: give `name`, `description` and either a recipe (`base`, `debian`, `npm`, `pip` packages, `files`, `run` commands as root, applied in that order) or a `dockerfile`; both may set `env`, `workdir` and `start` (a command left running when a session starts, with an optional ready check). The build reaches only the package sources the operator allows (Debian, npm, PyPI by default): download other things in a package, or put them in `files`. By default it waits for the build (up to `waitMs`, 10 minutes), sending its log lines as progress, and returns `outcome` (ready or failed), the template, the tail of its log (the last 8 KiB: the failing step and its output are near the end) and `next`. With wait: false it returns at once (state building): poll get_template. An unchanged recipe reuses its earlier build in about a second. Then create_session with { "template": name }. Example: { "name": "py-data", "description": "pandas and a config", "pip": ["pandas"], "files": [{ "path": "/etc/app.conf", "content": "debug=1\\n" }], "run": ["python3 -c \'import pandas\'"] }.',
    input: createTemplateInput,
    async run(input, ctx) {
      const created = await ctx.client.templates.create.mutate(input.create);
      return buildOutcome(ctx.client, created, input.wait, ctx);
    },
  }),
  defineTool({
    name: 'build_template',
    title: 'Build a template again',
    description:
      'Builds a template again (by name or id): after a failure that was passing (a package source was down), or to pick up a changed base template. An unchanged template whose build is still here finishes in about a second. Waits like create_template (wait, waitMs) and returns its outcome, log tail and `next`. INVALID_STATE while it is already being built: follow it with get_template. To change what a template holds, delete it and create it again.',
    input: buildTemplateInput,
    async run({ wait, waitMs, ...ref }, ctx) {
      const started = await ctx.client.templates.build.mutate(ref);
      return buildOutcome(ctx.client, started, { wait, waitMs }, ctx);
    },
  }),
  defineTool({
    name: 'delete_template',
    title: 'Delete a template',
    description:
      'Deletes one of your templates (by name or id); its image is removed once nothing uses it. Refused with INVALID_STATE while a live session runs it: destroy those sessions first. Shared templates are deleted only by admins.',
    input: templateByRefInput,
    annotations: { destructiveHint: true },
    async run(input, ctx) {
      return ctx.client.templates.delete.mutate(input);
    },
  }),
  defineTool({
    name: 'list_files',
    title: 'List a directory',
    description:
      "Lists a directory of a session's workspace (name, path, type, size, mtimeMs). `path` is relative to the workspace root and defaults to it.",
    input: filesListInput,
    annotations: { readOnlyHint: true },
    async run(input, ctx) {
      const entries = await ctx.client.files.list.query({
        sessionId: input.sessionId,
        ...(input.path ? { path: input.path } : {}),
      });
      return { path: input.path, entries };
    },
  }),
  defineTool({
    name: 'read_file',
    title: 'Read a file',
    description:
      'Reads a file of the workspace as UTF-8 text (FILE_NOT_TEXT if it is not: read it with encoding "base64"). Paths are relative to the workspace root.',
    input: filesReadInput,
    annotations: { readOnlyHint: true },
    async run(input, ctx) {
      return ctx.client.files.read.query(input);
    },
  }),
  defineTool({
    name: 'write_file',
    title: 'Write a file',
    description:
      'Writes a file of the workspace atomically (text, or binary with encoding "base64"); createParents makes missing directories. Watchers of the session see the change live.',
    input: filesWriteInput,
    annotations: { idempotentHint: true },
    async run(input, ctx) {
      // Without createParents a missing folder is NOT_FOUND: the fix names this tool's own argument.
      if (input.createParents === true) return ctx.client.files.write.mutate(input);
      return withFixes(ctx.client.files.write.mutate(input), { NOT_FOUND: WRITE_FILE_NOT_FOUND_FIX });
    },
  }),
  defineTool({
    name: 'exec',
    title: 'Run a command',
    description:
      "Runs a command (argv, no shell: use ['sh', '-c', '…'] for one) in the session and returns exitCode, stdout, stderr, durationMs, timedOut. Sends progress notifications with its output while it runs when the call has a progressToken. `timeoutMs` is bounded by the policy; to leave a server running, start it in the background with its output redirected, e.g. ['sh', '-c', 'nohup node server.js >/tmp/server.log 2>&1 &'].",
    input: execRunInput,
    async run(input, ctx) {
      return streamExec(input, ctx);
    },
  }),
  defineTool({
    name: 'get_events',
    title: "Read a session's events",
    description:
      "Returns a session's live events after `cursor` (file changes, exec start/output/exit, `session.status` (with a `reason` when Studio paused the session while idle or resumed it on use), `session.forked` (forkId), who joined or left, network changes, and `egress`: each connection a program made through the proxy, allowed or denied with the reason; each names its actor, `sandbox` for connections), collected for `waitMs`. Without a cursor, events from now. Pass the returned `cursor` next time to continue without missing any (a `gap` event says some were lost).",
    input: getEventsInput,
    annotations: { readOnlyHint: true },
    async run(input, ctx) {
      return collectEvents(input, ctx);
    },
  }),
  defineTool({
    name: 'get_watchers',
    title: 'Who is watching a session',
    description:
      'Who is connected to the session now (event subscribers such as the web IDE, terminals), each with its actor: whether a person is watching what you do.',
    input: sessionByIdInput,
    annotations: { readOnlyHint: true },
    async run(input, ctx) {
      return { watchers: await ctx.client.events.watchers.query(input) };
    },
  }),
  defineTool({
    name: 'preview_fetch',
    title: 'Fetch a page served in the sandbox',
    description:
      "GETs `path` (default '/') on a port (3000-9999) of the session through Studio's preview proxy, the way a browser would see it. Returns status, headers and at most `maxBytes` of the body; redirects are returned, not followed. 502: nothing listens on that port.",
    input: previewFetchInput,
    annotations: { readOnlyHint: true },
    async run(input, ctx) {
      return ctx.previews.fetch(input, ctx.signal);
    },
  }),
  defineTool({
    name: 'set_network',
    title: "Set a session's network access",
    description:
      "Replaces the session's network settings while it runs: mode 'none' (nothing goes out), 'allowlist' (only the hosts on `allow`: 'example.com', '*.example.com' for names below it, 'host:port', an IP block '203.0.113.0/24'; ports 80 and 443 unless one is given) or 'open' (any public host; only where the server permits it, else EGRESS_DENIED). The list replaces the old one: include every entry still needed. Programs get HTTP(S)_PROXY set and reach hosts through Studio's proxy; each connection shows up in get_events as an `egress` event. Returns the session with its `network`.",
    input: sessionSetNetworkInput,
    annotations: { idempotentHint: true },
    async run(input, ctx) {
      return ctx.client.sessions.setNetwork.mutate(input);
    },
  }),
  defineTool({
    name: 'check_egress',
    title: 'Check whether a host is reachable',
    description:
      "Whether the session's programs may reach `host` on `port` (default 443) under its network settings: { allowed: true, host, port }, or the error EGRESS_DENIED naming the host and the set_network call that would allow it. Ask before relying on the network (npm install, pip install, git clone).",
    input: sessionEgressCheckInput,
    annotations: { readOnlyHint: true },
    async run(input, ctx) {
      return checkEgress(input, ctx);
    },
  }),
  defineTool({
    name: 'stop_session',
    title: 'Stop a session',
    description:
      'Stops every process of the session; its workspace is kept. To set a session aside between turns, pause_session keeps more (its running programs, where memory is saved) and resumes by itself on the next call.',
    input: sessionByIdInput,
    annotations: { destructiveHint: true, idempotentHint: true },
    async run(input, ctx) {
      return ctx.client.sessions.stop.mutate(input);
    },
  }),
  defineTool({
    name: 'start_session',
    title: 'Start a stopped session',
    description: 'Starts a stopped session again, with its workspace as it was (processes are not restored).',
    input: sessionByIdInput,
    annotations: { idempotentHint: true },
    async run(input, ctx) {
      return ctx.client.sessions.start.mutate(input);
    },
  }),
  defineTool({
    name: 'pause_session',
    title: 'Pause a session',
    description:
      "Pauses a session you will not use for a while (between turns, while you wait for a person or another session): Studio saves it and releases it, so it holds none of the host's memory. Where the backend saves memory (gVisor: `checkpoint` in capabilities) its running programs carry on exactly where they were when it resumes; elsewhere only its workspace is kept and programs start again. Any later tool call on it (exec, read_file, write_file, list_files, preview_fetch, …) resumes it by itself, so there is no need to call resume_session first. Running exec calls and terminals end with the pause. Idle sessions are also paused automatically after some minutes (get_events shows a session.status event with the reason). Returns the session, state paused.",
    input: sessionByIdInput,
    annotations: { idempotentHint: true },
    async run(input, ctx) {
      return ctx.client.sessions.pause.mutate(input);
    },
  }),
  defineTool({
    name: 'resume_session',
    title: 'Resume a paused session',
    description:
      "Resumes a paused session now (any other tool call on it would too; this just does it ahead of need). With saved memory its programs carry on where they were; without, the workspace is as it was and its template's start command runs again. RESTORE_FAILED: the saved memory could not be restored, the session is now stopped with its workspace intact: call start_session. Returns the session, state running.",
    input: sessionByIdInput,
    annotations: { idempotentHint: true },
    async run(input, ctx) {
      return ctx.client.sessions.resume.mutate(input);
    },
  }),
  defineTool({
    name: 'fork_session',
    title: 'Fork a session into copies',
    description:
      'Forks a session into `count` new sessions (default 1), each an independent copy of it from this moment: its workspace and, where the backend saves memory, its running programs (a dev server keeps running in each copy). Use it to try alternatives in parallel without them interfering: fork once per approach, work in each fork, keep the one that works and destroy_session the others. The source pauses only for the copy and runs on. Forks are your sessions like any other (same template, network and secrets), carry `parentId`, and count against your live-session limit (SESSION_LIMIT: destroy sessions first, or ask for fewer). Returns `forkIds` and the new sessions.',
    input: sessionForkInput,
    async run(input, ctx) {
      const forks = await withFixes(ctx.client.sessions.fork.mutate(input), {
        SESSION_LIMIT: SESSION_LIMIT_FORK_FIX,
        LIMIT_EXCEEDED:
          'ask for fewer forks: the message names the most one fork_session call makes on this server',
      });
      return { parentId: input.sessionId, forkIds: forks.map((f) => f.id), forks };
    },
  }),
  defineTool({
    name: 'snapshot_session',
    title: 'Save a named snapshot of a session',
    description:
      'Saves a named snapshot of a session: its workspace and, where the backend saves memory, its running programs. The session runs on. Start any number of new sessions from it later with create_session { "fromSnapshot": name }: a checkpoint before a risky change, or a prepared environment (dependencies installed, a database seeded) to start from again. Snapshots are kept until delete_snapshot and count against your snapshot quota (list_snapshots shows sizes and the quota). Names: a-z 0-9 and -, starting with a letter, unique among your snapshots.',
    input: snapshotCreateInput,
    async run(input, ctx) {
      return withFixes(ctx.client.snapshots.create.mutate(input), {
        LIMIT_EXCEEDED: SNAPSHOT_QUOTA_FIX,
        ALREADY_EXISTS:
          'choose another name, or delete_snapshot the snapshot of that name first (list_snapshots lists yours)',
        FORBIDDEN:
          'this server keeps no snapshots (the message says why): use fork_session to copy a session instead',
      });
    },
  }),
  defineTool({
    name: 'list_snapshots',
    title: 'List your snapshots',
    description:
      'Your snapshots, newest first: id, name, sessionId (the session it was taken of), backend, templateId, `memory` (true: running programs were saved too; false: the workspace only), `bytes` and createdAt; plus `usedBytes` and `maxBytes`, your snapshot quota. Start a session from one with create_session { "fromSnapshot": name }.',
    input: z.strictObject({}),
    annotations: { readOnlyHint: true },
    async run(_input, ctx) {
      return ctx.client.snapshots.list.query();
    },
  }),
  defineTool({
    name: 'delete_snapshot',
    title: 'Delete a snapshot',
    description:
      'Deletes one of your snapshots (by name or id) for good, freeing its bytes of your snapshot quota. Sessions already made from it keep their own copy. Returns the deleted snapshot.',
    input: snapshotByRefInput,
    annotations: { destructiveHint: true },
    async run(input, ctx) {
      return withFixes(ctx.client.snapshots.delete.mutate(input), { NOT_FOUND: SNAPSHOT_NOT_FOUND_FIX });
    },
  }),
  defineTool({
    name: 'destroy_session',
    title: 'Destroy a session',
    description:
      'Removes the sandbox and its workspace for good (idempotent). Frees a slot of your session limit.',
    input: sessionByIdInput,
    annotations: { destructiveHint: true, idempotentHint: true },
    async run(input, ctx) {
      return ctx.client.sessions.destroy.mutate(input);
    },
  }),
];

/** The JSON Schema `tools/list` advertises for a tool: the input side of its policy schema. */
export function inputJsonSchema(tool: StudioTool): { type: 'object'; [key: string]: unknown } {
  const { $schema: _ignored, ...schema } = z.toJSONSchema(tool.input, {
    io: 'input',
    unrepresentable: 'any',
  });
  return { ...schema, type: 'object' };
}
