import type { AppRouter } from '@studio/client';
import type { inferRouterOutputs } from '@trpc/server';
import { formatBytes } from './file-types';

type Outputs = inferRouterOutputs<AppRouter>;

/** `snapshots.list`: the caller's snapshots and the quota they count against. */
export type SnapshotList = Outputs['snapshots']['list'];
/** A snapshot as the API shows it: name, the session it was taken of, memory or workspace only, size. */
export type Snapshot = SnapshotList['snapshots'][number];

/**
 * The most sessions one fork asks for (the bound of `sessionForkInput.count` in `@studio/policy`, held equal by
 * the unit test): a copy, so the page does not bundle the policy's schemas. The server's policy may allow fewer,
 * and every fork counts against the live-session limit.
 */
export const MAX_FORKS = 20;

/**
 * What a snapshot's name must look like (`snapshotNameSchema` of `@studio/policy`, held equal by the unit test):
 * 1-63 of a-z 0-9 and -, starting with a letter and not ending with -.
 */
export const SNAPSHOT_NAME = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Why a typed snapshot name would be refused, in words for people; null when it is fine. */
export function snapshotNameProblem(name: string): string | null {
  if (name === '') return 'Give the snapshot a name.';
  if (SNAPSHOT_NAME.test(name)) return null;
  return 'A snapshot name is 1-63 of a-z, 0-9 and -, starts with a letter and does not end with -.';
}

/** A name to offer for a snapshot of a session: `snap-` and the local date and time (`snap-20250101-0930`). */
export function suggestedSnapshotName(now: Date = new Date()): string {
  const two = (n: number) => String(n).padStart(2, '0');
  return `snap-${now.getFullYear()}${two(now.getMonth() + 1)}${two(now.getDate())}-${two(now.getHours())}${two(now.getMinutes())}`;
}

/** "12.0 MiB of 10.0 GiB used"; "snapshots are off on this server" for a quota of 0. */
export function quotaLabel(usedBytes: number, maxBytes: number): string {
  if (maxBytes === 0) return 'snapshots are off on this server';
  return `${formatBytes(usedBytes)} of ${formatBytes(maxBytes)} used`;
}

/** The share of the quota used, 0..100, for a meter. */
export function quotaPercent(usedBytes: number, maxBytes: number): number {
  if (maxBytes <= 0) return 100;
  return Math.min(100, Math.round((usedBytes / maxBytes) * 100));
}
