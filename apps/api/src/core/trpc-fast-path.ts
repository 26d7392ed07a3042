import type { IncomingMessage, ServerResponse } from 'node:http';
import { type AnyRouter, TRPCError } from '@trpc/server';
import {
  getErrorShape,
  getHTTPStatusCodeFromError,
  getTRPCErrorFromUnknown,
  transformTRPCResponse,
} from '@trpc/server/unstable-core-do-not-import';

/** Options for {@link createFastPath}. */
export interface FastPathOptions<TContext> {
  router: AnyRouter;
  /** The same context factory the standard handler uses. */
  createContext(opts: { req: IncomingMessage; res: ServerResponse }): TContext | Promise<TContext>;
  /** The URL prefix of procedures, with its trailing slash (`/trpc/`). */
  basePath: string;
  /** Bodies larger than this are left to the standard handler, which refuses them. */
  maxBodySize: number;
  /** Headers for an error answer, as the standard handler's `responseMeta` gives them (e.g. `Retry-After`). */
  responseMeta?: (opts: { errors: TRPCError[] }) => { headers?: Record<string, string> };
}

/**
 * Serves a single (unbatched) query over GET or mutation over POST straight from node:http, or returns false and
 * leaves the request untouched for tRPC's standard handler (batches, subscriptions, streaming, method mismatches,
 * bodies that are not plain JSON with a known length).
 *
 * Why: the standard adapter turns every request into a WHATWG Request with an AbortSignal, reads it through a web
 * stream and answers through a Response; for a small call that is most of the API's own cost (issue 15, item 4).
 * The procedure itself runs exactly as tRPC runs it (the same procedure call with its middlewares, input parser,
 * context and abort signal), and errors get the same shape from the same `errorFormatter`, status and transform.
 */
export function createFastPath<TContext>(
  options: FastPathOptions<TContext>,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { router, basePath, maxBodySize } = options;
  const config = router._def._config;
  // Procedures by path, read once from the router's flat record (this app has no lazy routers; a path not found
  // here goes to the standard handler, which would load one).
  const procedures = new Map<string, { type: string; call: (opts: unknown) => Promise<unknown> } | null>();
  for (const [path, proc] of Object.entries(router._def.procedures as Record<string, unknown>)) {
    const def = (proc as { _def?: { type?: string } })._def;
    if (typeof proc === 'function' && def?.type) {
      procedures.set(path, { type: def.type, call: proc as (opts: unknown) => Promise<unknown> });
    }
  }
  if (procedures.size === 0) throw new Error('fast path: the router has no procedures');

  return (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const pathname = q === -1 ? url : url.slice(0, q);
    if (!pathname.startsWith(basePath)) return false;
    let path: string;
    try {
      path = decodeURIComponent(pathname.slice(basePath.length));
    } catch {
      return false;
    }
    const proc = procedures.get(path);
    if (!proc) return false;
    const search = q === -1 ? '' : url.slice(q + 1);
    if (search.includes('batch=')) return false;
    // Streaming and SSE answers are the standard handler's.
    const accept = req.headers['trpc-accept'] ?? req.headers.accept;
    if (typeof accept === 'string' && (accept.includes('jsonl') || accept.includes('event-stream')))
      return false;

    if (req.method === 'GET' && proc.type === 'query') {
      const raw = new URLSearchParams(search).get('input');
      let input: unknown;
      try {
        input = raw === null ? undefined : config.transformer.input.deserialize(JSON.parse(raw));
      } catch (cause) {
        respondError(res, new TRPCError({ code: 'BAD_REQUEST', cause }), path, 'query', undefined, null);
        return true;
      }
      void run(req, res, path, proc, input);
      return true;
    }
    if (req.method === 'POST' && proc.type === 'mutation') {
      const type = req.headers['content-type'];
      const length = Number(req.headers['content-length']);
      if (
        type === undefined ||
        !type.startsWith('application/json') ||
        req.headers['transfer-encoding'] !== undefined ||
        !Number.isSafeInteger(length) ||
        length > maxBodySize
      ) {
        return false;
      }
      readBody(req, length).then(
        (text) => {
          let input: unknown;
          try {
            input = text.length === 0 ? undefined : config.transformer.input.deserialize(JSON.parse(text));
          } catch (cause) {
            respondError(
              res,
              new TRPCError({ code: 'BAD_REQUEST', cause }),
              path,
              'mutation',
              undefined,
              null,
            );
            return;
          }
          void run(req, res, path, proc, input);
        },
        () => res.destroy(),
      );
      return true;
    }
    return false;
  };

  async function run(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    proc: { type: string; call: (opts: unknown) => Promise<unknown> },
    input: unknown,
  ): Promise<void> {
    // The call's signal aborts when the client goes away before the answer, as the standard adapter's does.
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort();
    };
    res.once('close', onClose);
    let ctx: TContext | undefined;
    try {
      ctx = await options.createContext({ req, res });
      const data = await proc.call({
        path,
        getRawInput: () => Promise.resolve(input),
        ctx,
        type: proc.type,
        signal: abort.signal,
        batchIndex: 0,
      });
      respond(res, 200, transformTRPCResponse(config, { result: { data } }));
    } catch (cause) {
      respondError(res, getTRPCErrorFromUnknown(cause), path, proc.type, input, ctx ?? null);
    } finally {
      res.off('close', onClose);
    }
  }

  function respondError(
    res: ServerResponse,
    error: TRPCError,
    path: string,
    type: string,
    input: unknown,
    ctx: TContext | null,
  ): void {
    const shape = getErrorShape({
      config,
      ctx: ctx ?? undefined,
      error,
      input,
      path,
      type: type as 'query' | 'mutation',
    });
    const headers = options.responseMeta?.({ errors: [error] }).headers ?? {};
    for (const [name, value] of Object.entries(headers)) if (!res.headersSent) res.setHeader(name, value);
    respond(res, getHTTPStatusCodeFromError(error), transformTRPCResponse(config, { error: shape }));
  }
}

function respond(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('vary', 'trpc-accept, accept');
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', Buffer.byteLength(text));
  res.end(text);
}

/** Reads exactly the declared length (already checked against the cap); more or less is a broken request. */
function readBody(req: IncomingMessage, length: number): Promise<string> {
  // Already read by the cluster's forwarder or node guard (issue 23), as tRPC's own handler accepts it.
  const read = (req as IncomingMessage & { body?: unknown }).body;
  if (typeof read === 'string') return Promise.resolve(read);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > length) {
        req.destroy();
        reject(new Error('body longer than its content-length'));
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks, size).toString('utf8')));
    req.once('error', reject);
    req.once('aborted', () => reject(new Error('aborted')));
  });
}
