import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IN_CI, INFRA, run, tempDir, which } from './helpers.ts';

const PROFILES = ['studio-sandbox', 'studio-api'];
const parser = which('apparmor_parser');
if (!parser && IN_CI)
  throw new Error(
    'apparmor_parser not found in CI: infra/setup-runtimes.sh installs it (apt-get install apparmor)',
  );
if (!parser)
  console.warn('skipping the AppArmor compile checks: apparmor_parser not found (apt-get install apparmor)');

// -Q -K: compile without loading and without a cache; works on kernels without AppArmor.
const compile = (file: string) => run(parser as string, ['-Q', '-K', file]);

describe.skipIf(!parser)('AppArmor profiles compile (apparmor_parser -Q -K)', () => {
  for (const name of PROFILES) {
    it(`${name} compiles`, () => {
      const r = compile(join(INFRA, 'apparmor', name));
      expect(r.stderr.replace(/^Cache read\/write disabled.*\n?/m, '')).toBe('');
      expect(r.status).toBe(0);
    });
  }

  it('rejects a broken copy (the check can fail)', () => {
    const dir = tempDir();
    for (const name of PROFILES) {
      const broken = join(dir, name);
      // An unknown permission letter on a file rule is a semantic error the parser must report.
      writeFileSync(
        broken,
        readFileSync(join(INFRA, 'apparmor', name), 'utf8').replace(/\n}\s*$/, '\n  /etc/x qzq,\n}\n'),
      );
      expect(compile(broken).status).not.toBe(0);
    }
  });

  it('check.sh passes on the shipped profiles and fails on a broken one', () => {
    const ok = run('bash', [join(INFRA, 'apparmor', 'check.sh')]);
    expect(ok.status).toBe(0);
    for (const name of PROFILES) expect(ok.stdout).toContain(`AppArmor profile ${name} compiles`);
    const dir = tempDir();
    const broken = join(dir, 'studio-api');
    writeFileSync(
      broken,
      readFileSync(join(INFRA, 'apparmor', 'studio-api'), 'utf8').replace(
        'profile studio-api',
        'profile studio-api {',
      ),
    );
    const bad = run('bash', [join(INFRA, 'apparmor', 'check.sh'), broken]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('does not compile');
  });
});

describe('studio-api profile', () => {
  const text = readFileSync(join(INFRA, 'apparmor', 'studio-api'), 'utf8');

  it('mounts only ext4 workspace images under the data directory', () => {
    const mounts = text.split('\n').filter((l) => /^\s*(mount|umount)\b/.test(l));
    expect(mounts).toEqual(['  mount fstype=ext4 -> /var/lib/studio/**,', '  umount /var/lib/studio/**,']);
  });

  it('denies host secrets even though /etc is readable', () => {
    for (const path of ['/etc/shadow*', '/root/**', '/home/*/.ssh/**', '/etc/ssh/*key*']) {
      expect(text).toContain(`deny ${path} rwklx,`);
    }
  });

  it('writes only to its data directory, its runtime folder and /tmp', () => {
    const writable = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => !l.startsWith('#') && !l.startsWith('deny') && /^\/\S*\s+\S*w/.test(l))
      .map((l) => l.split(/\s+/)[0]);
    for (const path of writable) {
      expect(path).toMatch(
        /^\/(var\/lib\/studio|run\/studio\/|tmp|dev\/(null|loop|ptmx|pts)|run\/docker\.sock|var\/run\/docker\.sock)/,
      );
    }
  });
});

describe('load.sh', () => {
  it('loads nothing and exits 0 on a kernel without AppArmor', () => {
    const root = tempDir();
    const r = run('bash', [join(INFRA, 'apparmor', 'load.sh'), '--check'], { STUDIO_ROOT: root });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('kernel has no AppArmor');
  });

  it('--check reports a profile that is not loaded', () => {
    const root = tempDir();
    const fs = join(root, 'sys/kernel/security/apparmor');
    mkdirSync(fs, { recursive: true });
    writeFileSync(join(fs, 'profiles'), 'studio-sandbox (enforce)\n');
    const r = run('bash', [join(INFRA, 'apparmor', 'load.sh'), '--check'], { STUDIO_ROOT: root });
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('ok      apparmor profile studio-sandbox loaded');
    expect(r.stdout).toContain('missing apparmor profile studio-api');
    writeFileSync(join(fs, 'profiles'), 'studio-sandbox (enforce)\nstudio-api (enforce)\n');
    expect(run('bash', [join(INFRA, 'apparmor', 'load.sh'), '--check'], { STUDIO_ROOT: root }).status).toBe(
      0,
    );
  });
});
