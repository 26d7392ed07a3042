import type { IncomingMessage, ServerResponse } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { isIsolationError } from '@studio/isolation';
import { AppError } from '../../core/errors.ts';
import { actorOf } from '../../realtime/event-bus.ts';
import { assertMayMutate } from '../../sessions/control.ts';
import { checkFileSignature, tokenMatches } from './envd-auth.ts';
import type { EnvdDeps } from './envd-context.ts';
import { EnvdError, toEnvdFailure } from './envd-errors.ts';
import type { EnvdTarget } from './envd-handler.ts';
import { checkUser, toClientPath, toWorkspacePath } from './envd-paths.ts';

/** Bytes a multipart body may carry beyond its files (boundaries and part headers). */
const MULTIPART_OVERHEAD_BYTES = 1024 * 1024;

/** Writes a JSON error as envd does: `{ code, message }` with that HTTP status. */
export function sendError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ code: status, message });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Reads a request body of at most `max` bytes; PAYLOAD_TOO_LARGE past it (the rest is not read). */
async function readBody(req: IncomingMessage, max: number, what: string): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) throw tooLarge(what, max);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.byteLength;
    if (total > max) throw tooLarge(what, max);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

const tooLarge = (what: string, max: number) =>
  new EnvdError(
    'PAYLOAD_TOO_LARGE',
    `${what} is larger than ${max} bytes, the most this server accepts in one upload`,
  );

/**
 * Authenticates a `/files` request: the access token header, or a signed URL for this operation (the SDK's
 * `uploadUrl` / `downloadUrl`, for clients that hold no token).
 */
function authenticate(
  req: IncomingMessage,
  query: URLSearchParams,
  operation: 'read' | 'write',
  target: EnvdTarget,
) {
  const header = req.headers['x-access-token'];
  if (typeof header === 'string' && header !== '') {
    if (!tokenMatches(header, target.accessToken)) {
      throw new EnvdError('UNAUTHENTICATED', 'the access token is not valid for this sandbox');
    }
    return;
  }
  if (query.has('signature')) {
    checkFileSignature(query, operation, target.accessToken, Date.now());
    return;
  }
  throw new EnvdError('UNAUTHENTICATED', 'send the X-Access-Token header or a signed URL (signature=…)');
}

/** `GET /files` (download) and `POST /files` (upload), as envd serves them. */
export async function serveFiles(
  deps: EnvdDeps,
  req: IncomingMessage,
  res: ServerResponse,
  target: EnvdTarget,
): Promise<void> {
  try {
    const query = new URL(req.url ?? '/', 'http://envd').searchParams;
    if (req.method === 'GET' || req.method === 'HEAD') {
      authenticate(req, query, 'read', target);
      checkUser(query.get('username') ?? undefined);
      await download(deps, req, res, target, query);
    } else if (req.method === 'POST') {
      authenticate(req, query, 'write', target);
      checkUser(query.get('username') ?? undefined);
      await upload(deps, req, res, target, query);
    } else {
      res.setHeader('allow', 'GET, POST');
      sendError(res, 405, '/files takes GET (download) and POST (upload)');
    }
  } catch (error) {
    const failure = toEnvdFailure(error);
    if (failure.hidden) deps.logger.warn('envd /files failed', { sessionId: target.sessionId, error });
    // Drain what the client still sends, so it reads the answer instead of a reset.
    req.resume();
    sendError(res, failure.status, failure.message);
  }
}

async function download(
  deps: EnvdDeps,
  req: IncomingMessage,
  res: ServerResponse,
  target: EnvdTarget,
  query: URLSearchParams,
): Promise<void> {
  const requested = query.get('path');
  if (!requested) throw new EnvdError('INVALID_ARGUMENT', 'path is required');
  const relative = toWorkspacePath(requested);
  const max = deps.policy.files.maxFileBytes;
  const bytes = await deps.sessions.withSandbox(
    target.principal.userId,
    target.sessionId,
    auditOf(target),
    async (s) => {
      const stat = await s.stat(relative);
      if (stat.type === 'directory') {
        throw new EnvdError('INVALID_ARGUMENT', `${toClientPath(relative)} is a directory, not a file`);
      }
      try {
        return await s.readFile(relative, { maxBytes: max });
      } catch (error) {
        if (isIsolationError(error, 'RESOURCE_LIMIT')) {
          throw new AppError(
            'FILE_TOO_LARGE',
            `${toClientPath(relative)} is larger than ${max} bytes; read it with a command`,
            {
              cause: error,
            },
          );
        }
        throw error;
      }
    },
  );
  const name = relative.split('/').pop() ?? 'file';
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': bytes.byteLength,
    'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(name)}`,
  });
  res.end(req.method === 'HEAD' ? undefined : bytes);
}

async function upload(
  deps: EnvdDeps,
  req: IncomingMessage,
  res: ServerResponse,
  target: EnvdTarget,
  query: URLSearchParams,
): Promise<void> {
  // Studio keeps no per-file metadata (envd 0.6.2's xattrs): refusing beats dropping it silently.
  if (Object.keys(req.headers).some((h) => h.startsWith('x-metadata-'))) {
    throw new EnvdError(
      'INVALID_ARGUMENT',
      'file metadata is not supported by Studio sandboxes; write without metadata',
    );
  }
  await assertMayMutate(deps.store, target.principal, target.sessionId);
  const max = deps.policy.files.maxFileBytes;
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  const files: { requested: string; data: Uint8Array }[] = [];
  if (type.startsWith('multipart/form-data')) {
    const body = await readBody(req, max + MULTIPART_OVERHEAD_BYTES, 'the upload');
    // Node's own (undici) multipart parser, on the bounded body.
    let form: FormData;
    try {
      form = await new Request('http://envd/files', {
        method: 'POST',
        headers: { 'content-type': req.headers['content-type'] ?? '' },
        body: Uint8Array.from(body),
      }).formData();
    } catch (error) {
      throw new EnvdError('INVALID_ARGUMENT', 'the multipart body is malformed', error);
    }
    const parts = form.getAll('file');
    const path = query.get('path');
    if (path && parts.length > 1) {
      throw new EnvdError(
        'INVALID_ARGUMENT',
        'with ?path= send one file; name several files by their part filenames',
      );
    }
    for (const part of parts) {
      if (typeof part === 'string') throw new EnvdError('INVALID_ARGUMENT', 'a "file" part must be a file');
      if (part.size > max) throw tooLarge(part.name || 'a file', max);
      const requested = path || part.name;
      if (!requested) throw new EnvdError('INVALID_ARGUMENT', 'name the file: ?path= or the part filename');
      files.push({ requested, data: new Uint8Array(await part.arrayBuffer()) });
    }
    if (files.length === 0) throw new EnvdError('INVALID_ARGUMENT', 'the upload has no "file" part');
  } else if (type === '' || type.startsWith('application/octet-stream')) {
    const path = query.get('path');
    if (!path)
      throw new EnvdError('INVALID_ARGUMENT', 'path is required for an application/octet-stream upload');
    const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
    let data: Uint8Array = await readBody(req, max, path);
    if (encoding === 'gzip') {
      try {
        data = gunzipSync(data, { maxOutputLength: max });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(path, max);
        throw new EnvdError('INVALID_ARGUMENT', 'the gzip body is malformed', error);
      }
    } else if (encoding !== 'identity') {
      throw new EnvdError(
        'INVALID_ARGUMENT',
        `Content-Encoding ${encoding} is not supported; send gzip or none`,
      );
    }
    files.push({ requested: path, data });
  } else {
    throw new EnvdError('INVALID_ARGUMENT', 'upload as multipart/form-data or application/octet-stream');
  }
  const written = files.map((f) => ({ ...f, relative: toWorkspacePath(f.requested) }));
  for (const f of written) {
    if (f.relative === '')
      throw new EnvdError('INVALID_ARGUMENT', 'cannot write to the workspace directory itself');
  }
  const actor = actorOf(target.principal);
  await deps.sessions.withSandbox(target.principal.userId, target.sessionId, auditOf(target), async (s) => {
    for (const f of written) {
      deps.fileWatches.noteOwnChange(target.sessionId, f.relative);
      await s.writeFile(f.relative, f.data, { createParents: true });
      deps.events.publish(target.sessionId, actor, { type: 'file.changed', op: 'write', path: f.relative });
    }
  });
  const body = JSON.stringify(
    written.map((f) => ({ name: f.relative.split('/').pop(), type: 'file', path: toClientPath(f.relative) })),
  );
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** The audit facts of an envd call. */
export function auditOf(target: EnvdTarget) {
  return { actorId: target.principal.userId, ip: target.ip, requestId: target.requestId };
}
