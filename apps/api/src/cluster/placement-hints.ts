import type { IncomingMessage } from 'node:http';
import { DEFAULT_TEMPLATE_NAME } from '@studio/policy';
import { type AppDeps, requestCredential } from '../core/context.ts';

/**
 * What decides a call's node beyond a session it names, resolved by an API replica for the caller: a build it
 * must run beside (`template`, a `sha256:` digest; null: any node), and the node that keeps what it names
 * (`node`: a snapshot), which it goes to while that node answers. When it does not, the call is placed by
 * `template` like any other: a node that shares the snapshot's folder (`STUDIO_SNAPSHOTS_DIR`) serves it, and
 * one that does not says so.
 */
export type PlacementHint = { template: string | null; node?: string };

/** Resolves {@link PlacementHint}s: `procedure` is a tRPC procedure's path, or `e2b.create`. */
export type PlacementHints = (
  req: IncomingMessage,
  procedure: string,
  input: unknown,
) => Promise<PlacementHint | undefined>;

/** The calls a replica places on a node chosen for them (the rest of a session's calls follow its session). */
export const PLACED_PROCEDURES: ReadonlySet<string> = new Set([
  'sessions.create',
  'templates.create',
  'templates.build',
]);

/** Calls that must run where what they name is kept (a snapshot, on the node that took it). */
export const PINNED_PROCEDURES: ReadonlySet<string> = new Set(['snapshots.delete']);

type Input = Record<string, unknown>;
const text = (v: unknown) => (typeof v === 'string' ? v : undefined);

/**
 * The replica's side of placing by template and routing by snapshot (issue 23): it authenticates the caller as
 * the node will (the same store and keys), then looks up what the call names as that user. A snapshot is kept by
 * the node that took it, so a session made from it (and deleting it) goes there while it answers; a session of a
 * template goes to a node that holds its build, and a build from a template to a node that holds its base.
 *
 * Security meaning: a hint only steers placement. Anyone not signed in, or naming something they may not use,
 * gets no hint, so the call lands on any node, which refuses it with the usual message; nothing the caller may
 * not see changes the answer.
 */
export function createPlacementHints(deps: Pick<AppDeps, 'auth' | 'templates' | 'store'>): PlacementHints {
  const templateDigest = async (userId: string, ref: string | undefined): Promise<string | null> => {
    if (ref === undefined || ref === DEFAULT_TEMPLATE_NAME) return null;
    const t = await deps.templates.find(userId, ref).catch(() => undefined);
    return t?.digest ? `sha256:${t.digest}` : null;
  };
  const snapshotNode = async (
    userId: string,
    ref: string | undefined,
  ): Promise<PlacementHint | undefined> => {
    const s = ref === undefined ? undefined : await deps.store.getSnapshot(userId, ref);
    if (s === undefined) return undefined;
    const t = s.templateId === null ? undefined : await deps.store.getTemplate(s.templateId);
    return { node: s.instanceId, template: t?.digest ? `sha256:${t.digest}` : null };
  };
  return async (req, procedure, raw) => {
    const input = (typeof raw === 'object' && raw !== null ? raw : {}) as Input;
    // E2B's SDKs send their API token as X-API-Key; the rest of the API a bearer token or the sign-in cookie.
    const header = req.headers['x-api-key'];
    const credential =
      procedure === 'e2b.create'
        ? (Array.isArray(header) ? header[0] : header)?.trim()
        : requestCredential(req);
    if (!credential) return undefined;
    const principal = await deps.auth.authenticate(credential).catch(() => undefined);
    if (principal === undefined) return undefined;
    const { userId } = principal;
    switch (procedure) {
      case 'sessions.create': {
        const from = await snapshotNode(userId, text(input.fromSnapshot));
        return from ?? { template: await templateDigest(userId, text(input.template)) };
      }
      case 'e2b.create': {
        const id = text(input.templateID);
        return { template: await templateDigest(userId, id === 'base' ? undefined : id) };
      }
      case 'templates.create':
        return { template: await deps.templates.baseDigest(userId, input.spec as Input).catch(() => null) };
      case 'templates.build': {
        const t = await deps.templates.find(userId, text(input.template) ?? '').catch(() => undefined);
        const spec = (input.spec ?? t?.spec) as Input | undefined;
        return spec === undefined
          ? undefined
          : { template: await deps.templates.baseDigest(userId, spec).catch(() => null) };
      }
      case 'snapshots.delete':
        return snapshotNode(userId, text(input.snapshot));
      default:
        return undefined;
    }
  };
}
