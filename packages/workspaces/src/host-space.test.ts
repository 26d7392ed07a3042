import { describe, expect, it } from 'vitest';
import { defaultHeadroomBytes, formatBytes, parseMountinfo, reserveVerdict } from './host-space.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('reserveVerdict', () => {
  it('admits a workspace that leaves the headroom free, to the byte', () => {
    expect(
      reserveVerdict({ availableBytes: 3 * GiB, pendingBytes: 0, sizeBytes: 2 * GiB, headroomBytes: GiB }),
    ).toEqual({ ok: true });
  });

  it('refuses one byte too many and says how much is missing', () => {
    expect(
      reserveVerdict({
        availableBytes: 3 * GiB,
        pendingBytes: 0,
        sizeBytes: 2 * GiB + 1,
        headroomBytes: GiB,
      }),
    ).toEqual({ ok: false, missingBytes: 1 });
  });

  it('counts what creates in flight were promised, so two concurrent creates cannot share the last space', () => {
    const input = { availableBytes: 3 * GiB, sizeBytes: 2 * GiB, headroomBytes: 512 * MiB };
    expect(reserveVerdict({ ...input, pendingBytes: 0 })).toEqual({ ok: true });
    expect(reserveVerdict({ ...input, pendingBytes: 2 * GiB })).toEqual({
      ok: false,
      missingBytes: 1536 * MiB,
    });
  });

  it('refuses everything when the host is already inside its headroom', () => {
    expect(
      reserveVerdict({ availableBytes: 100 * MiB, pendingBytes: 0, sizeBytes: 64 * MiB, headroomBytes: GiB }),
    ).toEqual({ ok: false, missingBytes: GiB - 36 * MiB });
  });
});

describe('defaultHeadroomBytes', () => {
  it('keeps 5% of a small disk and 1 GiB of a large one', () => {
    expect(defaultHeadroomBytes(10 * GiB)).toBe(512 * MiB);
    expect(defaultHeadroomBytes(500 * GiB)).toBe(GiB);
  });
});

describe('formatBytes', () => {
  it('writes sizes an operator reads', () => {
    expect(formatBytes(300 * MiB)).toBe('300 MiB');
    expect(formatBytes(1536 * MiB)).toBe('1.5 GiB');
    expect(formatBytes(1)).toBe('1 MiB');
  });
});

describe('parseMountinfo', () => {
  const mountinfo = [
    '22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw',
    // A workspace whose journal aborted: the mount still says rw, its superblock says ro.
    '301 22 7:3 / /var/lib/studio/docker/workspaces/sbx-00000000000000aa rw,nosuid,nodev,noatime shared:160 - ext4 /dev/loop3 ro',
    '302 22 7:4 / /var/lib/studio/docker/workspaces/sbx-00000000000000bb rw,nosuid,nodev,noatime shared:161 - ext4 /dev/loop4 rw',
    // The same on Linux 6.x: the superblock stays rw and says emergency_ro.
    '304 22 7:6 / /var/lib/studio/docker/workspaces/sbx-00000000000000cc rw,noatime - ext4 /dev/loop6 rw,emergency_ro',
    // Remounted read-only per mount; and a path with a space, written \\040; no optional fields.
    '303 22 7:5 / /mnt/with\\040space ro,relatime - ext4 /dev/loop5 rw',
    '',
  ].join('\n');

  it('finds read-only mounts by the mount options or by the superblock', () => {
    expect(parseMountinfo(mountinfo)).toEqual([
      { mountPoint: '/', readOnly: false },
      { mountPoint: '/var/lib/studio/docker/workspaces/sbx-00000000000000aa', readOnly: true },
      { mountPoint: '/var/lib/studio/docker/workspaces/sbx-00000000000000bb', readOnly: false },
      { mountPoint: '/var/lib/studio/docker/workspaces/sbx-00000000000000cc', readOnly: true },
      { mountPoint: '/mnt/with space', readOnly: true },
    ]);
  });

  it('skips lines it cannot read instead of guessing', () => {
    expect(parseMountinfo('garbage\n1 2 3\n')).toEqual([]);
  });
});
