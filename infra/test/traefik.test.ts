import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { checkTraefikDynamic, checkTraefikStatic, matchRouters, PREVIEW_AUTH_PATH } from './checks.ts';
import { INFRA, run, tempDir, which } from './helpers.ts';

const DOMAIN = 'studio.example.com';
// Previews on a registrable domain of their own (setup-host refuses one on the IDE's site).
const PREVIEW = 'studio-preview.net';
const SETUP = join(INFRA, 'host', 'setup-host.sh');

function render(tls: 'acme' | 'provided'): { dir: string; static: unknown; dynamic: unknown; text: string } {
  const dir = tempDir();
  const args = [SETUP, '--render', dir, '--domain', DOMAIN, '--preview-domain', PREVIEW, '--tls', tls];
  if (tls === 'acme') args.push('--acme-email', 'ops@example.com', '--dns-provider', 'cloudflare');
  const r = run('bash', args);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const text =
    readFileSync(join(dir, 'traefik.yml'), 'utf8') + readFileSync(join(dir, 'dynamic/studio.yml'), 'utf8');
  return {
    dir,
    static: parse(readFileSync(join(dir, 'traefik.yml'), 'utf8')),
    dynamic: parse(readFileSync(join(dir, 'dynamic/studio.yml'), 'utf8')),
    text,
  };
}

const traefik = which('traefik');
if (!traefik) console.warn('no Traefik binary here: the Traefik configuration is checked for structure only');

describe('Traefik configuration', () => {
  it('templates are valid YAML before rendering', () => {
    for (const f of ['traefik.yml.in', 'dynamic/studio.yml.in', 'dynamic/certificates.yml.in']) {
      expect(() => parse(readFileSync(join(INFRA, 'traefik', f), 'utf8'))).not.toThrow();
    }
  });

  for (const tls of ['acme', 'provided'] as const) {
    describe(`rendered with --tls ${tls}`, () => {
      const out = render(tls);
      const acme = tls === 'acme';

      it('leaves no placeholder behind', () => {
        expect(out.text).not.toMatch(/@[A-Z_]+@/);
      });

      it('static: HTTP redirects to HTTPS, no dashboard, no Docker provider, logs without credentials', () => {
        expect(checkTraefikStatic(out.static, acme)).toEqual([]);
      });

      it('dynamic: TLS and HSTS on every router, API, terminal, web and preview routes, no logged token', () => {
        expect(checkTraefikDynamic(out.dynamic, { domain: DOMAIN, previewDomain: PREVIEW, acme })).toEqual(
          [],
        );
      });

      it(acme ? 'requests the preview wildcard through DNS-01' : 'loads the provided certificates', () => {
        if (acme) {
          expect(out.text).toContain('provider: "cloudflare"');
          expect(existsSync(join(out.dir, 'dynamic/certificates.yml'))).toBe(false);
        } else {
          const certs = parse(readFileSync(join(out.dir, 'dynamic/certificates.yml'), 'utf8'));
          expect(certs.tls.certificates).toHaveLength(2);
          expect(out.text).not.toContain('certResolver');
        }
      });
    });
  }

  it('routes each request kind to the right place', () => {
    const { dynamic } = render('acme');
    expect(matchRouters(dynamic, DOMAIN, '/trpc/sessions.create')[0]).toBe('studio-api');
    expect(matchRouters(dynamic, DOMAIN, '/terminal')[0]).toBe('studio-api');
    expect(matchRouters(dynamic, DOMAIN, '/e2b/sandboxes')[0]).toBe('studio-api');
    expect(matchRouters(dynamic, `49983-${'0'.repeat(32)}.${PREVIEW}`, '/files')[0]).toBe('studio-preview');
    expect(matchRouters(dynamic, DOMAIN, '/metrics')[0]).toBe('studio-web');
    expect(matchRouters(dynamic, `4000-ses_x.${PREVIEW}`, PREVIEW_AUTH_PATH)[0]).toBe('studio-preview-grant');
    expect(matchRouters(dynamic, `4000-ses_x.${PREVIEW}`, '/app.js')[0]).toBe('studio-preview');
    expect(matchRouters(dynamic, `${PREVIEW}`, '/')).toEqual([]);
  });

  it('the checks catch a broken configuration', () => {
    const { static: s, dynamic: d } = render('acme');
    const st = structuredClone(s) as {
      api: { dashboard: boolean };
      accessLog: { fields: { headers: { names: Record<string, string> } } };
    };
    st.api.dashboard = true;
    st.accessLog.fields.headers.names.Authorization = 'keep';
    const sp = checkTraefikStatic(st, true);
    expect(sp).toContain('the dashboard must be off (api.dashboard: false, api.insecure not true)');
    expect(sp).toContain('accessLog must drop the Authorization header');

    type R = { observability?: unknown; rule: string; middlewares: string[] };
    const dy = structuredClone(d) as { http: { routers: Record<string, R> } };
    delete dy.http.routers['studio-preview-grant']?.observability;
    (dy.http.routers['studio-web'] as R).middlewares = [];
    (dy.http.routers['studio-api'] as R).rule =
      `Host(\`${DOMAIN}\`) && (PathPrefix(\`/trpc/\`) || Path(\`/metrics\`))`;
    const dp = checkTraefikDynamic(dy, { domain: DOMAIN, previewDomain: PREVIEW, acme: true });
    expect(dp.some((p) => p.includes('writes access logs'))).toBe(true);
    expect(dp).toContain('router studio-web must send HSTS (stsSeconds >= one year)');
    expect(dp).toContain('router studio-api exposes an internal endpoint');
    expect(dp.some((p) => p.includes('/terminal must reach studio-api'))).toBe(true);
  });

  it('refuses ACME without a DNS provider: the preview wildcard needs DNS-01', () => {
    const r = run('bash', [
      SETUP,
      '--render',
      tempDir(),
      '--domain',
      DOMAIN,
      '--preview-domain',
      PREVIEW,
      '--acme-email',
      'ops@example.com',
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('DNS-01');
  });

  it.skipIf(!traefik)('Traefik itself accepts the static configuration (needs a traefik binary)', () => {
    const { dir } = render('acme');
    const r = run(traefik as string, ['healthcheck', `--configFile=${join(dir, 'traefik.yml')}`]);
    // No Traefik is running, so the ping fails; a configuration error would fail earlier with another message.
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/field not found|cannot unmarshal|failed to decode/i);
  });
});
