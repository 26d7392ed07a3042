import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { DEFAULT_NODE_AUTH_MAX_SKEW_MS, NODE_AUTH_HEADER, verifyNodeRequest } from '@studio/policy';

/** The caller an API replica forwards for, as the replica saw it (the node has only the replica's address). */
export interface ForwardedClient {
  ip: string;
  https: boolean;
}

/** Carries the {@link ForwardedClient}; covered by the replica's signature. */
export const FORWARDED_CLIENT_HEADER = 'x-studio-forwarded-client';

/** The header value of a {@link ForwardedClient}. */
export function encodeForwardedClient(client: ForwardedClient): string {
  return JSON.stringify({ ip: client.ip, https: client.https });
}

function decodeForwardedClient(value: string): ForwardedClient | null {
  try {
    const parsed = JSON.parse(value) as { ip?: unknown; https?: unknown };
    if (typeof parsed.ip !== 'string' || parsed.ip.length > 64 || typeof parsed.https !== 'boolean')
      return null;
    return { ip: parsed.ip, https: parsed.https };
  } catch {
    return null;
  }
}

/** What {@link NodeGuard.check} decided. */
export type NodeGuardResult =
  | { ok: true; client: ForwardedClient }
  | { ok: false; status: 400 | 403 | 413; message: string };

// Nonces are kept for twice the skew window: a header older than that is refused as expired anyway.
const NONCE_TTL_MS = 2 * DEFAULT_NODE_AUTH_MAX_SKEW_MS;
const MAX_NONCES = 200_000;

/**
 * The node service's door (issue 23): it serves API replicas only. Every request must carry a replica's
 * signature over its method, path, body and forwarded client (verifyNodeRequest), made within 30 s and never seen
 * before (a nonce cache), so a container on the cluster's network that reaches the node's port can do nothing
 * with it, and a captured request cannot be replayed. The caller's own credentials are then checked as usual.
 */
export class NodeGuard {
  readonly #secret: Uint8Array;
  readonly #maxBodyBytes: number;
  readonly #seen = new Map<string, number>();

  constructor(options: { secret: Uint8Array; maxBodyBytes: number }) {
    this.#secret = options.secret;
    this.#maxBodyBytes = options.maxBodyBytes;
  }

  /**
   * Checks a request; reads its body first (bounded) when it has one, left on `req.body` for tRPC. The client
   * the replica forwarded for is returned: the node's rate limits and audit records name that address.
   */
  async check(req: IncomingMessage, options: { streamedBody?: boolean } = {}): Promise<NodeGuardResult> {
    const header = req.headers[NODE_AUTH_HEADER];
    const principal = req.headers[FORWARDED_CLIENT_HEADER];
    if (typeof header !== 'string' || typeof principal !== 'string') {
      return {
        ok: false,
        status: 403,
        message: 'this is a Studio node service: it serves only the API replicas; call the API instead',
      };
    }
    let body: Buffer | null = null;
    // Previews stream bodies of any size to the sandbox: their signature covers everything but the body (the
    // replica signs the empty body's hash), so the node does not read it first.
    if (req.method !== 'GET' && req.method !== 'HEAD' && options.streamedBody !== true) {
      body = await readBody(req, this.#maxBodyBytes);
      if (body === null) return { ok: false, status: 413, message: 'request body too large' };
      (req as IncomingMessage & { body?: string }).body = body.toString('utf8');
    }
    const now = Date.now();
    const verdict = verifyNodeRequest(
      this.#secret,
      header,
      {
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        bodySha256: createHash('sha256')
          .update(body ?? Buffer.alloc(0))
          .digest('hex'),
        principal,
      },
      { now },
    );
    if (!verdict.ok) {
      return { ok: false, status: 403, message: `refused: the replica's signature is ${verdict.reason}` };
    }
    this.#prune(now);
    if (this.#seen.has(verdict.nonce))
      return { ok: false, status: 403, message: 'refused: a replayed request' };
    this.#seen.set(verdict.nonce, now + NONCE_TTL_MS);
    const client = decodeForwardedClient(principal);
    if (client === null) return { ok: false, status: 400, message: 'malformed forwarded client' };
    return { ok: true, client };
  }

  #prune(now: number): void {
    // Map order is insertion order, and every entry lives equally long: expired ones are at the front.
    for (const [nonce, until] of this.#seen) {
      if (until > now && this.#seen.size < MAX_NONCES) break;
      this.#seen.delete(nonce);
    }
  }
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > limit) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
