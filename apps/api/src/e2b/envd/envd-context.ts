import { createContextKey, type HandlerContext } from '@connectrpc/connect';
import type { AppDeps } from '../../core/context.ts';
import type { AuditContext } from '../../sessions/session-manager.ts';
import type { EnvdTarget } from './envd-handler.ts';

/** What every envd RPC knows about its caller, set by the handler after authentication. */
export interface EnvdCall {
  target: EnvdTarget;
  audit: AuditContext;
}

export const envdCallKey = createContextKey<EnvdCall | undefined>(undefined, { description: 'envd call' });

/** The authenticated call of an RPC (always set: the handler serves nothing before authenticating). */
export function callOf(context: HandlerContext): EnvdCall {
  const call = context.values.get(envdCallKey);
  if (!call) throw new Error('envd RPC served without an authenticated call');
  return call;
}

/** The long-lived parts the envd services use. */
export type EnvdDeps = Pick<
  AppDeps,
  'store' | 'sessions' | 'policy' | 'schemas' | 'logger' | 'events' | 'fileWatches'
>;
