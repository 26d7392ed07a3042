import { resolveWorkspacePath } from '@studio/policy';
import { EnvdError } from './envd-errors.ts';

/** Where the workspace is inside every Studio sandbox, and the home E2B code assumes. */
export const WORKSPACE = '/workspace';
export const E2B_HOME = '/home/user';

/**
 * The user a call runs as. E2B's default user is `user`; a Studio sandbox has one unprivileged user, so `user` and
 * `studio` both name it and `root` does not exist. Absent (SDKs for envd 0.4.0 and later send none by default)
 * means the default user.
 */
export function checkUser(name: string | undefined): void {
  if (name === undefined || name === '' || name === 'user' || name === 'studio') return;
  if (name === 'root') {
    throw new EnvdError(
      'INVALID_ARGUMENT',
      'sandboxes have no root user; run as the default user (omit `user`, or pass "user")',
    );
  }
  throw new EnvdError('INVALID_ARGUMENT', `there is no user "${clip(name)}" in the sandbox; use "user"`);
}

/** The user an `Authorization: Basic base64("<user>:")` header names (undefined without one). */
export function userFromAuthorization(header: string | null | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
  if (!match?.[1]) throw new EnvdError('INVALID_ARGUMENT', 'Authorization must be Basic base64("<user>:")');
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? decoded : decoded.slice(0, colon);
}

const clip = (s: string) => (s.length > 64 ? `${s.slice(0, 64)}…` : s);

/**
 * An E2B path as a canonical workspace-relative path ('' is the workspace itself). Relative paths are taken from
 * the home directory, which is the workspace; `/workspace` and `/home/user` (exactly, or followed by `/`) and `~`
 * name it too, because much E2B code hard-codes /home/user. Any other absolute path is outside what Studio
 * serves. The rest goes through Studio's own path rules (no `..`, no control characters, length limits), which
 * are never relaxed here.
 */
export function toWorkspacePath(requested: string): string {
  if (requested.length > 4 * 4096) throw new EnvdError('INVALID_ARGUMENT', 'path is too long');
  let rest: string;
  const under = (prefix: string) => requested === prefix || requested.startsWith(`${prefix}/`);
  if (under(WORKSPACE)) rest = requested.slice(WORKSPACE.length);
  else if (under(E2B_HOME)) rest = requested.slice(E2B_HOME.length);
  else if (under('~')) rest = requested.slice(1);
  else if (requested.startsWith('/')) {
    throw new EnvdError(
      'INVALID_ARGUMENT',
      `${clip(requested)} is outside the workspace: Studio sandboxes serve files under ${WORKSPACE} (${E2B_HOME} is the same directory)`,
    );
  } else rest = requested;
  rest = rest.replace(/^\/+/, '');
  if (rest === '') return '';
  try {
    // Studio's rules percent-decode once; E2B paths are raw names, so a literal '%' is escaped first.
    return resolveWorkspacePath(rest.replaceAll('%', '%25'), { allowRoot: true });
  } catch (error) {
    throw new EnvdError('INVALID_ARGUMENT', `${clip(requested)}: ${(error as Error).message}`, error);
  }
}

/** A workspace-relative path as the client sees it (absolute, under /workspace). */
export function toClientPath(relative: string): string {
  return relative === '' ? WORKSPACE : `${WORKSPACE}/${relative}`;
}

/** The workspace-relative form for APIs that take Studio's path input ('.' is the root there). */
export function policyInput(relative: string): string {
  return relative === '' ? '.' : relative.replaceAll('%', '%25');
}
