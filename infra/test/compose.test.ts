import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { checkCompose } from './checks.ts';
import { INFRA, run, tempDir, which } from './helpers.ts';

const FILE = join(INFRA, 'compose', 'compose.yaml');
const doc = parse(readFileSync(FILE, 'utf8'));

// docker-compose (Debian's 1.29) or the compose plugin, when present, validates the file for real.
const composeV1 = which('docker-compose');
const composeV2 = !composeV1 && which('docker') && run('docker', ['compose', 'version']).status === 0;
if (!composeV1 && !composeV2)
  console.warn('no docker-compose here: the compose file is checked for structure only');

describe('compose.yaml', () => {
  it('passes the structural checks (socket only in api, secrets from files, health checks, restarts, volumes)', () => {
    expect(checkCompose(doc)).toEqual([]);
  });

  it('catches the Docker socket mounted into web, a plain password and a public port', () => {
    const bad = structuredClone(doc);
    bad.services.web.volumes = ['/var/run/docker.sock:/var/run/docker.sock'];
    bad.services.postgres.environment.POSTGRES_PASSWORD = 'hunter2';
    bad.services.postgres.ports = ['5432:5432'];
    delete bad.services.traefik.healthcheck;
    const problems = checkCompose(bad);
    expect(problems).toContain('service web mounts the Docker socket');
    expect(problems.some((p) => p.includes('sets POSTGRES_PASSWORD in its environment'))).toBe(true);
    expect(problems).toContain('service postgres publishes 5432:5432 beyond loopback');
    expect(problems).toContain('service traefik needs a health check');
  });

  it('catches the socket mounted into traefik in long syntax', () => {
    const bad = structuredClone(doc);
    bad.services.traefik.volumes.push({
      type: 'bind',
      source: '/run/docker.sock',
      target: '/var/run/docker.sock',
    });
    expect(checkCompose(bad)).toContain('service traefik mounts the Docker socket');
  });

  it('keeps the apps in the opt-in containers profile (the default layout runs them with systemd)', () => {
    expect(doc.services.api.profiles).toEqual(['containers']);
    expect(doc.services.web.profiles).toEqual(['containers']);
    expect(doc.services.traefik.profiles).toBeUndefined();
    expect(doc.services.postgres.profiles).toBeUndefined();
  });

  it.skipIf(!composeV1 && !composeV2)(
    'docker compose config accepts it, with and without the containers profile',
    () => {
      const etc = tempDir();
      for (const d of ['traefik', 'secrets', 'certs']) mkdirSync(join(etc, d));
      writeFileSync(join(etc, 'traefik/dns.env'), '');
      writeFileSync(join(etc, 'studio.env'), 'STUDIO_PORT=4000\n');
      for (const s of ['postgres_password', 'jwt_secret', 'admin_password', 'database_url']) {
        writeFileSync(join(etc, 'secrets', s), 'x\n');
      }
      const [cmd, pre] = composeV1 ? [composeV1, []] : ['docker', ['compose']];
      for (const profile of [[], ['--profile', 'containers']]) {
        const r = run(cmd as string, [...(pre as string[]), '-f', FILE, ...profile, 'config', '-q'], {
          STUDIO_ETC: etc,
        });
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
      }
    },
  );
});
