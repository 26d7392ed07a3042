import type { PolicySchemas } from '@studio/policy';
import { auditOf } from '../context.ts';
import { authedProcedure, passThrough, router } from '../trpc.ts';

const text = new TextDecoder('utf-8');

export const execRouter = router({
  /**
   * Runs argv (no shell) in the session and returns when it ends: exit code, output (UTF-8, lossy), duration,
   * and whether it timed out or its output was cut. Timeout and output cap come from the policy.
   */
  run: authedProcedure.input(passThrough<PolicySchemas['execRunInput']>).mutation(({ ctx, input: raw }) => {
    const input = ctx.deps.schemas.execRunInput.parse(raw);
    const limits = ctx.deps.policy.exec;
    return ctx.deps.sessions.withSandbox(
      ctx.principal.userId,
      input.sessionId,
      auditOf(ctx),
      async (sandbox) => {
        const result = await sandbox.exec(input.command, {
          ...(input.cwd ? { cwd: input.cwd } : {}),
          ...(input.env ? { env: input.env } : {}),
          ...(input.stdin !== undefined ? { stdin: input.stdin } : {}),
          timeoutMs: input.timeoutMs ?? limits.defaultTimeoutMs,
          maxOutputBytes: limits.maxOutputBytes,
        });
        return {
          exitCode: result.exitCode,
          signal: result.signal,
          stdout: text.decode(result.stdout),
          stderr: text.decode(result.stderr),
          durationMs: result.durationMs,
          timedOut: result.timedOut,
          truncated: result.truncated,
          oomKilled: result.oomKilled,
        };
      },
    );
  }),
});
