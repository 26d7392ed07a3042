import { request } from 'node:http';
import type { LookupFunction } from 'node:net';
import { Readable } from 'node:stream';
import type { StudioClient } from '@studio/client';
import { McpToolError } from './errors.ts';

/** Options of {@link PreviewFetcher}. */
export interface PreviewFetcherOptions {
  client: StudioClient;
  fetch?: typeof globalThis.fetch;
  /** Per-request timeout in ms; default 30 s. */
  timeoutMs?: number;
}

interface Grant {
  origin: string;
  cookie: string;
  expiresAt: number;
}

/** The answer of one preview request. */
export interface PreviewResponse extends Record<string, unknown> {
  status: number;
  headers: Record<string, string>;
  body: string;
  bodyBytes: number;
  truncated: boolean;
}

/** The grant cookie of the preview proxy (host-only, on the preview's own host). */
const PREVIEW_COOKIE = '__Host-studio_preview';

// `*.localhost` is loopback by definition (RFC 6761) and browsers resolve it so; Node's resolver does not. Local
// previews live on `<port>-<label>.localhost:<port>`, so those names are sent to 127.0.0.1 with their Host.
const loopback: LookupFunction = (_host, options, callback) => {
  if (options.all) {
    (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [
      { address: '127.0.0.1', family: 4 },
    ]);
  } else callback(null, '127.0.0.1', 4);
};

/** `fetch`, except that `*.localhost` names reach 127.0.0.1 (GET only, never following redirects). */
export const previewFetch: typeof globalThis.fetch = (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const name = url.hostname;
  if (name !== 'localhost' && !name.endsWith('.localhost')) return globalThis.fetch(input, init);
  return new Promise<Response>((resolve, reject) => {
    const headers = Object.fromEntries(new Headers(init?.headers).entries());
    const req = request(url, { method: 'GET', headers, lookup: loopback, signal: init?.signal ?? undefined });
    req.on('response', (res) => {
      const out = new Headers();
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        out.append(res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string);
      }
      const status = res.statusCode ?? 0;
      const body =
        status === 204 || status === 304 ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
      resolve(new Response(body, { status, headers: out }));
    });
    req.on('error', reject);
    req.end();
  });
};
// Grants are valid 1 h; renew a minute early.
const RENEW_BEFORE_MS = 60_000;

/**
 * GETs paths on a session's port through the API's preview proxy: `previews.create` gives a one-hour grant
 * link, opening it (redirects not followed) yields the `studio_preview` cookie, then each request carries
 * that cookie. Grants are cached per session and port.
 */
export class PreviewFetcher {
  readonly #client: StudioClient;
  readonly #fetch: typeof globalThis.fetch;
  readonly #timeoutMs: number;
  readonly #grants = new Map<string, Grant>();

  constructor(options: PreviewFetcherOptions) {
    this.#client = options.client;
    this.#fetch = options.fetch ?? previewFetch;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  async fetch(
    input: { sessionId: string; port: number; path: string; maxBytes: number },
    signal: AbortSignal,
  ): Promise<PreviewResponse> {
    const key = `${input.sessionId}:${input.port}`;
    for (let attempt = 0; ; attempt++) {
      const grant = await this.#grant(key, input, signal);
      const res = await this.#request(`${grant.origin}${input.path}`, { cookie: grant.cookie }, signal);
      // 401: the proxy no longer knows the grant (e.g. the API restarted); get a new one once.
      if (res.status === 401 && attempt === 0) {
        this.#grants.delete(key);
        await res.body?.cancel();
        continue;
      }
      return readCapped(res, input.maxBytes);
    }
  }

  async #grant(key: string, input: { sessionId: string; port: number }, signal: AbortSignal): Promise<Grant> {
    const cached = this.#grants.get(key);
    if (cached && cached.expiresAt - RENEW_BEFORE_MS > Date.now()) return cached;
    const link = await this.#client.previews.create.mutate({ sessionId: input.sessionId, port: input.port });
    const res = await this.#request(link.url, {}, signal);
    await res.body?.cancel();
    const cookie = res.headers
      .getSetCookie()
      .map((c) => c.split(';')[0] ?? '')
      .find((c) => c.startsWith(`${PREVIEW_COOKIE}=`));
    if (!cookie) {
      throw new McpToolError(
        'PREVIEW_UNAVAILABLE',
        `the preview proxy did not accept the grant (HTTP ${res.status})`,
        'retry once; if it fails again the API’s preview proxy is misconfigured',
      );
    }
    const grant = { origin: new URL(link.url).origin, cookie, expiresAt: Date.parse(link.expiresAt) };
    this.#grants.set(key, grant);
    return grant;
  }

  async #request(url: string, headers: Record<string, string>, signal: AbortSignal): Promise<Response> {
    try {
      return await this.#fetch(url, {
        redirect: 'manual',
        headers,
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.#timeoutMs)]),
      });
    } catch (error) {
      if (signal.aborted) throw new McpToolError('CANCELLED', 'the call was cancelled', 'run it again');
      const timedOut = error instanceof Error && error.name === 'TimeoutError';
      throw new McpToolError(
        timedOut ? 'TIMEOUT' : 'NETWORK',
        timedOut
          ? `the preview proxy did not answer within ${this.#timeoutMs} ms`
          : 'the preview proxy was not reached',
        timedOut
          ? 'check that the server in the sandbox answers quickly'
          : 'check that the Studio API runs with STUDIO_PREVIEW_PORT set',
      );
    }
  }
}

/** Reads at most `maxBytes` of a response body (the rest is cancelled) and decodes it as UTF-8 (lossy). */
export async function readCapped(res: Response, maxBytes: number): Promise<PreviewResponse> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  const reader = res.body?.getReader();
  if (reader) {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const room = maxBytes - size;
      if (value.byteLength > room) {
        chunks.push(value.subarray(0, room));
        size += room;
        truncated = true;
        await reader.cancel();
        break;
      }
      chunks.push(value);
      size += value.byteLength;
    }
  }
  const headers: Record<string, string> = {};
  res.headers.forEach((value, name) => {
    if (name !== 'set-cookie') headers[name] = value;
  });
  return {
    status: res.status,
    headers,
    body: new TextDecoder('utf-8').decode(Buffer.concat(chunks)),
    bodyBytes: size,
    truncated,
  };
}
