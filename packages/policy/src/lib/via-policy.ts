import { z } from 'zod';
import { isAllowedEnvName } from '../env-names.ts';
import { isPolicyError } from '../errors.ts';

/**
 * Runs a policy function as a zod transform: its PolicyError becomes a zod issue of code 'custom' whose
 * `params.policyCode` is the PolicyErrorCode, so schemas report policy refusals like any other issue.
 */
export function viaPolicy<I, O>(fn: (input: I) => O) {
  return (input: I, ctx: z.RefinementCtx): O => {
    try {
      return fn(input);
    } catch (e) {
      if (!isPolicyError(e)) throw e;
      ctx.addIssue({ code: 'custom', message: e.message, params: { policyCode: e.code } });
      return z.NEVER;
    }
  };
}

/** An environment variable name a client may set ({@link isAllowedEnvName}), with the message that says the rule. */
export const envNameSchema = z.string().max(128).refine(isAllowedEnvName, {
  error:
    'environment variable name must match ^[A-Za-z_][A-Za-z0-9_]*$ and not be LD_*, BASH_FUNC_* or a shell-startup variable',
});
