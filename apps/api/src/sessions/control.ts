import type { Store } from '@studio/db';
import type { Principal } from '../auth/auth.ts';
import { AppError } from '../core/errors.ts';

/**
 * THE take-control check (issue 8): while a person (a login of the owner) holds control of a session, an API
 * token (an agent or API client) may not change it: files.write/mkdir/remove/rename, exec.run/stream/write/
 * closeStdin and the terminal fail with HUMAN_HAS_CONTROL (409). Reads stay allowed; logins are never blocked.
 * A session the caller does not own is left to the procedure (which answers NOT_FOUND).
 */
export async function assertMayMutate(store: Store, principal: Principal, sessionId: string): Promise<void> {
  if (principal.via !== 'api-token') return;
  const record = await store.getSession(principal.userId, sessionId);
  if (!record?.control) return;
  throw new AppError(
    'HUMAN_HAS_CONTROL',
    `a person (${record.control.name}) has taken control of session ${sessionId} since ${record.control.since.toISOString()}; wait for the control.released event (events.subscribe / get_events) and retry`,
  );
}
