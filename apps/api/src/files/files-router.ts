import { isIsolationError } from '@studio/isolation';
import {
  filesListInput,
  filesMkdirInput,
  filesReadInput,
  filesRemoveInput,
  filesRenameInput,
  type PolicySchemas,
  sessionByIdInput,
} from '@studio/policy';
import { filesSearchInput } from '@studio/policy/schemas';
import type { Context } from '../core/context.ts';
import { auditOf } from '../core/context.ts';
import { AppError } from '../core/errors.ts';
import { authedProcedure, principalOf, router, sessionMutationProcedure } from '../core/trpc.ts';
import { actorOf, type SessionEventBody } from '../realtime/event-bus.ts';
import { listWorkspaceFiles, searchWorkspace } from './search.ts';

function changed(
  ctx: Context,
  sessionId: string,
  body: Omit<Extract<SessionEventBody, { type: 'file.changed' }>, 'type'>,
) {
  ctx.deps.events.publish(sessionId, actorOf(principalOf(ctx)), { type: 'file.changed', ...body });
}

// Every path below is the canonical output of the policy's workspace-path schemas, and every operation runs
// inside the sandbox as its user through the backend's agent, which resolves each component without following
// links out of /workspace (SECURITY.md §2; the host never opens a workspace path).

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** What a write into a folder that does not exist says: the folder, and the argument that makes it. */
export function missingFolderMessage(path: string): string {
  const folder = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '.';
  return `cannot write ${path}: the folder ${folder} does not exist; pass createParents: true to make it`;
}

/** File procedures; `schemas` are the policy's, bound to the running limits. */
export const filesRouter = (schemas: PolicySchemas) =>
  router({
    /** A directory's entries (at most the policy's `files.maxListEntries`); `path` defaults to the root. */
    list: authedProcedure.input(filesListInput).query(({ ctx, input }) =>
      ctx.deps.sessions.withSandbox(ctx.principal.userId, input.sessionId, auditOf(ctx), async (sandbox) => {
        const entries = await sandbox.list(input.path, { maxEntries: ctx.deps.policy.files.maxListEntries });
        return entries.map((e) => ({
          name: e.name,
          path: input.path === '' ? e.name : `${input.path}/${e.name}`,
          type: e.type,
          size: e.size,
          mtimeMs: e.mtimeMs,
        }));
      }),
    ),

    /** A file's content as UTF-8 text (FILE_NOT_TEXT if it is not) or base64, up to `files.maxFileBytes`. */
    read: authedProcedure.input(filesReadInput).query(({ ctx, input }) =>
      ctx.deps.sessions.withSandbox(ctx.principal.userId, input.sessionId, auditOf(ctx), async (sandbox) => {
        const max = ctx.deps.policy.files.maxFileBytes;
        let bytes: Uint8Array;
        try {
          bytes = await sandbox.readFile(input.path, { maxBytes: max });
        } catch (error) {
          if (isIsolationError(error, 'RESOURCE_LIMIT')) {
            throw new AppError(
              'FILE_TOO_LARGE',
              `${input.path} is larger than ${max} bytes; read it with exec`,
              {
                cause: error,
              },
            );
          }
          throw error;
        }
        let content: string;
        if (input.encoding === 'base64') {
          content = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
        } else {
          try {
            content = utf8.decode(bytes);
          } catch {
            throw new AppError(
              'FILE_NOT_TEXT',
              `${input.path} is not UTF-8 text; read it with encoding "base64"`,
            );
          }
        }
        return { path: input.path, encoding: input.encoding, content, size: bytes.byteLength };
      }),
    ),

    /**
     * Text in the workspace's files (ripgrep inside the sandbox, as its user): matches grouped by file, at most
     * MAX_SEARCH_MATCHES, lines cut to MAX_SEARCH_LINE characters, within SEARCH_TIMEOUT_MS. Literal unless `regex`.
     * A read, but a POST: it runs a program in the sandbox, and no GET may start anything (regression test
     * no-state-changing-get). Allowed while a person holds control, as reads are.
     */
    search: authedProcedure
      .input(filesSearchInput)
      .mutation(({ ctx, input }) =>
        ctx.deps.sessions.withSandbox(ctx.principal.userId, input.sessionId, auditOf(ctx), (sandbox) =>
          searchWorkspace(sandbox, input),
        ),
      ),

    /**
     * Every file's workspace path (at most MAX_PATHS, .git and .gitignore'd files left out), sorted. A POST for
     * the same reason as `search`.
     */
    paths: authedProcedure
      .input(sessionByIdInput)
      .mutation(({ ctx, input }) =>
        ctx.deps.sessions.withSandbox(
          ctx.principal.userId,
          input.sessionId,
          auditOf(ctx),
          listWorkspaceFiles,
        ),
      ),

    /** Writes a file atomically (text, or binary as base64), up to `files.maxFileBytes`. */
    write: sessionMutationProcedure.input(schemas.filesWriteInput).mutation(({ ctx, input }) => {
      const bytes =
        input.encoding === 'base64'
          ? Buffer.from(input.content, 'base64')
          : Buffer.from(input.content, 'utf8');
      return ctx.deps.sessions.withSandbox(
        ctx.principal.userId,
        input.sessionId,
        auditOf(ctx),
        async (sandbox) => {
          ctx.deps.fileWatches.noteOwnChange(input.sessionId, input.path);
          try {
            await sandbox.writeFile(input.path, bytes, { createParents: input.createParents === true });
          } catch (error) {
            // The agent's NOT_FOUND names the low-level failure; a caller needs the fix: the folder is missing.
            if (input.createParents !== true && isIsolationError(error, 'NOT_FOUND'))
              throw new AppError('NOT_FOUND', missingFolderMessage(input.path), { cause: error });
            throw error;
          }
          changed(ctx, input.sessionId, { op: 'write', path: input.path });
          return { path: input.path, size: bytes.byteLength };
        },
      );
    }),

    mkdir: sessionMutationProcedure.input(filesMkdirInput).mutation(({ ctx, input }) =>
      ctx.deps.sessions.withSandbox(ctx.principal.userId, input.sessionId, auditOf(ctx), async (sandbox) => {
        ctx.deps.fileWatches.noteOwnChange(input.sessionId, input.path);
        await sandbox.mkdir(input.path, { recursive: input.createParents === true });
        changed(ctx, input.sessionId, { op: 'mkdir', path: input.path });
        return { path: input.path };
      }),
    ),

    /** Removes a file, a link (never its target) or, with `recursive`, a directory tree. Never the root. */
    remove: sessionMutationProcedure.input(filesRemoveInput).mutation(({ ctx, input }) =>
      ctx.deps.sessions.withSandbox(ctx.principal.userId, input.sessionId, auditOf(ctx), async (sandbox) => {
        ctx.deps.fileWatches.noteOwnChange(input.sessionId, input.path);
        await sandbox.remove(input.path, { recursive: input.recursive === true });
        changed(ctx, input.sessionId, { op: 'remove', path: input.path });
        return { path: input.path };
      }),
    ),

    /** Renames within the workspace; ALREADY_EXISTS when `to` exists (never overwrites). */
    rename: sessionMutationProcedure.input(filesRenameInput).mutation(({ ctx, input }) =>
      ctx.deps.sessions.withSandbox(ctx.principal.userId, input.sessionId, auditOf(ctx), async (sandbox) => {
        ctx.deps.fileWatches.noteOwnChange(input.sessionId, input.from, input.to);
        await sandbox.rename(input.from, input.to);
        changed(ctx, input.sessionId, { op: 'rename', path: input.from, to: input.to });
        return { from: input.from, to: input.to };
      }),
    ),
  });
