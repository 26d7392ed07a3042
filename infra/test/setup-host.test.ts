import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { INFRA, run, tempDir, which } from './helpers.ts';

const SETUP = join(INFRA, 'host', 'setup-host.sh');
const MERGE = join(INFRA, 'host', 'merge-daemon-json.mjs');
const WRAPPER = join(INFRA, 'bin', 'studio-run.sh');
const REPO = join(INFRA, '..');
const LINE = /^(ok|missing) {1,7}\S/;

/** Existence, mtime and listing of the host paths setup-host.sh would write: proof that --check wrote nothing. */
function snapshot(): string {
  const paths = [
    '/etc/docker',
    '/etc/docker/daemon.json',
    '/etc/systemd/system',
    '/etc/studio',
    '/var/lib/studio',
    '/etc/apparmor.d',
    '/etc/passwd',
    '/opt/studio',
  ];
  return JSON.stringify(
    paths.map((p) => {
      if (!existsSync(p)) return [p, null];
      const st = statSync(p);
      return [p, st.mtimeMs, st.mode, st.isDirectory() ? readdirSync(p).sort() : st.size];
    }),
  );
}

function listAll(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String);
}

describe('setup-host.sh --check', () => {
  it('reports every item on an empty root, one line each, exits 1 and writes nothing', () => {
    const root = tempDir();
    const before = snapshot();
    const r = run('bash', [SETUP, '--check'], {
      STUDIO_ROOT: root,
      STUDIO_CODE_DIR: join(root, 'opt/studio'),
    });
    expect(r.status).toBe(1);
    const lines = r.stdout.trim().split('\n');
    for (const line of lines) expect(line).toMatch(LINE);
    for (const item of [
      'docker runtime runsc',
      'service user studio',
      'data directory',
      'secret',
      'systemd unit studio-api.service',
      'traefik/traefik.yml',
    ]) {
      expect(lines.some((l) => l.startsWith('missing') && l.includes(item))).toBe(true);
    }
    expect(listAll(root)).toEqual([]);
    expect(snapshot()).toBe(before);
  });

  it('changes nothing on the real host either', () => {
    const before = snapshot();
    const r = run('bash', [SETUP, '--check']);
    expect([0, 1]).toContain(r.status);
    for (const line of r.stdout.trim().split('\n')) expect(line).toMatch(LINE);
    expect(snapshot()).toBe(before);
  });

  it('exits 0 when everything is in place (packages permitting)', () => {
    const root = tempDir();
    const etc = join(root, 'etc/studio');
    mkdirSync(join(etc, 'secrets'), { recursive: true });
    for (const s of ['jwt_secret', 'admin_password', 'postgres_password', 'database_url'])
      writeFileSync(join(etc, 'secrets', s), 'x\n');
    writeFileSync(join(etc, 'studio.env'), 'STUDIO_PORT=4000\n');
    writeFileSync(join(etc, 'compose.env'), 'STUDIO_ETC=/etc/studio\n');
    const render = run('bash', [
      SETUP,
      '--render',
      join(etc, 'traefik'),
      '--domain',
      'studio.example.com',
      '--preview-domain',
      'studio-preview.net',
      '--tls',
      'provided',
    ]);
    expect(render.status).toBe(0);
    writeFileSync(join(root, 'etc/passwd'), 'studio:x:998:998::/nonexistent:/usr/sbin/nologin\n');
    mkdirSync(join(root, 'var/lib/studio'), { recursive: true });
    chmodSync(join(root, 'var/lib/studio'), 0o700);
    mkdirSync(join(root, 'etc/systemd/system'), { recursive: true });
    for (const u of ['studio-api.service', 'studio-web.service'])
      copyFileSync(join(INFRA, 'systemd', u), join(root, 'etc/systemd/system', u));
    mkdirSync(join(root, 'etc/docker'));
    expect(run('node', [MERGE, join(root, 'etc/docker/daemon.json')]).stdout.trim()).toBe('changed');

    const r = run('bash', [SETUP, '--check'], { STUDIO_ROOT: root, STUDIO_CODE_DIR: REPO });
    const lines = r.stdout.trim().split('\n');
    const notPackages = lines.filter((l) => !/ package /.test(l));
    expect(notPackages.filter((l) => !l.startsWith('ok'))).toEqual([]);
    const packagesMissing = lines.some((l) => l.startsWith('missing package'));
    expect(r.status).toBe(packagesMissing ? 1 : 0);
  });

  it.skipIf(process.getuid?.() !== 0)(
    'installs into an empty root, then a second run changes nothing (needs root)',
    () => {
      const root = tempDir();
      const env = { STUDIO_ROOT: root, STUDIO_CODE_DIR: REPO };
      const args = [
        SETUP,
        '--no-packages',
        '--domain',
        'studio.example.com',
        '--preview-domain',
        'studio-preview.net',
        '--acme-email',
        'ops@example.com',
        '--dns-provider',
        'cloudflare',
      ];
      const first = run('bash', args, env);
      expect(first.stderr).toBe('');
      expect(first.status).toBe(0);
      const files = (): string =>
        JSON.stringify(
          listAll(root).map((f) => [f, statSync(join(root, f)).mtimeMs, statSync(join(root, f)).mode]),
        );
      const before = files();
      const second = run('bash', [SETUP, '--no-packages'], env);
      expect(second.status).toBe(0);
      expect(second.stdout).not.toMatch(
        /registered runsc|secrets generated|wrote |configuration written|installed|created/,
      );
      expect(files()).toBe(before);
      // The IDE frames previews from their own hosts: its CSP must name them.
      expect(readFileSync(join(root, 'etc/studio/web.env'), 'utf8')).toMatch(
        /^STUDIO_PREVIEW_ORIGIN=https:\/\/\*\.studio-preview\.net$/m,
      );
      const secret = readFileSync(join(root, 'etc/studio/secrets/jwt_secret'), 'utf8');
      expect(secret.length).toBeGreaterThanOrEqual(32);
      expect((statSync(join(root, 'etc/studio/secrets/jwt_secret')).mode & 0o777).toString(8)).toBe('600');
      const check = run('bash', [SETUP, '--check'], env);
      expect(
        check.stdout.split('\n').filter((l) => l.startsWith('missing') && !l.includes(' package ')),
      ).toEqual([]);
    },
  );

  it('refuses an unknown option with exit 2', () => {
    expect(run('bash', [SETUP, '--frobnicate']).status).toBe(2);
  });

  it('render is idempotent', () => {
    const dir = tempDir();
    const args = [
      SETUP,
      '--render',
      dir,
      '--domain',
      'studio.example.com',
      '--preview-domain',
      'studio-preview.net',
      '--tls',
      'provided',
    ];
    expect(run('bash', args).stdout).toContain('written');
    expect(run('bash', args).stdout).toContain('up to date');
  });

  it('refuses previews without a domain of their own, or on the IDE site, naming why', () => {
    const base = [SETUP, '--render', tempDir(), '--domain', 'studio.example.com', '--tls', 'provided'];
    const missing = run('bash', base);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/--preview-domain is required: .*registrable domain of their own/);
    for (const same of ['preview.studio.example.com', 'preview.example.com', 'example.com']) {
      const r = run('bash', [...base, '--preview-domain', same]);
      expect(r.status, same).toBe(1);
      expect(r.stderr, same).toMatch(
        /--preview-domain: previews on .* would be same-site with studio\.example\.com/,
      );
    }
    // A ccSLD: two registrable domains under co.uk are two sites.
    const ok = run('bash', [
      SETUP,
      '--render',
      tempDir(),
      '--domain',
      'studio.example.co.uk',
      '--preview-domain',
      'preview.other.co.uk',
      '--tls',
      'provided',
    ]);
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
  });
});

describe('merge-daemon-json.mjs', () => {
  it('adds runsc and keeps every other key and runtime', () => {
    const file = join(tempDir(), 'daemon.json');
    writeFileSync(
      file,
      JSON.stringify({ 'log-driver': 'journald', runtimes: { kata: { path: '/usr/bin/kata' } } }),
    );
    expect(run('node', [MERGE, '--check', file]).status).toBe(1);
    expect(run('node', [MERGE, file]).stdout.trim()).toBe('changed');
    const merged = JSON.parse(readFileSync(file, 'utf8'));
    expect(merged['log-driver']).toBe('journald');
    expect(merged.runtimes.kata).toEqual({ path: '/usr/bin/kata' });
    expect(merged.runtimes.runsc).toEqual({ path: '/usr/bin/runsc', runtimeArgs: ['--network=none'] });
    expect(run('node', [MERGE, file]).stdout.trim()).toBe('unchanged');
    expect(run('node', [MERGE, '--check', file]).status).toBe(0);
  });

  it('leaves a file that is not a JSON object untouched (exit 2)', () => {
    const file = join(tempDir(), 'daemon.json');
    writeFileSync(file, '{ "debug": true, ');
    expect(run('node', [MERGE, file]).status).toBe(2);
    expect(readFileSync(file, 'utf8')).toBe('{ "debug": true, ');
  });
});

describe('studio-run.sh (secrets from *_FILE)', () => {
  const show = [
    'sh',
    '-c',
    'printf "%s|%s" "$STUDIO_JWT_SECRET" "$(printenv STUDIO_JWT_SECRET_FILE || echo unset)"',
  ];

  it('exports the file content without its trailing newline and unsets the _FILE variable', () => {
    const file = join(tempDir(), 'jwt');
    writeFileSync(file, 'a-secret-of-enough-length\n');
    const r = run('bash', [WRAPPER, ...show], { STUDIO_JWT_SECRET_FILE: file });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('a-secret-of-enough-length|unset');
  });

  it('refuses a variable set both ways, or an unreadable file, before running anything (exit 2)', () => {
    const file = join(tempDir(), 'jwt');
    writeFileSync(file, 'x');
    const both = run('bash', [WRAPPER, ...show], { STUDIO_JWT_SECRET_FILE: file, STUDIO_JWT_SECRET: 'y' });
    expect(both.status).toBe(2);
    expect(both.stdout).toBe('');
    const gone = run('bash', [WRAPPER, ...show], { DATABASE_URL_FILE: '/nonexistent/db' });
    expect(gone.status).toBe(2);
    expect(gone.stderr).toContain('DATABASE_URL_FILE');
  });
});

describe('systemd units', () => {
  const api = readFileSync(join(INFRA, 'systemd', 'studio-api.service'), 'utf8');
  const web = readFileSync(join(INFRA, 'systemd', 'studio-web.service'), 'utf8');
  const analyze = which('systemd-analyze');

  it('the API gets its secrets as credentials and keeps the host mount namespace', () => {
    for (const s of ['jwt_secret', 'admin_password', 'database_url']) {
      expect(api).toContain(`LoadCredential=${s}:/etc/studio/secrets/${s}`);
    }
    expect(api).toContain('AppArmorProfile=-studio-api');
    // A private mount namespace would hide workspace loop mounts from dockerd.
    expect(api).not.toMatch(/^(ProtectSystem|ProtectHome|PrivateTmp|PrivateDevices|ReadWritePaths)=/m);
    expect(api).not.toMatch(/^Environment=.*(SECRET|PASSWORD|DATABASE_URL)=/m);
  });

  it('every STUDIO_ variable the web unit sets is one the web app reads (no drift)', () => {
    const known = readFileSync(join(INFRA, '..', 'apps', 'web', 'src', 'env.ts'), 'utf8');
    const set = [...web.matchAll(/^Environment=(STUDIO_[A-Z_]+)=/gm)].map((m) => m[1] as string);
    expect(set.length).toBeGreaterThan(0);
    for (const name of set) expect(known, name).toContain(`${name}:`);
  });

  it('the web app is unprivileged and cannot reach the Docker socket', () => {
    expect(web).toMatch(/^User=studio$/m);
    expect(web).toMatch(/^NoNewPrivileges=yes$/m);
    expect(web).toMatch(/^CapabilityBoundingSet=$/m);
    expect(web).toMatch(/^InaccessiblePaths=.*\/run\/docker\.sock/m);
  });

  it.skipIf(!analyze)('systemd-analyze verify knows every directive (needs systemd-analyze)', () => {
    const dir = tempDir();
    for (const [name, text] of [
      ['studio-api.service', api],
      ['studio-web.service', web],
    ] as const) {
      // The code is not at /opt/studio here; point ExecStart at a binary that exists.
      writeFileSync(join(dir, name), text.replace(/^ExecStart=.*$/m, 'ExecStart=/bin/true'));
    }
    const r = run(analyze as string, [
      'verify',
      '--man=no',
      join(dir, 'studio-api.service'),
      join(dir, 'studio-web.service'),
    ]);
    expect(r.stderr).not.toMatch(/Unknown key|Failed to parse|Invalid|Unknown section/);
  });
});

describe('shell scripts', () => {
  const scripts = ['host/setup-host.sh', 'apparmor/load.sh', 'apparmor/check.sh', 'bin/studio-run.sh'];
  const shellcheck = which('shellcheck');

  it('parse (bash -n)', () => {
    for (const s of scripts) expect(run('bash', ['-n', join(INFRA, s)]).status).toBe(0);
  });

  it.skipIf(!shellcheck)('are shellcheck-clean (needs shellcheck)', () => {
    // -x follows `source` into setup-runtimes.sh (named by a directive in setup-host.sh).
    const r = run(shellcheck as string, ['-x', ...scripts.map((s) => join(INFRA, s))]);
    expect(r.stdout).toBe('');
    expect(r.status).toBe(0);
  });
});
