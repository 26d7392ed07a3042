import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GVisorBackend } from './gvisor-backend.ts';
import { MIN_RUNSC_VERSION, parseRunscVersion, RUNSC_FLAGS, runscTooOld } from './runsc.ts';

const FIX = 'install runsc from bookworm-backports (bash infra/setup-runtimes.sh)';

describe('runsc version check', () => {
  it('reads the release date of Debian and upstream builds', () => {
    expect(parseRunscVersion('runsc version 0.0~20240729.0\nspec: 1.0.2-dev\n')).toBe(20240729);
    expect(parseRunscVersion('runsc version 0.0~20221219.0\nspec: 1.0.2-dev')).toBe(20221219);
    expect(parseRunscVersion('runsc version release-20250113.0\nspec: 1.1.0')).toBe(20250113);
    expect(parseRunscVersion('runsc version 20240729.0')).toBe(20240729);
    expect(parseRunscVersion('runsc version VERSION_MISSING')).toBeUndefined();
    expect(parseRunscVersion('')).toBeUndefined();
  });

  it('accepts bookworm-backports 20240729 and newer', () => {
    expect(MIN_RUNSC_VERSION).toBe(20240729);
    expect(runscTooOld('runsc version 0.0~20240729.0\nspec: 1.0.2-dev')).toBeUndefined();
    expect(runscTooOld('runsc version release-20250113.0')).toBeUndefined();
  });

  it("refuses bookworm's 20221219 and unknown versions, naming the fix", () => {
    expect(runscTooOld('runsc version 0.0~20221219.0\nspec: 1.0.2-dev')).toBe(
      `runsc 0.0~20221219.0 is too old: ${FIX}`,
    );
    expect(runscTooOld('runsc version 0.0~20240728.0')).toBe(`runsc 0.0~20240728.0 is too old: ${FIX}`);
    expect(runscTooOld('something else')).toContain(`is too old: ${FIX}`);
  });

  it('runs every sandbox with OCI seccomp, no network and no root overlay', () => {
    expect(RUNSC_FLAGS).toEqual(
      expect.arrayContaining(['--oci-seccomp', '--network=none', '--overlay2=none']),
    );
  });
});

describe('GVisorBackend.available() with an old runsc', () => {
  it('answers not ok with the version and the fix, before anything else', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runsc-old-'));
    try {
      const fake = join(dir, 'runsc');
      writeFileSync(fake, '#!/bin/sh\necho "runsc version 0.0~20221219.0"\necho "spec: 1.0.2-dev"\n', {
        mode: 0o755,
      });
      const backend = new GVisorBackend({
        dataDir: dir,
        images: {},
        seccompProfile: join(dir, 'none.json'),
        runscPath: fake,
        reconcileOnStart: false,
      });
      expect(await backend.available()).toEqual({
        ok: false,
        reason: `runsc 0.0~20221219.0 is too old: ${FIX}`,
      });
      await backend.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
