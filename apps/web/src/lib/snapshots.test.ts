import { sessionForkInput, snapshotNameSchema } from '@studio/policy';
import { describe, expect, it } from 'vitest';
import {
  MAX_FORKS,
  quotaLabel,
  quotaPercent,
  SNAPSHOT_NAME,
  snapshotNameProblem,
  suggestedSnapshotName,
} from './snapshots.ts';

describe('snapshots on the page', () => {
  it("asks for at most the policy schema's number of forks", () => {
    expect(
      sessionForkInput.safeParse({ sessionId: 'ses_0123456789abcdefgh', count: MAX_FORKS }).success,
    ).toBe(true);
    expect(
      sessionForkInput.safeParse({ sessionId: 'ses_0123456789abcdefgh', count: MAX_FORKS + 1 }).success,
    ).toBe(false);
  });

  it("checks names as the policy's snapshot name schema does", () => {
    const samples = ['a', 'before-upgrade', 'snap-20250101-0930', 'x'.repeat(63), 'x'.repeat(64)];
    for (const bad of ['', 'A', '1st', 'a-', 'a_b', 'a b', 'a/b', '..', 'snp-0123456789abcdef'.toUpperCase()])
      samples.push(bad);
    for (const name of samples)
      expect(SNAPSHOT_NAME.test(name), name).toBe(snapshotNameSchema.safeParse(name).success);
    expect(snapshotNameProblem('before-upgrade')).toBeNull();
    expect(snapshotNameProblem('')).toMatch(/Give the snapshot a name/);
    expect(snapshotNameProblem('Before')).toMatch(/a-z, 0-9 and -/);
  });

  it('suggests a valid name from the date and time', () => {
    const name = suggestedSnapshotName(new Date(2025, 0, 2, 9, 5));
    expect(name).toBe('snap-20250102-0905');
    expect(snapshotNameProblem(name)).toBeNull();
  });

  it('says how much of the quota is used', () => {
    expect(quotaLabel(12 * 1024 * 1024, 10 * 1024 ** 3)).toBe('12.0 MiB of 10.00 GiB used');
    expect(quotaLabel(0, 0)).toBe('snapshots are off on this server');
    expect(quotaPercent(5, 10)).toBe(50);
    expect(quotaPercent(20, 10)).toBe(100);
    expect(quotaPercent(0, 0)).toBe(100);
  });
});
