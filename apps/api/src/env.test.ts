import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseEnv } from './env.ts';

const CLUSTER_SECRET = 'k3J9vQ2mZx8Lw4Rt7Yp1Nc6Hb5Gd0Fs2Ae9Ui3Oq8Wl';

describe('parseEnv', () => {
  it('has defaults that run on one machine', () => {
    const env = parseEnv({});
    expect(env).toMatchObject({
      host: '127.0.0.1',
      port: 4000,
      previewPort: 4001,
      databaseUrl: undefined,
      jwtSecret: undefined,
      backends: ['auto'],
      images: ['studio-sandbox:latest'],
      origins: [],
      trustProxy: false,
    });
    expect(env.dataDir).toMatch(/\/\.data$/);
    expect(env.policy.maxLiveSessionsPerUser).toBe(5);
  });

  it('reads every variable', () => {
    const env = parseEnv({
      STUDIO_HOST: '0.0.0.0',
      STUDIO_PORT: '8080',
      STUDIO_PREVIEW_PORT: '8081',
      STUDIO_DATA_DIR: '/var/lib/studio',
      DATABASE_URL: 'postgres://u:p@db:5432/studio',
      STUDIO_JWT_SECRET: 'x'.repeat(40),
      STUDIO_ADMIN_PASSWORD: 'correct horse battery',
      STUDIO_BACKENDS: 'docker, gvisor',
      STUDIO_ORIGINS: 'https://studio.example.com',
      STUDIO_POLICY: '{"exec":{"maxOutputBytes":2048}}',
      STUDIO_TRUST_PROXY: 'true',
    });
    expect(env).toMatchObject({
      host: '0.0.0.0',
      port: 8080,
      previewPort: 8081,
      dataDir: '/var/lib/studio',
      databaseUrl: 'postgres://u:p@db:5432/studio',
      backends: ['docker', 'gvisor'],
      origins: ['https://studio.example.com'],
      trustProxy: true,
    });
    expect(env.policy.exec.maxOutputBytes).toBe(2048);
  });

  it('serves previews on *.localhost locally and on their own domain behind Traefik', () => {
    expect(parseEnv({}).previewHosts).toEqual({ domain: 'localhost', scheme: 'http', withPort: true });
    expect(
      parseEnv({ STUDIO_PREVIEW_DOMAIN: 'studio-preview.net', STUDIO_ORIGINS: 'https://studio.example.com' })
        .previewHosts,
    ).toEqual({ domain: 'studio-preview.net', scheme: 'https', withPort: false });
  });

  it('tells E2B SDKs the preview domain unless STUDIO_E2B_DOMAIN says otherwise', () => {
    expect(parseEnv({}).e2bDomain).toBeUndefined();
    const behind = {
      STUDIO_PREVIEW_DOMAIN: 'studio-preview.net',
      STUDIO_ORIGINS: 'https://studio.example.com',
    };
    expect(parseEnv(behind).e2bDomain).toBe('studio-preview.net');
    expect(parseEnv({ ...behind, STUDIO_E2B_DOMAIN: 'studio-preview.net:8443' }).e2bDomain).toBe(
      'studio-preview.net:8443',
    );
    expect(() => parseEnv({ STUDIO_E2B_DOMAIN: 'https://x.example.com' })).toThrow(/STUDIO_E2B_DOMAIN/);
  });

  it('keeps snapshots under the data dir unless STUDIO_SNAPSHOTS_DIR names a shared folder', () => {
    expect(parseEnv({}).snapshotsDir).toBeUndefined();
    expect(parseEnv({ STUDIO_SNAPSHOTS_DIR: '/mnt/studio-snapshots' }).snapshotsDir).toBe(
      '/mnt/studio-snapshots',
    );
    expect(() => parseEnv({ STUDIO_SNAPSHOTS_DIR: 'snapshots' })).toThrow(
      /STUDIO_SNAPSHOTS_DIR must be an absolute path/,
    );
  });

  it('refuses previews on the same site as the IDE, naming the fix', () => {
    const sameSite = [
      { STUDIO_PREVIEW_DOMAIN: 'preview.studio.example.com', STUDIO_ORIGINS: 'https://studio.example.com' },
      { STUDIO_PREVIEW_DOMAIN: 'preview.example.com', STUDIO_ORIGINS: 'https://studio.example.com' },
      { STUDIO_PREVIEW_DOMAIN: 'studio.example.com', STUDIO_ORIGINS: 'https://studio.example.com' },
    ];
    for (const source of sameSite) {
      expect(() => parseEnv(source), source.STUDIO_PREVIEW_DOMAIN).toThrow(
        /STUDIO_PREVIEW_DOMAIN: previews on \*\..* would be same-site with studio\.example\.com.*STUDIO_PREVIEW_DOMAIN=example-preview\.com/,
      );
    }
    // Local mode: an IDE on a localhost name would share its site with *.localhost previews.
    expect(() => parseEnv({ STUDIO_ORIGINS: 'http://localhost:3000' })).toThrow(
      /STUDIO_ORIGINS: .*same-site with localhost.*127\.0\.0\.1/,
    );
    // Without the IDE's origin there is nothing to check against: refused too.
    expect(() => parseEnv({ STUDIO_PREVIEW_DOMAIN: 'studio-preview.net' })).toThrow(/needs STUDIO_ORIGINS/);
  });

  it('treats empty values as unset', () => {
    expect(parseEnv({ STUDIO_PORT: '', DATABASE_URL: '' })).toMatchObject({
      port: 4000,
      databaseUrl: undefined,
    });
  });

  it.each([
    [{ STUDIO_PORT: '70000' }, /STUDIO_PORT/],
    [{ STUDIO_BACKENDS: 'kvm' }, /STUDIO_BACKENDS/],
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL must start with postgres/],
    [{ STUDIO_ORIGINS: 'https://x.example/path' }, /STUDIO_ORIGINS/],
    [{ STUDIO_POLICY: '{"maxLiveSessionsPerUser":50}' }, /STUDIO_POLICY/],
    [{ STUDIO_ADMIN_PASSWORD: 'short' }, /STUDIO_ADMIN_PASSWORD must be at least 12/],
  ])('refuses %o naming the variable', (source, message) => {
    expect(() => parseEnv(source)).toThrow(message);
  });

  it('never echoes a secret it refuses', () => {
    try {
      parseEnv({ STUDIO_JWT_SECRET: 'hunter2-too-short' });
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).toMatch(/STUDIO_JWT_SECRET/);
      expect((error as Error).message).not.toContain('hunter2');
    }
  });

  it('reads the drain time and edge limits, with defaults, and names a bad value', () => {
    expect(parseEnv({})).toMatchObject({
      drainMs: 60_000,
      edge: { requestTimeoutMs: 30_000, maxBatchCalls: 10 },
    });
    expect(
      parseEnv({
        STUDIO_DRAIN_SECONDS: '5',
        STUDIO_REQUEST_TIMEOUT_SECONDS: '2',
        STUDIO_MAX_BATCH_CALLS: '3',
      }),
    ).toMatchObject({ drainMs: 5000, edge: { requestTimeoutMs: 2000, maxBatchCalls: 3 } });
    expect(parseEnv({ STUDIO_DRAIN_SECONDS: '0' }).drainMs).toBe(0);
    expect(() => parseEnv({ STUDIO_DRAIN_SECONDS: 'soon' })).toThrow(/STUDIO_DRAIN_SECONDS/);
    expect(() => parseEnv({ STUDIO_DRAIN_SECONDS: '-1' })).toThrow(/STUDIO_DRAIN_SECONDS/);
    expect(() => parseEnv({ STUDIO_DRAIN_SECONDS: '7200' })).toThrow(/STUDIO_DRAIN_SECONDS: .*3600/);
    expect(() => parseEnv({ STUDIO_MAX_BATCH_CALLS: '0' })).toThrow(/STUDIO_MAX_BATCH_CALLS/);
  });

  it('runs single-box by default; the cluster roles need PostgreSQL and the shared keys, from files too', () => {
    expect(parseEnv({})).toMatchObject({ role: 'all', cluster: null });
    expect(() => parseEnv({ STUDIO_ROLE: 'api' })).toThrow(
      /STUDIO_ROLE=api needs DATABASE_URL .*STUDIO_CLUSTER_SECRET or STUDIO_CLUSTER_SECRET_FILE, STUDIO_JWT_SECRET/,
    );
    expect(() => parseEnv({ STUDIO_ROLE: 'primary' })).toThrow(/STUDIO_ROLE/);
    const dir = mkdtempSync(join(tmpdir(), 'studio-env-'));
    try {
      const secret = (name: string, value: string) => {
        writeFileSync(join(dir, name), `${value}\n`);
        return join(dir, name);
      };
      const node = parseEnv({
        STUDIO_ROLE: 'node',
        STUDIO_PORT: '4100',
        DATABASE_URL_FILE: secret('db', 'postgres://studio@db/studio'),
        STUDIO_CLUSTER_SECRET_FILE: secret('cluster', CLUSTER_SECRET),
        STUDIO_JWT_SECRET_FILE: secret('jwt', 'j'.repeat(48)),
        STUDIO_SECRETS_KEY: 'A'.repeat(43),
        STUDIO_SWARM_NODE_ID: 'x1y2z3',
      });
      expect(node).toMatchObject({
        role: 'node',
        databaseUrl: 'postgres://studio@db/studio',
        jwtSecret: 'j'.repeat(48),
        cluster: { secret: CLUSTER_SECRET, swarmNodeId: 'x1y2z3' },
      });
      expect(node.cluster?.nodeUrl).toBeNull(); // the address it listens on
      expect(() => parseEnv({ STUDIO_NODE_URL: 'http://node-1:4100/path' })).toThrow(/STUDIO_NODE_URL/);
      expect(() =>
        parseEnv({ STUDIO_JWT_SECRET: 'j'.repeat(48), STUDIO_JWT_SECRET_FILE: secret('j2', 'x') }),
      ).toThrow(/set STUDIO_JWT_SECRET or STUDIO_JWT_SECRET_FILE, not both/);
      expect(() => parseEnv({ STUDIO_CLUSTER_SECRET_FILE: join(dir, 'missing') })).toThrow(
        /STUDIO_CLUSTER_SECRET_FILE: cannot read .*missing \(ENOENT\)/,
      );
      expect(() => parseEnv({ STUDIO_CLUSTER_SECRET: 'short' })).toThrow(/at least 32 characters/);
      const cluster = { DATABASE_URL: 'postgres://db/s', STUDIO_JWT_SECRET: 'j'.repeat(48) };
      const keys = { ...cluster, STUDIO_SECRETS_KEY: 'A'.repeat(43), STUDIO_ROLE: 'api' };
      expect(() => parseEnv({ ...keys, STUDIO_CLUSTER_SECRET: 'c'.repeat(48) })).toThrow(
        /STUDIO_CLUSTER_SECRET: .*openssl rand/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
