import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IN_CI, INFRA, run, which } from './helpers.ts';

// The images of Studio's own services (issue 23: infra/swarm/images/build.sh), run on the host's dockerd as the
// stack will run them: studio-postgres initialised from a password file, studio-service as role `api` with every
// secret given as a *_FILE mount, on a network of their own. Read through dockerode, never from CLI output.

const REPO = join(INFRA, '..');
const BUILD = join(INFRA, 'swarm', 'images', 'build.sh');
// A first build runs mmdebstrap twice (about 3 minutes here, more while the other core is busy); later ones take
// seconds (the Debian parts are cached, an unchanged image is not imported again).
const BUILD_TIMEOUT_MS = 15 * 60_000;

function why(): string | undefined {
  if (process.getuid?.() !== 0) return 'building the images needs root (mmdebstrap writes a root filesystem)';
  if (run('docker', ['version', '--format', '{{.Server.Version}}']).status !== 0)
    return "the host's dockerd does not answer (bash infra/setup-runtimes.sh starts it)";
  if (!which('mmdebstrap')) return 'mmdebstrap not found (apt-get install mmdebstrap)';
  if (!existsSync(join(REPO, 'packages/sandbox-agent/agent/studio-agent')))
    return 'the sandbox agent is not built (bash packages/sandbox-agent/scripts/build-agent.sh)';
  return undefined;
}
const skip = why();
if (skip && IN_CI) throw new Error(`the swarm images are required in CI: ${skip}`);

const docker = new Docker();
const suffix = randomBytes(4).toString('hex');
const NETWORK = `studio-swimg-${suffix}`;
const VOLUME = `studio-swimg-pg-${suffix}`;
const created: Docker.Container[] = [];

/** stdout and stderr of a container without a TTY (Docker's 8-byte frame headers removed). */
async function logsOf(container: Docker.Container): Promise<{ stdout: string; stderr: string }> {
  const raw = (await container.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
  const out = { stdout: '', stderr: '' };
  for (let i = 0; i + 8 <= raw.length; ) {
    const size = raw.readUInt32BE(i + 4);
    const text = raw.subarray(i + 8, i + 8 + size).toString('utf8');
    if (raw[i] === 2) out.stderr += text;
    else out.stdout += text;
    i += 8 + size;
  }
  return out;
}

async function start(options: Docker.ContainerCreateOptions): Promise<Docker.Container> {
  const container = await docker.createContainer(options);
  created.push(container);
  await container.start();
  return container;
}

async function hostPort(container: Docker.Container, port: string): Promise<number> {
  const info = await container.inspect();
  const binding = info.NetworkSettings.Ports[port]?.[0];
  if (!binding) throw new Error(`${port} is not published`);
  return Number(binding.HostPort);
}

/** Polls `check` every 250 ms until it returns a value or `timeoutMs` passes; `describe` says what it waited for. */
async function until<T>(
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  describe: () => Promise<string>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${await describe()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const describeLogs = (c: Docker.Container) => async () => {
  const { stdout, stderr } = await logsOf(c).catch(() => ({ stdout: '', stderr: '(no logs)' }));
  const state = await c.inspect().then(
    (i) => `${i.State.Status} exit ${i.State.ExitCode}`,
    () => 'gone',
  );
  return `${state}\n${stderr.slice(-3000)}\n${stdout.slice(-2000)}`;
};

describe.skipIf(skip !== undefined)(`Studio's service images${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let tags: { service: string; postgres: string };
  const secrets = mkdtempSync('/tmp/studio-swimg-');
  const adminPassword = randomBytes(18).toString('base64url');
  const pgPassword = randomBytes(24).toString('base64url');
  let postgres: Docker.Container;

  /** Resolves once the server accepts the password over TCP on its published port. */
  const postgresReady = async (): Promise<void> => {
    const port = await hostPort(postgres, '5432/tcp');
    await until(
      async () => {
        const client = new pg.Client({
          host: '127.0.0.1',
          port,
          user: 'postgres',
          password: pgPassword,
          database: 'studio',
        });
        try {
          await client.connect();
          await client.query('select 1');
          return true;
        } finally {
          await client.end().catch(() => undefined);
        }
      },
      60_000,
      describeLogs(postgres),
    );
  };

  beforeAll(async () => {
    const r = spawnSync('bash', [BUILD], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` },
      timeout: BUILD_TIMEOUT_MS,
    });
    if (r.status !== 0) throw new Error(`build.sh failed (exit ${r.status}, ${r.error ?? ''}):\n${r.stderr}`);
    // The tags it built: --print-tags later could name another bundle (others edit apps/ in this checkout).
    const [service, database] = r.stdout.trim().split('\n');
    if (!service?.startsWith('studio-service:') || !database?.startsWith('studio-postgres:'))
      throw new Error(`build.sh printed no tags: ${r.stdout}${r.stderr}`);
    tags = { service, postgres: database };

    // The secrets as Swarm mounts them: one file each, the value with a final newline.
    const files: Record<string, string> = {
      postgres_password: pgPassword,
      database_url: `postgres://postgres:${pgPassword}@db:5432/studio`,
      jwt_secret: randomBytes(48).toString('base64'),
      secrets_key: randomBytes(32).toString('base64'),
      cluster_secret: randomBytes(48).toString('base64'),
      admin_password: adminPassword,
      wrong_database_url: 'postgres://postgres:not-the-password@db:5432/studio',
    };
    for (const [name, value] of Object.entries(files)) writeFileSync(join(secrets, name), `${value}\n`);
    chmodSync(secrets, 0o755);

    await docker.createNetwork({ Name: NETWORK, Driver: 'bridge' });
    await docker.createVolume({ Name: VOLUME });
    postgres = await start({
      Image: tags.postgres,
      name: `studio-swimg-db-${suffix}`,
      Env: ['POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password'],
      HostConfig: {
        Binds: [`${secrets}:/run/secrets:ro`, `${VOLUME}:/var/lib/postgresql/data`],
        PortBindings: { '5432/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] },
        NetworkMode: NETWORK,
      },
      NetworkingConfig: { EndpointsConfig: { [NETWORK]: { Aliases: ['db'] } } },
    });
    await postgresReady();
  }, BUILD_TIMEOUT_MS + 120_000);

  afterAll(async () => {
    for (const c of created) await c.remove({ force: true, v: true }).catch(() => undefined);
    await docker
      .getNetwork(NETWORK)
      .remove()
      .catch(() => undefined);
    await docker
      .getVolume(VOLUME)
      .remove()
      .catch(() => undefined);
    rmSync(secrets, { recursive: true, force: true });
  }, 60_000);

  it('studio-postgres refuses a wrong password over TCP', async () => {
    const port = await hostPort(postgres, '5432/tcp');
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: 'postgres',
      password: 'wrong',
      database: 'studio',
    });
    await expect(client.connect()).rejects.toThrow(/password authentication failed/);
    await client.end().catch(() => undefined);
  });

  it('studio-service as role api answers /healthz and /readyz and signs in the admin', async () => {
    const api = await start({
      Image: tags.service,
      name: `studio-swimg-api-${suffix}`,
      Env: [
        'STUDIO_ROLE=api',
        'STUDIO_HOST=0.0.0.0',
        'DATABASE_URL_FILE=/run/secrets/database_url',
        'STUDIO_JWT_SECRET_FILE=/run/secrets/jwt_secret',
        'STUDIO_SECRETS_KEY_FILE=/run/secrets/secrets_key',
        'STUDIO_CLUSTER_SECRET_FILE=/run/secrets/cluster_secret',
        'STUDIO_ADMIN_PASSWORD_FILE=/run/secrets/admin_password',
      ],
      HostConfig: {
        Binds: [`${secrets}:/run/secrets:ro`],
        PortBindings: { '4000/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] },
        NetworkMode: NETWORK,
      },
      ExposedPorts: { '4000/tcp': {} },
    });
    const url = `http://127.0.0.1:${await hostPort(api, '4000/tcp')}`;
    await until(
      async () => ((await fetch(`${url}/healthz`)).status === 200 ? true : undefined),
      90_000,
      describeLogs(api),
    );
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status, await describeLogs(api)()).toBe(200);
    expect(await ready.json()).toMatchObject({ ok: true, store: true, role: 'api' });

    const login = await fetch(`${url}/trpc/auth.login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: adminPassword }),
    });
    expect(login.status, await describeLogs(api)()).toBe(200);
    const body = (await login.json()) as { result: { data: { token: string } } };
    expect(body.result.data.token).toEqual(expect.any(String));
    // The password came from the file, so nothing printed it.
    const { stdout, stderr } = await logsOf(api);
    expect(`${stdout}${stderr}`).not.toContain(adminPassword);
  }, 150_000);

  it('studio-service with a wrong DATABASE_URL exits non-zero with one line naming the fix', async () => {
    const bad = await start({
      Image: tags.service,
      name: `studio-swimg-bad-${suffix}`,
      Env: [
        'STUDIO_ROLE=api',
        'DATABASE_URL_FILE=/run/secrets/wrong_database_url',
        'STUDIO_JWT_SECRET_FILE=/run/secrets/jwt_secret',
        'STUDIO_SECRETS_KEY_FILE=/run/secrets/secrets_key',
        'STUDIO_CLUSTER_SECRET_FILE=/run/secrets/cluster_secret',
      ],
      HostConfig: { Binds: [`${secrets}:/run/secrets:ro`], NetworkMode: NETWORK },
    });
    const { StatusCode } = (await Promise.race([
      bad.wait(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('still running after 60 s')), 60_000)),
    ])) as { StatusCode: number };
    const { stderr } = await logsOf(bad);
    expect(StatusCode, stderr).not.toBe(0);
    const lines = stderr.trim().split('\n');
    expect(lines, stderr).toHaveLength(1);
    // The fix it names: the server or the URL (the secret holding it).
    expect(lines[0]).toMatch(
      /^Claude Studio API did not start: .*password authentication failed.*database URL/,
    );
    expect(stderr).not.toMatch(/\n\s+at /);
    expect(stderr).not.toContain('not-the-password');
  }, 90_000);

  it('studio-postgres stops at once on docker stop (a fast shutdown) and keeps its data across a restart', async () => {
    const t0 = Date.now();
    await postgres.stop({ t: 20 });
    const stoppedMs = Date.now() - t0;
    const state = (await postgres.inspect()).State;
    // SIGTERM alone would be PostgreSQL's "smart" shutdown, waiting for the API's pooled connections until
    // Docker's SIGKILL (exit 137).
    expect(state.ExitCode, await describeLogs(postgres)()).toBe(0);
    expect(stoppedMs).toBeLessThan(10_000);
    await postgres.start();
    await postgresReady();
    const { stderr } = await logsOf(postgres);
    expect(stderr.match(/initialising/g)).toHaveLength(1);
  }, 90_000);
});
