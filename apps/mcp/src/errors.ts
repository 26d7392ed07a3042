import { isStudioClientError } from '@studio/client';
import { z } from 'zod';

/**
 * What a failed tool call returns to the agent: a stable `code` (the API's Studio code, a policy code such as
 * `PATH_TRAVERSAL`, or `INPUT_INVALID`), a `message` saying what went wrong and a `fix` saying what to do next.
 * Never a stack trace or a cause.
 */
export interface ToolErrorBody {
  code: string;
  message: string;
  fix: string;
}

/** An error a tool raises on purpose, with its code and fix (e.g. a preview body that is not text). */
export class McpToolError extends Error {
  override readonly name = 'McpToolError';
  constructor(
    readonly code: string,
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

/** The fix for a session asked for a secret its owner does not have: agents never create secrets. */
export const MISSING_SECRET_FIX =
  "call list_secrets for the secrets you can give a session (names are case-sensitive) and create_session again with those; a secret you need but do not have is added by a person on the Studio web app's Secrets page (this server cannot create one, or read a value)";

/** The fix for a snapshot named that the caller has none of (create_session's fromSnapshot, delete_snapshot). */
export const SNAPSHOT_NOT_FOUND_FIX =
  'call list_snapshots for your snapshots and name one by its name or id (another user’s snapshots are NOT_FOUND)';

/** The fix for a snapshot that would pass the owner's snapshot quota. */
export const SNAPSHOT_QUOTA_FIX =
  'your snapshots would pass your snapshot quota: list_snapshots shows what each takes (bytes) and the quota (usedBytes, maxBytes); delete_snapshot those you no longer need, then snapshot again';

/** The fix for a fork that reached the live-session limit: the forks made before it are kept. */
export const SESSION_LIMIT_FORK_FIX =
  'every fork is a live session of yours: destroy_session sessions you no longer need (or fork fewer with count), then fork again. Forks made before the limit was reached are kept: list_sessions shows them, their parentId is this session';

/** Said with every EGRESS_DENIED fix: set_network is a change, refused while a person holds control. */
export const EGRESS_CONTROL_NOTE =
  'If set_network answers HUMAN_HAS_CONTROL, a person controls the session: ask them, or wait for control.released';

// What an agent can do about each code. Codes not listed get the generic fix.
const FIXES: Record<string, string> = {
  INPUT_INVALID: 'correct the arguments named in the message and call the tool again',
  PATH_TRAVERSAL: "use a path relative to the workspace root without '..' segments, e.g. 'src/app.js'",
  PATH_ABSOLUTE:
    "use a path relative to the workspace root, e.g. 'src/app.js' instead of '/workspace/src/app.js'",
  PATH_EMPTY: "give a path relative to the workspace root, e.g. 'src/app.js'",
  PATH_IS_ROOT: "name a file, not the workspace root, e.g. 'README.md'",
  PATH_ENCODING: 'write the path plainly, without percent-encoding',
  PATH_CONTROL_CHAR: 'remove control characters from the path',
  PATH_BACKSLASH: "use '/' as the separator, never '\\'",
  PATH_TOO_LONG: 'use a shorter path',
  SEGMENT_TOO_LONG: 'use shorter file and directory names',
  PORT_INVALID: 'give the port as an integer between 3000 and 9999',
  NOT_FOUND:
    'check the id or path: list_sessions lists your sessions (another user’s session is NOT_FOUND), list_files lists a directory',
  ALREADY_EXISTS: 'choose another name, or remove the existing one first',
  SECRET_INVALID:
    'a secret is named like an environment variable (e.g. OPENAI_API_KEY): call list_secrets for the names you can give a session; secrets are added by people in the Studio web app, never through this server',
  SESSION_LIMIT: 'destroy a session you no longer need with destroy_session, then retry',
  INVALID_STATE:
    'the session is not in a state that allows this: check its state with list_sessions; start a stopped one with start_session, or create a new one',
  HUMAN_HAS_CONTROL:
    'a person has taken control of this session in the Studio web app: do not write or exec; call get_events (with your cursor and waitMs) until a control.released event arrives, then retry the same call (reads still work meanwhile)',
  EGRESS_DENIED: `the session's network settings do not let its programs reach that host (the message names it and why): call set_network with mode 'allowlist' and the host added to allow, keeping the entries already there (list_sessions shows the session's network), then check_egress again; mode 'open' works only where the server's operator permits it. ${EGRESS_CONTROL_NOTE}`,
  HOST_INVALID:
    "write each allowlist entry as a host name ('example.com'), a wildcard below a domain ('*.example.com'), 'host:port', or an IP block ('203.0.113.0/24'); local names, public suffixes and single IP addresses are refused",
  TEMPLATE_NOT_FOUND:
    'call list_templates for the templates you can use (yours and shared ones), or leave template out for the default',
  TEMPLATE_NOT_READY:
    'the template has no finished build yet: call get_template until its state is ready (or read its log), fix a failed build with build_template',
  TEMPLATE_START_FAILED:
    "the template's start command or ready check failed: read the message, fix the template's start settings, or create the session from another template",
  TEMPLATE_INVALID:
    'fix the template spec as the message says (packages by name, files outside /workspace and /tmp, a Dockerfile without COPY)',
  RESTORE_FAILED:
    "the session's saved memory could not be restored: it is now stopped with its workspace intact; call start_session to start it afresh, then start again the programs it was running (servers, watchers)",
  UNSUPPORTED:
    "this session's backend cannot do that (capabilities shows what each backend supports): instead of pause_session use stop_session; for fork_session or snapshot_session, work in a session on a backend that supports snapshots",
  BACKEND_UNAVAILABLE: 'the sandbox runtime is down: retry later or ask the Studio operator',
  FILE_TOO_LARGE: 'write or read a smaller file, or split the content; large outputs can be read with exec',
  INPUT_TOO_LARGE: 'send less data in one call',
  FILE_NOT_TEXT: 'read it again with encoding "base64"',
  LIMIT_EXCEEDED: 'lower the number named in the message to within the policy limit',
  PORT_BLOCKED: 'serve on another port between 3000 and 9999',
  PORT_OUT_OF_RANGE: 'serve on a port between 3000 and 9999',
  TIMEOUT: 'raise timeoutMs (within the policy limit) or run the command in the background',
  RATE_LIMITED: 'wait a little and retry',
  UNAUTHENTICATED: 'the MCP server’s STUDIO_API_TOKEN was refused: set a valid API token and restart it',
  TOKEN_REVOKED: 'the API token was revoked: create a new one and set STUDIO_API_TOKEN',
  TOKEN_EXPIRED: 'the API token expired: create a new one and set STUDIO_API_TOKEN',
  TOKEN_INVALID: 'STUDIO_API_TOKEN is not a valid token: copy it again from the Studio web app',
  FORBIDDEN: 'this token is not allowed to do that',
  NETWORK: 'the Studio API was not reached: check STUDIO_API_URL and that the API is running',
  PREVIEW_UNAVAILABLE: 'the API has no preview proxy: start it with STUDIO_PREVIEW_PORT set',
  CANCELLED: 'the call was cancelled; run it again if you still need it',
  INTERNAL: 'retry once; if it fails again, report the message to the Studio operator',
};

const GENERIC_FIX = 'read the message, correct the call and retry';

/** The fix suggested for a code. */
export function fixFor(code: string): string {
  return FIXES[code] ?? GENERIC_FIX;
}

/** Turns zod issues into one error: the policy code of the first refusal that came from a policy rule, else INPUT_INVALID. */
export function fromZodError(error: z.ZodError): ToolErrorBody {
  let code = 'INPUT_INVALID';
  for (const issue of error.issues) {
    const params = (issue as { params?: { policyCode?: unknown } }).params;
    if (typeof params?.policyCode === 'string') {
      code = params.policyCode;
      break;
    }
  }
  const message = error.issues
    .map((i) => (i.path.length > 0 ? `${i.path.map(String).join('.')}: ${i.message}` : i.message))
    .join('; ');
  return { code, message, fix: fixFor(code) };
}

/** Shapes anything a tool threw into a {@link ToolErrorBody}; unknown failures become INTERNAL without details. */
export function toToolError(error: unknown): ToolErrorBody {
  if (error instanceof McpToolError) return { code: error.code, message: error.message, fix: error.fix };
  if (error instanceof z.ZodError) return fromZodError(error);
  if (isStudioClientError(error)) {
    const suffix = error.requestId ? ` (request ${error.requestId})` : '';
    return { code: error.code, message: `${error.message}${suffix}`, fix: fixFor(error.code) };
  }
  return { code: 'INTERNAL', message: 'the MCP server failed unexpectedly', fix: fixFor('INTERNAL') };
}

/** An MCP tool result carrying an error: `isError: true`, the body as JSON text and as structured content. */
export function errorResult(body: ToolErrorBody) {
  return {
    isError: true as const,
    content: [{ type: 'text' as const, text: JSON.stringify({ error: body }) }],
    structuredContent: { error: body },
  };
}
