import { E2B_SANDBOX_ID_PATTERN, SESSION_ID_PREFIX } from '@studio/policy';

/**
 * A session's E2B sandbox id: its id's 128 random bits as 32 lower-case hex digits. E2B ids are DNS labels
 * (`49983-<id>.<domain>`); session ids are base64url (mixed case, `-`, `_`), which host names lose or refuse. The
 * mapping is one to one and needs no lookup, so any session (made in the IDE too) has an E2B id.
 */
export function e2bSandboxId(sessionId: string): string {
  return Buffer.from(sessionId.slice(SESSION_ID_PREFIX.length), 'base64url').toString('hex');
}

/** The session id of an E2B sandbox id; undefined when `sandboxId` is not one. */
export function sessionIdOfSandbox(sandboxId: string): string | undefined {
  if (!E2B_SANDBOX_ID_PATTERN.test(sandboxId)) return undefined;
  return `${SESSION_ID_PREFIX}${Buffer.from(sandboxId, 'hex').toString('base64url')}`;
}
