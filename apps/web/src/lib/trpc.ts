'use client';
import {
  type AppRouter,
  createStudioClient,
  type EventSourceConstructor,
  type StudioClient,
  toStudioClientError,
} from '@studio/client';
import { IDE_PROOF_HEADER, IDE_PROOF_VALUE } from '@studio/policy/cookie-requests';
import { createTRPCContext } from '@trpc/tanstack-react-query';
import { EventSource } from 'eventsource';

export type Api = StudioClient;

/**
 * TanStack Query for the API: `useTRPC()` gives `queryOptions` / `mutationOptions` / `subscriptionOptions`
 * factories typed from the router (a type only, through `@studio/client`); `useTRPCClient()` the client for
 * one-off calls whose result becomes local state (an editor tab's text, a download, a socket token).
 */
export const { TRPCProvider, useTRPC, useTRPCClient } = createTRPCContext<AppRouter>();

let client: Api | undefined;

/**
 * The typed API client of the browser (`@studio/client`, as every other client): same origin (the web server
 * proxies /trpc to the API), authenticated by the httpOnly login cookie, and every request carries the IDE's
 * proof header, without which the API refuses the cookie (SECURITY.md §4b). Subscriptions run over the
 * `eventsource` package's fetch-based EventSource, because the browser's own cannot send that header.
 */
export function api(): Api {
  // Server rendering never calls the API (queries and the event stream start in the browser): there the client
  // points at a name that resolves nowhere, so a stray call fails instead of reaching something.
  client ??= createStudioClient({
    url: typeof window === 'undefined' ? 'http://server-render.invalid' : window.location.origin,
    headers: { [IDE_PROOF_HEADER]: IDE_PROOF_VALUE },
    EventSource: EventSource as unknown as EventSourceConstructor,
  });
  return client;
}

/** The API's stable code of a failure (`data.studioCode`), or NETWORK. */
export function studioCode(error: unknown): string {
  return toStudioClientError(error).code;
}

/** The sign-in is gone (expired, revoked, signed out elsewhere): the page goes to /login. */
export function isSignedOut(error: unknown): boolean {
  const code = studioCode(error);
  return (
    code === 'UNAUTHENTICATED' ||
    code === 'TOKEN_EXPIRED' ||
    code === 'TOKEN_REVOKED' ||
    code === 'UNAUTHORIZED'
  );
}

/** Where a sign-in whose password someone else chose is sent: it can do nothing else until it changes it. */
export const CHANGE_PASSWORD_PATH = '/change-password';

/** The sign-in must change its password first (an administrator set it, or it is the first admin's generated one). */
export function mustChangePassword(error: unknown): boolean {
  return studioCode(error) === 'PASSWORD_CHANGE_REQUIRED';
}

const TRANSIENT = new Set(['NETWORK', 'API_UNREACHABLE', 'BACKEND_UNAVAILABLE', 'INTERNAL_SERVER_ERROR']);

/** Worth one more try: the server was not reached or failed, not a refusal that would repeat. */
export function isTransient(error: unknown): boolean {
  return TRANSIENT.has(studioCode(error));
}

const MESSAGES: Record<string, string> = {
  UNAUTHENTICATED: 'Your sign-in has ended. Sign in again.',
  INVALID_CREDENTIALS: 'Wrong username or password.',
  TOKEN_EXPIRED: 'Your sign-in has expired. Sign in again.',
  TOKEN_REVOKED: 'Your sign-in was revoked. Sign in again.',
  PASSWORD_CHANGE_REQUIRED: 'Choose a new password first: yours was set by someone else.',
  FORBIDDEN: 'You are not allowed to do that (the detail says why).',
  RATE_LIMITED: 'Too many attempts. Wait a minute and try again.',
  SESSION_LIMIT: 'You have reached your limit of live sessions. Destroy one (or stop it) first.',
  INVALID_STATE: 'The session is not in a state that allows this (is it running?).',
  HUMAN_HAS_CONTROL: 'A person holds control of this session; changes by agents and API tokens are refused.',
  EGRESS_DENIED:
    "The session's network settings do not allow that. Add the host to its allowlist (Network, in the session header).",
  HOST_INVALID:
    'An allowlist entry is not valid: use a host (example.com), a wildcard (*.example.com), host:port or an IP block (203.0.113.0/24).',
  SECRET_INVALID:
    'The secret is not valid: a name like OPENAI_API_KEY, a value without line breaks, named hosts (api.example.com, *.example.com) and a header holding {{value}} once.',
  TEMPLATE_NOT_FOUND: 'There is no template by that name that you can use.',
  TEMPLATE_NOT_READY: 'That template is not built yet (or its last build failed).',
  TEMPLATE_START_FAILED: "The template's start command or ready check failed.",
  TEMPLATE_INVALID: 'The template is not valid: see the message for what to change.',
  BACKEND_UNAVAILABLE: 'The sandbox backend is unavailable. Retry, or start the session again.',
  RESTORE_FAILED:
    'The paused session could not be restored: it is stopped now, with its files intact. Start it again from the dashboard (its programs start afresh).',
  UNSUPPORTED:
    "This session's sandbox backend cannot do that: pausing, forks and snapshots need one that saves sandboxes.",
  FILE_TOO_LARGE: 'The file is too large to open in the editor.',
  FILE_NOT_TEXT: 'This file is not UTF-8 text; download it instead.',
  INPUT_TOO_LARGE: 'That is too large for the server to accept.',
  INPUT_INVALID: 'That is not valid: the detail says what to change.',
  PATH_TRAVERSAL: "Use a path inside the workspace, without '..'.",
  PATH_ABSOLUTE: 'Use a path relative to the workspace root (src/app.js, not /workspace/src/app.js).',
  LIMIT_EXCEEDED: 'That is more than this server allows: the detail names the limit.',
  ALREADY_EXISTS: 'Something with that name already exists.',
  NOT_FOUND: 'Not found (it may have been removed).',
  PORT_BLOCKED: 'That port is not allowed for previews.',
  PORT_OUT_OF_RANGE: 'Preview ports must be between 3000 and 9999.',
  ORIGIN_REFUSED: 'The API refused this origin: set STUDIO_ORIGINS to the IDE origin.',
  API_UNREACHABLE: 'The Studio API is not reachable. Is it running?',
  NETWORK: 'Network error: the server could not be reached.',
};

// A tRPC procedure name (`sessions.start`, `auth.login`): words for developers, never shown to people.
const PROCEDURE =
  /\b(?:auth|users|tokens|sessions|files|exec|terminal|events|previews|secrets|snapshots|templates|backends|system)\.[a-z][A-Za-z]*\b/;

/**
 * The part of the server's message that people can read: up to the first clause that names a procedure (the
 * API's messages are written for API clients: "session s is stopped: start it with sessions.start" keeps
 * "session s is stopped"). Null when nothing is left.
 */
export function readableNote(serverMessage: string): string | null {
  const parts = serverMessage.split(/(?<=[;:]) /);
  const kept: string[] = [];
  for (const part of parts) {
    if (PROCEDURE.test(part)) break;
    kept.push(part);
  }
  const note = kept
    .join(' ')
    .replace(/[;:,\s]+$/, '')
    .trim();
  return note === '' ? null : note;
}

/** A failure for people: what happened and what to do, the server's readable words, and the stable code. */
export interface HumanError {
  /** Chosen by the code: what happened and the fix. */
  message: string;
  /** The server's message without procedure names (the host refused, the limit hit), or null. */
  note: string | null;
  /** The API's stable code (`INVALID_STATE`), shown muted as "Code: …"; null for a problem found in the page. */
  code: string | null;
}

/** Any failure as a {@link HumanError}: never a stack trace, a procedure name or a raw `(CODE: …)`. */
export function humanError(error: unknown): HumanError {
  const code = studioCode(error);
  const raw = toStudioClientError(error).message;
  // NETWORK is the page's own word for "no answer": the raw error (fetch failed) says nothing more.
  if (code === 'NETWORK') return { message: MESSAGES.NETWORK ?? 'Network error.', note: null, code: null };
  const note = readableNote(raw);
  const known = MESSAGES[code];
  if (known) return { message: known, note, code };
  return { message: note ?? 'The request failed.', note: null, code };
}

/**
 * A failure in two parts, for a display with a detail line: `message` for people (chosen by the API's stable
 * code), `detail` the server's readable words and the code (`example.com is not on … · Code: EGRESS_DENIED`).
 */
export function errorParts(error: unknown): { message: string; detail: string | null } {
  const { message, note, code } = humanError(error);
  const codeLine = code === null ? null : `Code: ${code}`;
  return { message, detail: note && codeLine ? `${note} · ${codeLine}` : (note ?? codeLine) };
}

/** A one-line message for any failure: the human message, the server's readable words, then "Code: …". */
export function errorMessage(error: unknown): string {
  const { message, note, code } = humanError(error);
  return [message, note === null ? null : `${note}.`, code === null ? null : `Code: ${code}`]
    .filter((p) => p !== null)
    .join(' ');
}
