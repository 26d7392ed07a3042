/**
 * Structural checks of the self-hosting configuration: the Traefik static and dynamic files and the compose
 * file. Each returns a list of problems (empty: fine), so the tests can prove both that the shipped files
 * pass and that a broken copy is caught. They encode the security rules of docs/self-hosting.md: TLS with
 * HSTS everywhere, no dashboard, no Docker socket outside the API, no token in an access log, secrets only
 * from files, previews on their own host names and port.
 */

type Doc = Record<string, unknown>;

function obj(value: unknown): Doc {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Doc) : {};
}

function at(value: unknown, ...path: string[]): unknown {
  let cur = value;
  for (const key of path) cur = obj(cur)[key];
  return cur;
}

/** The preview grant path of the API's preview proxy (apps/api/src/preview.ts PREVIEW_AUTH_PATH). */
export const PREVIEW_AUTH_PATH = '/__studio/auth';

/** Problems in a rendered Traefik static configuration (traefik.yml). `acme`: whether ACME is expected. */
export function checkTraefikStatic(config: unknown, acme: boolean): string[] {
  const problems: string[] = [];
  const web = at(config, 'entryPoints', 'web');
  const redirect = at(web, 'http', 'redirections', 'entryPoint');
  if (at(web, 'address') !== ':80') problems.push('entryPoints.web must listen on :80');
  if (
    at(redirect, 'to') !== 'websecure' ||
    at(redirect, 'scheme') !== 'https' ||
    at(redirect, 'permanent') !== true
  ) {
    problems.push('entryPoints.web must redirect permanently to websecure over https');
  }
  if (at(web, 'observability', 'accessLogs') !== false) {
    problems.push(
      'entryPoints.web only redirects and must not write access logs (a ?token= link may arrive there)',
    );
  }
  if (at(config, 'entryPoints', 'websecure', 'address') !== ':443')
    problems.push('entryPoints.websecure must be :443');
  const api = at(config, 'api');
  if (api !== undefined && (at(api, 'dashboard') !== false || at(api, 'insecure') === true)) {
    problems.push('the dashboard must be off (api.dashboard: false, api.insecure not true)');
  }
  if (at(config, 'providers', 'docker') !== undefined) {
    problems.push('no Docker provider: Traefik must not need the Docker socket');
  }
  const headers = at(config, 'accessLog', 'fields', 'headers');
  if (at(config, 'accessLog') === undefined) problems.push('access logs must be configured');
  if (at(headers, 'defaultMode') !== 'drop')
    problems.push('accessLog.fields.headers.defaultMode must be drop');
  for (const name of ['Authorization', 'Cookie', 'Proxy-Authorization', 'Referer']) {
    if (at(headers, 'names', name) !== 'drop') problems.push(`accessLog must drop the ${name} header`);
  }
  const resolvers = obj(at(config, 'certificatesResolvers'));
  if (acme) {
    if (
      at(resolvers, 'le', 'acme', 'tlsChallenge') === undefined &&
      at(resolvers, 'le', 'acme', 'httpChallenge') === undefined
    ) {
      problems.push('resolver le must use the TLS-ALPN or HTTP challenge');
    }
    const provider = at(resolvers, 'le-dns', 'acme', 'dnsChallenge', 'provider');
    if (typeof provider !== 'string' || provider === '' || provider.includes('@')) {
      problems.push(
        'resolver le-dns must use a DNS-01 challenge with a provider (the preview wildcard needs it)',
      );
    }
    for (const [name, r] of Object.entries(resolvers)) {
      const storage = at(r, 'acme', 'storage');
      if (typeof storage !== 'string' || !storage.startsWith('/var/lib/traefik/')) {
        problems.push(`resolver ${name} must store its account and certificates on the traefik-acme volume`);
      }
    }
  } else if (Object.keys(resolvers).length > 0) {
    problems.push('provided certificates: no ACME resolver may be configured');
  }
  return problems;
}

interface Router {
  name: string;
  rule: string;
  service: string;
  middlewares: string[];
  tls: unknown;
  entryPoints: unknown;
  accessLogs: unknown;
  priority: number;
}

function routers(config: unknown): Router[] {
  return Object.entries(obj(at(config, 'http', 'routers'))).map(([name, r]) => ({
    name,
    rule: String(at(r, 'rule') ?? ''),
    service: String(at(r, 'service') ?? ''),
    middlewares: (at(r, 'middlewares') as string[] | undefined) ?? [],
    tls: at(r, 'tls'),
    entryPoints: at(r, 'entryPoints'),
    accessLogs: at(r, 'observability', 'accessLogs'),
    priority: Number(at(r, 'priority') ?? 0),
  }));
}

/** The Go regular expressions of a rule's HostRegexp matchers, as JavaScript RegExps (same syntax here). */
export function hostRegexps(rule: string): RegExp[] {
  return [...rule.matchAll(/HostRegexp\(`([^`]+)`\)/g)].map((m) => new RegExp(m[1] as string, 'i'));
}

/** Which routers a request would match, highest priority first (Host, HostRegexp, Path and PathPrefix only). */
export function matchRouters(config: unknown, host: string, path: string): string[] {
  const matches = (rule: string): boolean => {
    // Evaluate the rule as a boolean expression over its matchers; enough for the rules shipped here.
    const expr = rule
      .replace(/HostRegexp\(`([^`]+)`\)/g, (_, re: string) => String(new RegExp(re, 'i').test(host)))
      .replace(/Host\(`([^`]+)`\)/g, (_, h: string) => String(h.toLowerCase() === host.toLowerCase()))
      .replace(/PathPrefix\(`([^`]+)`\)/g, (_, p: string) => String(path.startsWith(p)))
      .replace(/Path\(`([^`]+)`\)/g, (_, p: string) => String(path === p));
    if (!/^[\s()&|!truefals]*$/.test(expr)) throw new Error(`cannot evaluate rule ${rule}`);
    return new Function(`return (${expr});`)() as boolean;
  };
  return routers(config)
    .filter((r) => matches(r.rule))
    .sort((a, b) => b.priority - a.priority)
    .map((r) => r.name);
}

/** Problems in a rendered Traefik dynamic configuration (dynamic/studio.yml). */
export function checkTraefikDynamic(
  config: unknown,
  opts: { domain: string; previewDomain: string; acme: boolean },
): string[] {
  const problems: string[] = [];
  const all = routers(config);
  const byName = new Map(all.map((r) => [r.name, r]));
  const middlewares = obj(at(config, 'http', 'middlewares'));
  const services = obj(at(config, 'http', 'services'));
  const url = (service: string): string =>
    String(at((at(services, service, 'loadBalancer', 'servers') as unknown[] | undefined)?.[0], 'url') ?? '');
  const route = (host: string, path: string): Router | undefined => {
    const name = matchRouters(config, host, path)[0];
    return name === undefined ? undefined : byName.get(name);
  };

  for (const r of all) {
    if (JSON.stringify(r.entryPoints) !== '["websecure"]')
      problems.push(`router ${r.name} must be on websecure only`);
    if (r.tls === undefined) problems.push(`router ${r.name} must terminate TLS`);
    if (at(r.tls, 'options') !== 'studio') problems.push(`router ${r.name} must use the studio TLS options`);
    const hsts = r.middlewares.some((m) => Number(at(middlewares, m, 'headers', 'stsSeconds')) >= 31_536_000);
    if (!hsts) problems.push(`router ${r.name} must send HSTS (stsSeconds >= one year)`);
    for (const m of r.middlewares)
      if (!(m in middlewares)) problems.push(`router ${r.name}: unknown middleware ${m}`);
    if (!(r.service in services)) problems.push(`router ${r.name}: unknown service ${r.service}`);
    if (/metrics|healthz|readyz/.test(r.rule)) problems.push(`router ${r.name} exposes an internal endpoint`);
    if (opts.acme) {
      const resolver = at(r.tls, 'certResolver');
      if (resolver !== 'le' && resolver !== 'le-dns')
        problems.push(`router ${r.name} needs a certificate resolver`);
    } else if (at(r.tls, 'certResolver') !== undefined) {
      problems.push(`router ${r.name}: provided certificates, but it names an ACME resolver`);
    }
  }
  for (const [name, m] of Object.entries(middlewares)) {
    const h = at(m, 'headers');
    if (h === undefined) continue;
    if (at(h, 'forceSTSHeader') !== true) problems.push(`middleware ${name} must force the HSTS header`);
    if (at(h, 'contentTypeNosniff') !== true) problems.push(`middleware ${name} must set nosniff`);
  }
  const studio = byName.get('studio-web');
  if (studio && !studio.middlewares.some((m) => at(middlewares, m, 'headers', 'frameDeny') === true)) {
    problems.push('the IDE must not be framable (frameDeny)');
  }
  for (const [name, s] of Object.entries(services)) {
    for (const server of (at(s, 'loadBalancer', 'servers') as unknown[] | undefined) ?? []) {
      if (!String(at(server, 'url')).startsWith('http://127.0.0.1:')) {
        problems.push(`service ${name} must point at loopback (the apps bind 127.0.0.1)`);
      }
    }
  }
  if (String(at(config, 'tls', 'options', 'studio', 'minVersion')) !== 'VersionTLS12') {
    problems.push('TLS options studio must set minVersion VersionTLS12');
  }

  // Routing: what each kind of request reaches.
  const ide = opts.domain;
  const preview = `3000-ses_abc123.${opts.previewDomain}`;
  const expectService = (host: string, path: string, service: string, port: string): void => {
    const r = route(host, path);
    if (!r) problems.push(`no router for https://${host}${path}`);
    else if (r.service !== service || !url(r.service).endsWith(`:${port}`)) {
      problems.push(`https://${host}${path} must reach ${service} on port ${port}, not ${r.service}`);
    }
  };
  expectService(ide, '/trpc/sessions.list', 'studio-api', '4000');
  expectService(ide, '/terminal', 'studio-api', '4000');
  expectService(ide, '/e2b/v2/sandboxes', 'studio-api', '4000');
  expectService(
    `49983-${'a'.repeat(32)}.${opts.previewDomain}`,
    '/process.Process/Start',
    'studio-preview',
    '4001',
  );
  expectService(ide, '/', 'studio-web', '3000');
  expectService(ide, '/sessions/ses_1', 'studio-web', '3000');
  expectService(preview, '/', 'studio-preview', '4001');
  expectService(preview, PREVIEW_AUTH_PATH, 'studio-preview', '4001');
  if (route(`evil.example.org`, '/')) problems.push('a foreign host name must match no router');
  if (route(`a.b.${opts.previewDomain}`, '/'))
    problems.push('previews are one label deep: a.b.<preview domain> must not match');
  if (route(`x.${opts.previewDomain}.evil.example.org`, '/'))
    problems.push('the preview rule must be anchored at the end');
  for (const host of [ide, preview]) {
    const r = route(host, PREVIEW_AUTH_PATH);
    if (r && r.accessLogs !== false) {
      problems.push(
        `https://${host}${PREVIEW_AUTH_PATH}?token=... is served by ${r.name}, which writes access logs`,
      );
    }
  }
  const previewRouter = route(preview, '/');
  if (opts.acme && previewRouter) {
    const domains = at(previewRouter.tls, 'domains') as unknown[] | undefined;
    if (
      at(previewRouter.tls, 'certResolver') !== 'le-dns' ||
      at(domains?.[0], 'main') !== `*.${opts.previewDomain}`
    ) {
      problems.push('previews need the wildcard *.<preview domain> from the DNS-01 resolver le-dns');
    }
  }
  return problems;
}

const SECRET_NAME = /PASSWORD|SECRET|TOKEN|DATABASE_URL|API_KEY|PRIVATE/i;

function mountsSocket(volume: unknown): boolean {
  const text = typeof volume === 'string' ? volume : `${at(volume, 'source') ?? ''}`;
  return text.includes('docker.sock');
}

/** Problems in the production compose file. */
export function checkCompose(doc: unknown): string[] {
  const problems: string[] = [];
  const services = obj(at(doc, 'services'));
  for (const name of ['traefik', 'postgres', 'api', 'web']) {
    if (!(name in services)) problems.push(`service ${name} is missing`);
  }
  for (const [name, s] of Object.entries(services)) {
    const volumes = (at(s, 'volumes') as unknown[] | undefined) ?? [];
    if (volumes.some(mountsSocket) && name !== 'api')
      problems.push(`service ${name} mounts the Docker socket`);
    if (at(s, 'privileged') === true && name !== 'api') problems.push(`service ${name} is privileged`);
    if (!['always', 'unless-stopped', 'on-failure'].includes(String(at(s, 'restart')))) {
      problems.push(`service ${name} needs a restart policy`);
    }
    if (at(s, 'healthcheck', 'test') === undefined) problems.push(`service ${name} needs a health check`);
    const env = at(s, 'environment');
    const entries = Array.isArray(env)
      ? env.map((e) => String(e).split('=')[0] as string)
      : Object.keys(obj(env));
    for (const key of entries) {
      if (SECRET_NAME.test(key) && !key.endsWith('_FILE')) {
        problems.push(
          `service ${name} sets ${key} in its environment; secrets come from files (${key}_FILE)`,
        );
      }
    }
    for (const port of (at(s, 'ports') as unknown[] | undefined) ?? []) {
      if (!String(port).startsWith('127.0.0.1:'))
        problems.push(`service ${name} publishes ${String(port)} beyond loopback`);
    }
  }
  const api = services.api;
  if (api !== undefined) {
    if (!((at(api, 'volumes') as unknown[] | undefined) ?? []).some(mountsSocket)) {
      problems.push('the api service needs the Docker socket');
    }
    const data = ((at(api, 'volumes') as unknown[] | undefined) ?? []).find(
      (v) => typeof v === 'object' && String(at(v, 'target')).includes('studio'),
    );
    if (at(data, 'bind', 'propagation') !== 'rshared' || at(data, 'source') !== at(data, 'target')) {
      problems.push('the api data directory must be bind-mounted at the same path with rshared propagation');
    }
    if (!String(at(api, 'healthcheck', 'test')).includes('/readyz'))
      problems.push('the api health check must use /readyz');
  }
  if (services.traefik !== undefined && at(services.traefik, 'network_mode') !== 'host') {
    problems.push('traefik must use the host network to reach the apps on 127.0.0.1');
  }
  const pg = services.postgres;
  if (pg !== undefined) {
    if (at(pg, 'environment', 'POSTGRES_PASSWORD_FILE') !== '/run/secrets/postgres_password') {
      problems.push('postgres must read its password from the postgres_password secret');
    }
    const dataVolume = ((at(pg, 'volumes') as unknown[] | undefined) ?? []).some((v) =>
      String(v).endsWith(':/var/lib/postgresql/data'),
    );
    if (!dataVolume) problems.push('postgres needs a volume for /var/lib/postgresql/data');
  }
  for (const [name, secret] of Object.entries(obj(at(doc, 'secrets')))) {
    if (typeof at(secret, 'file') !== 'string') problems.push(`secret ${name} must come from a file`);
  }
  return problems;
}
