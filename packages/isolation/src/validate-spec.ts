import { sandboxResourcesSchema } from '@studio/policy/limits';
import { IsolationError } from './errors.ts';
import { SANDBOX_ID_PATTERN, SNAPSHOT_ID_PATTERN } from './sandbox-id.ts';
import { RESERVED_LABEL_PREFIX, type ResourceLimits, type SandboxSpec } from './types.ts';

/**
 * Labels under the reserved `studio.` prefix that a caller may set (the API's session, owner and test labels);
 * every other `studio.*` key is the backend's own, and reconciliation trusts it.
 */
export const CALLER_RESERVED_LABELS: readonly string[] = Object.freeze([
  'studio.session',
  'studio.owner',
  'studio.test',
]);

const RESOURCE_KEYS = ['memoryBytes', 'cpus', 'pids', 'diskBytes', 'inodes', 'tmpBytes'] as const;
/** Printable ASCII without spaces: every image reference and rootfs name a backend resolves fits it. */
const IMAGE = /^[\x21-\x7e]{1,255}$/;

/**
 * The one check of a {@link SandboxSpec}, called by every backend's `create()` before it touches the runtime,
 * so that every backend accepts and refuses the same specs. Throws `INVALID_INPUT` (naming the field and the
 * bound) for a malformed id or image, resources outside `@studio/policy`'s `SANDBOX_LIMIT_BOUNDS` (whole numbers
 * but `cpus`, `/tmp` no larger than memory, no unknown keys) or above `limits`, and for labels that are not
 * strings or use a `studio.*` key the backend owns; `UNSUPPORTED` for a network mode other than `none`.
 *
 * Security meaning: a caller (and so a client) never chooses a low-level runtime parameter, never gets a
 * sandbox outside the policy's bounds, and cannot forge the labels reconciliation trusts (SECURITY.md §1.c, §7).
 *
 * @param limits Per-deployment ceilings (e.g. the API's `policy.sandbox`): each given field caps the spec's.
 */
export function validateSandboxSpec(spec: SandboxSpec, limits?: Partial<ResourceLimits>): void {
  if (typeof spec !== 'object' || spec === null) {
    throw new IsolationError('INVALID_INPUT', 'the sandbox spec must be an object: { image, resources }');
  }
  if (spec.id !== undefined && (typeof spec.id !== 'string' || !SANDBOX_ID_PATTERN.test(spec.id))) {
    throw new IsolationError(
      'INVALID_INPUT',
      'id must be "sbx-" and 16 lowercase hex digits (newSandboxId() makes one), or left out',
    );
  }
  if (
    spec.fromSnapshot !== undefined &&
    (typeof spec.fromSnapshot !== 'string' || !SNAPSHOT_ID_PATTERN.test(spec.fromSnapshot))
  ) {
    throw new IsolationError(
      'INVALID_INPUT',
      'fromSnapshot must be "snp-" and 16 lowercase hex digits (a snapshot id), or left out',
    );
  }
  if (typeof spec.image !== 'string' || !IMAGE.test(spec.image)) {
    throw new IsolationError(
      'INVALID_INPUT',
      'image must be a non-empty image name of at most 255 printable characters without spaces',
    );
  }
  const parsed = sandboxResourcesSchema.safeParse(spec.resources);
  if (!parsed.success) {
    const detail = parsed.error.issues
      .slice(0, 3)
      .map((issue) => `resources${issue.path.map((p) => `.${String(p)}`).join('')}: ${issue.message}`)
      .join('; ');
    throw new IsolationError(
      'INVALID_INPUT',
      `sandbox resources are invalid (${detail}); use limits within the policy's SANDBOX_LIMIT_BOUNDS`,
      { cause: parsed.error },
    );
  }
  for (const key of RESOURCE_KEYS) {
    const ceiling = limits?.[key];
    if (ceiling !== undefined && parsed.data[key] > ceiling) {
      throw new IsolationError(
        'INVALID_INPUT',
        `resources.${key} ${parsed.data[key]} is above this deployment's limit of ${ceiling}: ask for less`,
        { details: { limit: key } },
      );
    }
  }
  if ((spec.network ?? 'none') !== 'none') {
    throw new IsolationError('UNSUPPORTED', 'only network mode "none" is supported');
  }
  const labels: unknown = spec.labels ?? {};
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) {
    throw new IsolationError('INVALID_INPUT', 'labels must be an object of strings');
  }
  for (const [key, value] of Object.entries(labels)) {
    if (key.startsWith(RESERVED_LABEL_PREFIX) && !CALLER_RESERVED_LABELS.includes(key)) {
      throw new IsolationError('INVALID_INPUT', `label ${key} is reserved for the backend`);
    }
    if (typeof value !== 'string') throw new IsolationError('INVALID_INPUT', `label ${key} must be a string`);
  }
}
