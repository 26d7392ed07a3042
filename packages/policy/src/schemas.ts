import { z } from 'zod';
import { canonicalEgressList, MAX_EGRESS_RULES, NETWORK_MODES, type NetworkMode } from './egress.ts';
import { findControlChar, hasLoneSurrogate, utf8ByteLength } from './lib/text.ts';
import { envNameSchema, viaPolicy } from './lib/via-policy.ts';
import { defaultPolicy, MAX_TOKEN_LENGTH, type Policy, SANDBOX_LIMIT_BOUNDS } from './limits.ts';
import { DEFAULT_MAX_PATH_BYTES, resolveWorkspacePath } from './paths.ts';
import { validatePreviewPort } from './preview.ts';
import {
  canonicalSecretHosts,
  checkSecretName,
  checkSecretValue,
  DEFAULT_SECRET_HEADER,
  MAX_SECRET_HOSTS,
  MAX_SECRET_VALUE_LENGTH,
  MAX_SESSION_SECRETS,
  parseSecretHeader,
} from './secrets.ts';
import { snapshotRefSchema } from './snapshot-ref.ts';
import { templateRefSchema } from './templates.ts';

// Conventions for every schema here:
// - objects are strict: an unknown key is an error, so a client can never smuggle a low-level runtime
//   parameter (mounts, capabilities, privileged, workdir) past the API (SECURITY.md §1);
// - every string has a max length, every array a max item count, every number is an integer with bounds
//   unless it is a fraction by nature (cpus);
// - where a rule lives in a policy function (paths, ports), the schema calls it and reports its refusal as a
//   zod issue of code 'custom' whose `params.policyCode` is the PolicyErrorCode.

const MiB = 1024 * 1024;

/** Issue params carried by a refusal that came from a policy function. */
export interface PolicyIssueParams {
  readonly policyCode: string;
}

function noControlChars(text: string): boolean {
  return findControlChar(text) === -1 && !hasLoneSurrogate(text);
}

const noNul = (text: string): boolean => !text.includes('\u0000');

/** The prefix every session id carries, so ids of different kinds are never confused. */
export const SESSION_ID_PREFIX = 'ses_';

/**
 * A session id: `ses_` followed by 16-64 URL-safe characters (a nanoid or UUID fits). Security meaning: the id
 * names a resource but grants nothing; the API must still check the caller owns the session (SECURITY.md §4).
 * The bounded, URL-safe shape keeps ids safe to put in paths, labels and logs.
 */
export const sessionIdSchema = z
  .string()
  .max(SESSION_ID_PREFIX.length + 64)
  .regex(/^ses_[A-Za-z0-9_-]{16,64}$/, {
    error: 'session id must be ses_ followed by 16-64 of A-Z a-z 0-9 _ -',
  });

/** A user id: 1-128 URL-safe characters starting with a letter or digit. Used as the `sub` of tokens. */
export const userIdSchema = z
  .string()
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/, { error: 'user id must be 1-128 of A-Z a-z 0-9 _ -' });

/**
 * A username, lowercased before it is checked: 1-64 of a-z 0-9 . _ -, starting with a letter or digit.
 * Security meaning: one spelling per account, so `Alice` and `alice` share one rate-limit key and one account.
 */
export const usernameSchema = z
  .string()
  .max(64)
  .toLowerCase()
  .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, {
    error: 'username must be 1-64 of a-z 0-9 . _ - and start with a letter or digit',
  });

/** A password at login: 1-1024 characters (bounded so the hash cost cannot be driven by a huge input). */
export const passwordSchema = z.string().min(1).max(1024);

/** A new password: 12-1024 characters (ASVS V6.2: a length floor, no composition rules, long passphrases allowed). */
export const newPasswordSchema = z.string().min(12).max(1024);

/** A short human label (token names): 1-64 characters, no control characters or broken Unicode. */
export const labelSchema = z
  .string()
  .min(1)
  .max(64)
  .refine(noControlChars, { error: 'must not contain control characters' });

const rawPath = z
  .string()
  .min(1)
  .max(3 * DEFAULT_MAX_PATH_BYTES);

/**
 * A path inside the workspace, parsed by {@link resolveWorkspacePath}: the OUTPUT is the canonical relative path,
 * so the API can only ever use the checked value. Refuses traversal, absolute and encoded forms, control
 * characters, backslashes, over-long names, and the workspace root itself.
 */
export const workspacePathSchema = rawPath.transform(viaPolicy((p: string) => resolveWorkspacePath(p)));

/** Like {@link workspacePathSchema} but the workspace root is allowed ('.' or './', output ''). For directories. */
export const workspaceDirSchema = rawPath.transform(
  viaPolicy((p: string) => resolveWorkspacePath(p, { allowRoot: true })),
);

/** The isolation backends a client may name; 'auto' lets the server choose. */
export const backendSchema = z.enum(['auto', 'docker', 'gvisor']);

// name[:tag][@sha256:digest] with Docker's path-component grammar, minus '.' in names: without a '.', ':' or
// 'localhost' the first component can never be read as a registry host, so a client cannot make the daemon
// fetch from an address of its choice (daemon-side SSRF, CWE-918). Registries come from server config.
const IMAGE =
  /^(?!localhost(?:[/:@]|$))[a-z0-9]+(?:(?:_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:_|__|-+)[a-z0-9]+)*){0,3}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;

/**
 * A container image reference: `name[:tag][@sha256:…]`, at most 255 characters, with no registry host.
 * Security meaning: refuses `localhost:5000/x`, `10.0.0.1/x`, `evil.example/x` so image pulls cannot be aimed at
 * internal addresses. It checks the shape only: the API must still match the image against its allow list.
 */
export const imageNameSchema = z
  .string()
  .max(255)
  .regex(IMAGE, { error: 'image must be name[:tag][@sha256:digest] without a registry host' });

/**
 * An idempotency key for `exec.run` (and `exec.start`): 8-128 characters of `A-Z a-z 0-9 _ - . :` (a UUID
 * fits). Security meaning: it lets a client retry a call that may have reached the server without running the
 * command twice; the API scopes it to the caller (another user's identical key is a different key, and can
 * neither read nor block the first user's result), binds it to the first call's input (the same key with
 * another input is refused, never answered with the first result) and forgets it after a bounded window.
 */
export const idempotencyKeySchema = z
  .string()
  .min(8)
  .max(128)
  .regex(/^[A-Za-z0-9_.:-]+$/, { error: 'idempotencyKey is 8-128 characters of A-Z a-z 0-9 _ - . :' });

/** A directory listing cursor or event cursor: 1-128 URL-safe characters. */
export const cursorSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9_-]+$/);

export { isAllowedEnvName, REFUSED_ENV_NAMES, REFUSED_ENV_PREFIXES } from './env-names.ts';

const MAX_ARGS = 256;
const MAX_ARG_CHARS = 32 * 1024;
const MAX_ARGV_CHARS = 256 * 1024;
const MAX_ENV_VARS = 64;
const MAX_ENV_VALUE_CHARS = 8 * 1024;

/**
 * Environment variables a caller gives a program (exec, an E2B sandbox or process): names that cannot hijack the
 * loader or the shell (`envNameSchema`), values without NUL, at most 64 of them.
 */
export const envVarsSchema = z
  .record(
    envNameSchema,
    z.string().max(MAX_ENV_VALUE_CHARS).refine(noNul, { error: 'values cannot contain NUL' }),
  )
  .refine((env) => Object.keys(env).length <= MAX_ENV_VARS, {
    error: `at most ${MAX_ENV_VARS} environment variables`,
  });

// Characters of an origin-form request target (RFC 3986 path + query). Non-ASCII must arrive percent-encoded.
const PREVIEW_PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*$/;

/**
 * The request target forwarded to a preview: starts with '/', at most 2048 characters of RFC 3986 path and
 * query characters, well-formed percent-escapes. Security meaning: refuses '//host' and '/\\host' (a URL parser
 * would read them as another host: SSRF or open redirect), control characters, spaces and backslashes
 * (request smuggling and parser disagreement), and fragments.
 */
export const previewPathSchema = z
  .string()
  .min(1)
  .max(2048)
  .regex(PREVIEW_PATH, {
    error: "preview path must start with '/' and use only URL path and query characters",
  })
  .refine((p) => !p.startsWith('//'), {
    error: "preview path must not start with '//' (it would name another host)",
  })
  .refine((p) => !/%(?![0-9A-Fa-f]{2})/.test(p), { error: 'preview path has a malformed percent-escape' });

/** A preview port, parsed by {@link validatePreviewPort} (3000-9999, blocked ports refused). Output: a number. */
export const previewPortSchema = z
  .union([z.number(), z.string().max(16)])
  .transform(viaPolicy((p: number | string) => validatePreviewPort(p)));

function isBase64(text: string): boolean {
  if (text.length % 4 !== 0) return false;
  const body = text.endsWith('==') ? text.slice(0, -2) : text.endsWith('=') ? text.slice(0, -1) : text;
  return /^[A-Za-z0-9+/]*$/.test(body);
}

function base64DecodedLength(text: string): number {
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  return (text.length / 4) * 3 - padding;
}

/**
 * A session's network settings: `{ mode: 'none'|'allowlist'|'open', allow?: string[] }` (issue 18). Output: the
 * entries canonicalised by {@link canonicalEgressList}. Security meaning: each entry is parsed by the same rule
 * the egress proxy applies, so a list that is stored is a list the proxy reads the same way; whether `open` is
 * permitted is the operator's policy, checked by the API.
 */
export const networkSettingsSchema = z
  .strictObject({
    mode: z.enum(NETWORK_MODES),
    allow: z.array(z.string().max(300)).max(MAX_EGRESS_RULES).default([]),
  })
  .transform(
    viaPolicy((n: { mode: NetworkMode; allow: string[] }) => ({
      mode: n.mode,
      allow: canonicalEgressList(n.allow),
    })),
  );

/**
 * A secret's name: an environment variable name such as `OPENAI_API_KEY` (the session sees its placeholder under
 * it). Security meaning: {@link checkSecretName}: loader and shell-startup names are refused.
 */
export const secretNameSchema = z.string().max(64).transform(viaPolicy(checkSecretName));

/**
 * A secret's value. Security meaning: {@link checkSecretValue}: no control characters, so the proxy can put it in
 * a header without adding headers; the API never returns it.
 */
export const secretValueSchema = z
  .string()
  .max(MAX_SECRET_VALUE_LENGTH)
  .transform(viaPolicy(checkSecretValue));

/**
 * The secrets a session is given, by name (at most {@link MAX_SESSION_SECRETS}, no repeats). Security meaning:
 * only the caller's own secrets resolve; the session sees placeholders, never values.
 */
export const sessionSecretsSchema = z
  .array(secretNameSchema)
  .max(MAX_SESSION_SECRETS)
  .transform((names) => [...new Set(names)].sort());

/**
 * `secrets.create`: `{ name, value, hosts, header? }`. Hosts are names or wildcards (never address blocks); the
 * header template defaults to {@link DEFAULT_SECRET_HEADER}. Output: hosts canonicalised, header kept as given.
 */
export const secretCreateInput = z.strictObject({
  name: secretNameSchema,
  value: secretValueSchema,
  hosts: z.array(z.string().max(300)).max(MAX_SECRET_HOSTS).transform(viaPolicy(canonicalSecretHosts)),
  header: z
    .string()
    .max(512)
    .default(DEFAULT_SECRET_HEADER)
    .transform(
      viaPolicy((h: string) => {
        const parsed = parseSecretHeader(h);
        return `${h.slice(0, h.indexOf(':')).trim()}: ${parsed.template}`;
      }),
    ),
});

/** `secrets.rotate`: `{ name, value }`: a new value for a stored secret; sessions use it from their next request. */
export const secretRotateInput = z.strictObject({ name: secretNameSchema, value: secretValueSchema });

/** `secrets.delete`: `{ name }`. Sessions given it then send its placeholder unchanged. */
export const secretDeleteInput = z.strictObject({ name: secretNameSchema });

/**
 * Builds the schemas whose bounds come from a {@link Policy}. The named exports below are these schemas built
 * from {@link defaultPolicy}; an API started with a different policy should use its own set, so the parse-time
 * bound and the enforced limit are the same number.
 */
export function createPolicySchemas(policy: Policy) {
  const maxFile = policy.files.maxFileBytes;
  const maxBase64 = 4 * Math.ceil(maxFile / 3);

  const sessionCreateInput = z.strictObject({
    backend: backendSchema.default('auto'),
    /** The template to start from, by id or name (issue 19); default the operator's default template. */
    template: templateRefSchema.optional(),
    /** An operator image by name (what `template` replaced; kept for clients written before templates). */
    image: imageNameSchema.optional(),
    resources: z
      .strictObject({
        memoryMb: z
          .int()
          .min(Math.ceil(SANDBOX_LIMIT_BOUNDS.memoryBytes.min / MiB))
          .max(Math.floor(policy.sandbox.memoryBytes / MiB)),
        cpus: z.number().min(SANDBOX_LIMIT_BOUNDS.cpus.min).max(policy.sandbox.cpus),
        pids: z.int().min(SANDBOX_LIMIT_BOUNDS.pids.min).max(policy.sandbox.pids),
        diskMb: z
          .int()
          .min(Math.ceil(SANDBOX_LIMIT_BOUNDS.diskBytes.min / MiB))
          .max(Math.floor(policy.sandbox.diskBytes / MiB)),
      })
      .partial()
      .optional(),
    network: networkSettingsSchema.optional(),
    secrets: sessionSecretsSchema.optional(),
    /**
     * A snapshot of the caller's to start from, by id or name (issue 20): its workspace, and its memory where the
     * backend saved it. Its template, backend and settings come with it, so `template`/`image` must not be given.
     */
    fromSnapshot: snapshotRefSchema.optional(),
    /** Automatic pausing leaves the session running while idle (a long job needing no one); default false. */
    keepAwake: z.boolean().optional(),
  });

  const filesWriteInput = z
    .strictObject({
      sessionId: sessionIdSchema,
      path: workspacePathSchema,
      content: z.string().max(Math.max(maxFile, maxBase64)),
      encoding: z.enum(['utf8', 'base64']).default('utf8'),
      createParents: z.boolean().optional(),
    })
    .superRefine((input, ctx) => {
      if (input.encoding === 'base64') {
        if (!isBase64(input.content)) {
          ctx.addIssue({ code: 'custom', path: ['content'], message: 'content is not valid padded base64' });
        } else if (base64DecodedLength(input.content) > maxFile) {
          ctx.addIssue({
            code: 'custom',
            path: ['content'],
            message: `file is larger than ${maxFile} bytes`,
          });
        }
        return;
      }
      if (hasLoneSurrogate(input.content)) {
        ctx.addIssue({
          code: 'custom',
          path: ['content'],
          message: 'content is not well-formed Unicode; send binary data with encoding "base64"',
        });
      } else if (input.content.length > maxFile || utf8ByteLength(input.content) > maxFile) {
        ctx.addIssue({ code: 'custom', path: ['content'], message: `file is larger than ${maxFile} bytes` });
      }
    });

  const execRunInput = z.strictObject({
    sessionId: sessionIdSchema,
    command: z
      .array(z.string().max(MAX_ARG_CHARS).refine(noNul, { error: 'arguments cannot contain NUL' }))
      .min(1)
      .max(MAX_ARGS)
      .refine((argv) => (argv[0] ?? '') !== '', { error: 'command[0] (the program) must not be empty' })
      .refine((argv) => argv.reduce((n, a) => n + a.length, 0) <= MAX_ARGV_CHARS, {
        error: `command is longer than ${MAX_ARGV_CHARS} characters in total`,
      }),
    cwd: workspaceDirSchema.optional(),
    env: envVarsSchema.optional(),
    stdin: z
      .string()
      .max(policy.exec.maxStdinBytes)
      .refine((s) => utf8ByteLength(s) <= policy.exec.maxStdinBytes, {
        error: `stdin is larger than ${policy.exec.maxStdinBytes} bytes`,
      })
      .optional(),
    timeoutMs: z.int().min(1).max(policy.exec.maxTimeoutMs).optional(),
    idempotencyKey: idempotencyKeySchema.optional(),
  });

  const terminalInputMessage = z.strictObject({
    type: z.literal('input'),
    data: z.string().min(1).max(policy.websocket.maxMessageBytes),
  });
  const terminalResizeMessage = z.strictObject({
    type: z.literal('resize'),
    cols: z.int().min(1).max(policy.terminal.maxCols),
    rows: z.int().min(1).max(policy.terminal.maxRows),
  });
  const terminalAuthMessage = z.strictObject({
    type: z.literal('auth'),
    token: z.string().min(1).max(MAX_TOKEN_LENGTH),
  });
  const terminalClientMessage = z.discriminatedUnion('type', [
    terminalAuthMessage,
    terminalInputMessage,
    terminalResizeMessage,
  ]);

  return {
    sessionCreateInput,
    filesWriteInput,
    execRunInput,
    terminalInputMessage,
    terminalResizeMessage,
    terminalAuthMessage,
    terminalClientMessage,
  };
}

/** The policy-bound schemas of {@link createPolicySchemas}. */
export type PolicySchemas = ReturnType<typeof createPolicySchemas>;

const defaults = createPolicySchemas(defaultPolicy);

/**
 * `sessions.create`: `{ backend?: 'auto'|'docker'|'gvisor', image, resources?: { memoryMb, cpus, pids, diskMb } }`.
 * Security meaning: resources can only be lowered below the policy ceilings, the image cannot name a registry
 * host, and nothing else (mounts, capabilities, privileged, workdir) can be passed at all.
 */
export const sessionCreateInput = defaults.sessionCreateInput;

/** `sessions.setNetwork`: `{ sessionId, network }`. Ownership and `open` permission are the API's checks. */
export const sessionSetNetworkInput = z.strictObject({
  sessionId: sessionIdSchema,
  network: networkSettingsSchema,
});

/** `sessions.checkEgress`: `{ sessionId, host, port? }` (port default 443). The host is checked by the egress rules. */
export const sessionEgressCheckInput = z.strictObject({
  sessionId: sessionIdSchema,
  host: z.string().min(1).max(300),
  port: z.int().min(1).max(65_535).default(443),
});

/** Any procedure that names one session: `{ sessionId }`. Ownership must still be checked by the API. */
export const sessionByIdInput = z.strictObject({ sessionId: sessionIdSchema });

/** `files.list`: `{ sessionId, path? }`; path may be the root and defaults to it (output ''). */
export const filesListInput = z.strictObject({
  sessionId: sessionIdSchema,
  path: workspaceDirSchema.default(''),
});

/** `files.read`: `{ sessionId, path, encoding? }`; path is a canonical workspace path, never the root. */
export const filesReadInput = z.strictObject({
  sessionId: sessionIdSchema,
  path: workspacePathSchema,
  encoding: z.enum(['utf8', 'base64']).default('utf8'),
});

/**
 * `files.write`: `{ sessionId, path, content, encoding?: 'utf8'|'base64', createParents? }`. Security meaning:
 * the decoded size is bounded by `files.maxFileBytes` (utf8 by UTF-8 bytes; base64 must be padded base64 whose
 * decoded length fits), and malformed Unicode is refused rather than silently replaced.
 */
export const filesWriteInput = defaults.filesWriteInput;

/** `files.mkdir`: `{ sessionId, path, createParents? }`. */
export const filesMkdirInput = z.strictObject({
  sessionId: sessionIdSchema,
  path: workspacePathSchema,
  createParents: z.boolean().optional(),
});

/** The longest text `files.search` looks for. */
export const MAX_SEARCH_QUERY = 500;

/**
 * `files.search`: `{ sessionId, query, caseSensitive?, regex? }`. Security meaning: the query is 1-500
 * characters without control characters (no NUL, no line breaks), and is only ever handed to ripgrep as one argv
 * element after `-e` (never through a shell, never read as an option); `regex: false` (the default) searches
 * for it literally. Ownership of the session is still checked by the API.
 */
export const filesSearchInput = z.strictObject({
  sessionId: sessionIdSchema,
  query: z
    .string()
    .min(1)
    .max(MAX_SEARCH_QUERY)
    // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
    .refine((q) => !/[\u0000-\u001f\u007f]/.test(q), {
      error: 'the search text must not hold control characters or line breaks',
    }),
  caseSensitive: z.boolean().default(false),
  regex: z.boolean().default(false),
});

/** `files.remove`: `{ sessionId, path, recursive? }`. The workspace root itself can never be removed. */
export const filesRemoveInput = z.strictObject({
  sessionId: sessionIdSchema,
  path: workspacePathSchema,
  recursive: z.boolean().optional(),
});

/** `files.rename`: `{ sessionId, from, to }`; neither may be the root, and a folder cannot move into itself. */
export const filesRenameInput = z
  .strictObject({ sessionId: sessionIdSchema, from: workspacePathSchema, to: workspacePathSchema })
  .refine((r) => r.to !== r.from && !r.to.startsWith(`${r.from}/`), {
    error: 'cannot rename a path onto itself or into itself',
    path: ['to'],
  });

/**
 * `exec.run`: `{ sessionId, command: string[], cwd?, env?, stdin?, timeoutMs? }`. Security meaning: argv only,
 * never a shell string assembled by the server (a client wanting a shell passes ['sh', '-c', …] in its own
 * sandbox); 1-256 arguments of at most 32 KiB with no NUL (execve would truncate there) and 256 KiB in all; cwd
 * is a canonical workspace directory; at most 64 env variables with safe names (see {@link REFUSED_ENV_NAMES});
 * stdin bounded by `exec.maxStdinBytes`; timeout 1 ms..`exec.maxTimeoutMs`. `idempotencyKey` (see
 * {@link idempotencyKeySchema}): a retry with the same key and input runs nothing and gets the first result.
 */
export const execRunInput = defaults.execRunInput;

/** Terminal keystrokes: `{ type: 'input', data }`, data 1..`websocket.maxMessageBytes` characters. */
export const terminalInputMessage = defaults.terminalInputMessage;

/** Terminal resize: `{ type: 'resize', cols: 1..500, rows: 1..200 }` integers (huge sizes exhaust the emulator). */
export const terminalResizeMessage = defaults.terminalResizeMessage;

/** The first WebSocket message: `{ type: 'auth', token }`, token at most {@link MAX_TOKEN_LENGTH} characters. */
export const terminalAuthMessage = defaults.terminalAuthMessage;

/** Any message a terminal client may send, discriminated by `type`; unknown types and keys are refused. */
export const terminalClientMessage = defaults.terminalClientMessage;

/** `preview` request: `{ sessionId, port, path }` with the port and path rules above. */
export const previewRequestInput = z.strictObject({
  sessionId: sessionIdSchema,
  port: previewPortSchema,
  path: previewPathSchema,
});

/** `auth.login`: `{ username, password }`; the username output is lowercased. */
export const loginInput = z.strictObject({ username: usernameSchema, password: passwordSchema });

/** `tokens.create` (API tokens): `{ name, expiresInDays?: 1..365 }`. */
export const tokenCreateInput = z.strictObject({
  name: labelSchema,
  expiresInDays: z.int().min(1).max(365).optional(),
});

/**
 * `users.create`: `{ username, password }` with a 12-character floor. There is deliberately no role field:
 * privileges are never taken from the same input that creates the account (mass assignment).
 */
export const userCreateInput = z.strictObject({ username: usernameSchema, password: newPasswordSchema });

/** The roles a user can hold: `admin` manages users; `user` works in its own sessions only. */
export const roleSchema = z.enum(['admin', 'user']);

/**
 * `auth.changePassword`: `{ currentPassword, newPassword }`. The current password is required even though the
 * caller is signed in, so a browser left signed in (or a stolen sign-in) cannot take the account over by setting
 * a password its thief knows; the new one meets the same 12-character floor as every new password.
 */
export const changePasswordInput = z.strictObject({
  currentPassword: passwordSchema,
  newPassword: newPasswordSchema,
});

/** `users.enable` and `users.disable`: `{ userId }`, the account an administrator acts on. */
export const userRefInput = z.strictObject({ userId: userIdSchema });

/**
 * `users.resetPassword`: `{ userId, password }` (admin). The administrator then knows the password, so the user
 * must change it at the next sign-in before doing anything else, and the user's sign-ins are revoked.
 */
export const userPasswordResetInput = z.strictObject({ userId: userIdSchema, password: newPasswordSchema });

/**
 * `users.setRole`: `{ userId, role }` (admin). A role is only ever granted by this separate, audited call by
 * another administrator, never taken from the input that creates an account or from the caller's own request.
 */
export const userSetRoleInput = z.strictObject({ userId: userIdSchema, role: roleSchema });

/** `events.subscribe`: `{ sessionId, cursor? }`. */
export const eventsSubscribeInput = z.strictObject({
  sessionId: sessionIdSchema,
  cursor: cursorSchema.optional(),
});

/**
 * `events.history`: `{ sessionId, before?, limit? }`, a page of a session's kept events (issue 22): `before` is a
 * page's `nextBefore` (a stored event's id, digits only), `limit` 1..200 (default 100). Security meaning: a page
 * is bounded, so reading a session's history costs at most 200 rows a call; ownership is checked by the API.
 */
export const eventsHistoryInput = z.strictObject({
  sessionId: sessionIdSchema,
  before: z
    .string()
    .regex(/^[1-9][0-9]{0,14}$/, { error: 'before must be a nextBefore from events.history' })
    .optional(),
  limit: z.int().min(1).max(200).default(100),
});

/** A validated session id (`ses_…`). */
export type SessionId = z.output<typeof sessionIdSchema>;
/** The isolation backend a client asked for ('auto' lets the server choose). */
export type Backend = z.output<typeof backendSchema>;
/** Parsed `sessions.create` input: resources only ever at or below the policy ceilings. */
export type SessionCreateInput = z.output<typeof sessionCreateInput>;
/** Parsed `sessions.setNetwork` input; the allowlist is canonical. */
export type SessionSetNetworkInput = z.output<typeof sessionSetNetworkInput>;
/** Parsed `sessions.create` network settings. */
export type NetworkSettingsInput = z.output<typeof networkSettingsSchema>;
/** Parsed input naming one session; ownership is still the API's check. */
export type SessionByIdInput = z.output<typeof sessionByIdInput>;
/** Parsed `files.list` input; `path` is canonical and '' means the workspace root. */
export type FilesListInput = z.output<typeof filesListInput>;
/** Parsed `files.read` input; `path` is canonical and never the root. */
export type FilesReadInput = z.output<typeof filesReadInput>;
/** Parsed `files.write` input; content size already bounded by the policy. */
export type FilesWriteInput = z.output<typeof filesWriteInput>;
/** Parsed `files.mkdir` input; `path` is canonical. */
export type FilesMkdirInput = z.output<typeof filesMkdirInput>;
/** Parsed `files.remove` input; `path` is canonical and never the root. */
export type FilesRemoveInput = z.output<typeof filesRemoveInput>;
/** Parsed `files.rename` input; both paths canonical, `to` not inside `from`. */
export type FilesRenameInput = z.output<typeof filesRenameInput>;
/** Parsed `exec.run` input: argv, canonical cwd, safe env names, bounded stdin and timeout. */
export type ExecRunInput = z.output<typeof execRunInput>;
/** A parsed terminal keystroke message. */
export type TerminalInputMessage = z.output<typeof terminalInputMessage>;
/** A parsed terminal resize message within the size ceilings. */
export type TerminalResizeMessage = z.output<typeof terminalResizeMessage>;
/** A parsed WebSocket auth message; the token still has to be verified. */
export type TerminalAuthMessage = z.output<typeof terminalAuthMessage>;
/** Any parsed terminal client message. */
export type TerminalClientMessage = z.output<typeof terminalClientMessage>;
/** A parsed preview request: allowed port as a number, origin-form path. */
export type PreviewRequestInput = z.output<typeof previewRequestInput>;
/** Parsed login input; `username` is lowercased. */
export type LoginInput = z.output<typeof loginInput>;
/** Parsed API-token creation input. */
export type TokenCreateInput = z.output<typeof tokenCreateInput>;
/** Parsed user creation input (no role: privileges are granted elsewhere). */
export type UserCreateInput = z.output<typeof userCreateInput>;
/** Parsed `auth.changePassword` input. */
export type ChangePasswordInput = z.output<typeof changePasswordInput>;
/** Parsed `users.resetPassword` input. */
export type UserPasswordResetInput = z.output<typeof userPasswordResetInput>;
/** Parsed `users.setRole` input. */
export type UserSetRoleInput = z.output<typeof userSetRoleInput>;
/** Parsed event subscription input. */
export type EventsSubscribeInput = z.output<typeof eventsSubscribeInput>;
/** Parsed `events.history` input. */
export type EventsHistoryInput = z.output<typeof eventsHistoryInput>;
