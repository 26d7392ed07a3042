/**
 * Environment variable names a client may not set for a command, and prefixes likewise refused. Security
 * meaning: user code runs as the sandbox user anyway, so these do not guard the sandbox from its owner; they
 * guard the helpers the backend runs around a command (shell wrappers, an init, a timeout runner) from loader
 * and shell-startup injection: LD_* (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT), exported bash functions, BASH_ENV/ENV,
 * IFS, PS4, PROMPT_COMMAND, SHELLOPTS/BASHOPTS, GCONV_PATH, HOSTALIASES. NODE_OPTIONS and PATH are allowed: they
 * only affect the user's own programs.
 */
export const REFUSED_ENV_NAMES: readonly string[] = Object.freeze([
  'BASH_ENV',
  'ENV',
  'SHELLOPTS',
  'BASHOPTS',
  'PS4',
  'IFS',
  'PROMPT_COMMAND',
  'GCONV_PATH',
  'HOSTALIASES',
]);
/** Prefixes of refused environment variable names; see {@link REFUSED_ENV_NAMES}. */
export const REFUSED_ENV_PREFIXES: readonly string[] = Object.freeze(['LD_', 'BASH_FUNC_']);

/** True when a client may set this environment variable name for a command. */
export function isAllowedEnvName(name: string): boolean {
  if (typeof name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(name)) return false;
  const upper = name.toUpperCase();
  if (REFUSED_ENV_NAMES.includes(upper)) return false;
  return !REFUSED_ENV_PREFIXES.some((prefix) => upper.startsWith(prefix));
}
