import type { AppErrorCode } from '@studio/api';
import type { IsolationErrorCode } from '@studio/isolation';
import type { PolicyErrorCode } from '@studio/policy';
import type { TRPC_ERROR_CODE_KEY } from '@trpc/server/rpc';

/**
 * The stable codes a {@link StudioClientError} carries, for `switch (error.code)` with the compiler's help. Types
 * only, taken from the packages that define them, so a code the API adds reaches this union without a copy:
 *
 * - the API's own refusals (`AppErrorCode`): `SESSION_LIMIT`, `HUMAN_HAS_CONTROL`, `EGRESS_DENIED`, …;
 * - the policy's (`PolicyErrorCode`): `PATH_TRAVERSAL`, `HOST_INVALID` (a bad allowlist entry), `RATE_LIMITED`, …;
 * - the isolation backends' (`IsolationErrorCode`): `TIMEOUT`, `RESOURCE_LIMIT`, `HOST_DISK_FULL`, …;
 * - tRPC's own codes, for a refusal made before any procedure ran (an unknown procedure, a malformed request);
 * - `NETWORK`: the server was not reached; `API_UNREACHABLE`: the web IDE's same-origin proxy did not reach the API.
 */
export type StudioErrorCode =
  | AppErrorCode
  | PolicyErrorCode
  | IsolationErrorCode
  | TRPC_ERROR_CODE_KEY
  | 'NETWORK'
  | 'API_UNREACHABLE';

/**
 * What `StudioClientError.code` holds: a {@link StudioErrorCode}, or a code a newer server sends that this client
 * does not know yet (the `string` part keeps those assignable without losing the known codes' completion).
 */
export type StudioErrorCodeOrUnknown = StudioErrorCode | (string & Record<never, never>);
