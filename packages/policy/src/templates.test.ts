import { describe, expect, it } from 'vitest';
import { isPolicyError } from './errors.ts';
import { parsePolicy } from './limits.ts';
import { sessionCreateInput } from './schemas.ts';
import {
  debianPackageSchema,
  npmPackageSchema,
  parseDockerfile,
  pipPackageSchema,
  templateCreateInput,
  templateFilePathSchema,
  templateRefSchema,
} from './templates.ts';

const ok = (schema: { safeParse(v: unknown): { success: boolean } }, v: unknown) =>
  schema.safeParse(v).success;

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isPolicyError(e)) return `${e.code}: ${e.message}`;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('template packages', () => {
  it('takes Debian names and versions, never an apt option or a shell word', () => {
    for (const p of ['jq', 'g++', 'libssl3', 'python3.11', 'jq=1.6-2.1'])
      expect(ok(debianPackageSchema, p)).toBe(true);
    for (const p of ['-o', '-oAPT::Update::Pre-Invoke::=id', 'jq;id', 'jq ', 'Jq', 'a', '$(id)', 'jq=1 2'])
      expect(ok(debianPackageSchema, p)).toBe(false);
  });

  it('takes registry npm packages only', () => {
    for (const p of ['typescript', '@scope/pkg', 'left-pad@1.3.0', 'vite@^5', 'x@>=1 <2'])
      expect(ok(npmPackageSchema, p)).toBe(true);
    for (const p of [
      '--prefix=/',
      'git+ssh://git@example.com/x.git',
      'https://example.com/x.tgz',
      'file:../x',
      'npm:other@1',
      'x;id',
      'x@1 ',
      'github:user/repo',
    ])
      expect(ok(npmPackageSchema, p)).toBe(false);
  });

  it('takes pip requirements without URLs or options', () => {
    for (const p of ['requests', 'requests[socks]', 'numpy==1.26.4', 'flask>=2,<3'])
      expect(ok(pipPackageSchema, p)).toBe(true);
    for (const p of ['-r', '--index-url=http://x', 'x @ https://e/x.whl', 'x; os_name=="nt"', './local'])
      expect(ok(pipPackageSchema, p)).toBe(false);
  });
});

describe('template files and refs', () => {
  it('keeps files out of what Studio mounts over, and canonical', () => {
    expect(templateFilePathSchema.parse('/etc/app.conf')).toBe('/etc/app.conf');
    expect(templateFilePathSchema.parse('/home/studio/.bashrc')).toBe('/home/studio/.bashrc');
    for (const p of [
      '/workspace/a',
      '/workspace',
      '/tmp/x',
      '/opt/studio/agent',
      '/proc/x',
      'etc/x',
      '/etc/../x',
      '/etc//x',
      '/etc/',
    ])
      expect(ok(templateFilePathSchema, p)).toBe(false);
    const r = templateFilePathSchema.safeParse('/workspace/app.js');
    expect(r.error?.issues[0]?.message).toMatch(/Studio mounts over at run time; put it elsewhere/);
  });

  it('names a template by id or by a DNS-label name', () => {
    for (const v of ['default', 'node-tools', 'tpl_abcdefghijklmnop'])
      expect(ok(templateRefSchema, v)).toBe(true);
    for (const v of ['Default', '-x', 'x-', 'a_b', 'tpl_short', '', 'a'.repeat(64)])
      expect(ok(templateRefSchema, v)).toBe(false);
  });

  it('parses a recipe with defaults, and bounds files', () => {
    const parsed = templateCreateInput.parse({
      name: 'tools',
      spec: {
        debian: ['jq'],
        npm: ['cowsay'],
        files: [{ path: '/opt/app/hello.txt', content: 'hi' }],
        run: ['echo built > /opt/app/built'],
        env: { GREETING: 'hello' },
        workdir: 'app',
        start: { command: 'node server.js', ready: { command: 'curl -sf localhost:3000' } },
      },
    });
    expect(parsed.spec).toMatchObject({
      files: [{ path: '/opt/app/hello.txt', encoding: 'utf8', mode: 0o644, owner: 'studio' }],
      workdir: 'app',
      start: { ready: { timeoutMs: 60_000 } },
    });
    const big = { path: '/opt/big', content: 'x'.repeat(1024 * 1024 + 1) };
    expect(ok(templateCreateInput, { name: 'x', spec: { files: [big] } })).toBe(false);
    expect(ok(templateCreateInput, { name: 'x', spec: { env: { LD_PRELOAD: '/x.so' } } })).toBe(false);
    expect(ok(templateCreateInput, { name: 'x', spec: { privileged: true } })).toBe(false);
    expect(ok(templateCreateInput, { name: 'x', spec: { workdir: '../etc' } })).toBe(false);
  });

  it('lets a session name a template, or an image as before', () => {
    expect(sessionCreateInput.parse({ template: 'tools' })).toMatchObject({
      template: 'tools',
      backend: 'auto',
    });
    expect(sessionCreateInput.parse({ image: 'studio-sandbox:latest' })).toMatchObject({
      image: 'studio-sandbox:latest',
    });
    expect(sessionCreateInput.parse({})).toEqual({ backend: 'auto' });
  });
});

describe('parseDockerfile', () => {
  it('reads FROM, RUN (both forms), ENV, ARG, WORKDIR, USER, CMD and HEALTHCHECK', () => {
    const d = parseDockerfile(
      [
        '# tools',
        'FROM default',
        'ARG VERSION=1.2',
        'ENV APP_HOME=/opt/app MODE="fast mode"',
        'RUN apt-get update && \\',
        '    apt-get install -y jq',
        'WORKDIR $APP_HOME',
        'USER studio',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a Dockerfile's own ${VAR}, not a JS template
        'RUN ["npm", "install", "left-pad@${VERSION}"]',
        'EXPOSE 3000',
        'CMD ["node", "server.js"]',
        'HEALTHCHECK --interval=5s CMD curl -sf http://localhost:3000/',
      ].join('\n'),
    );
    expect(d.from).toBe('default');
    expect(d.env).toEqual({ APP_HOME: '/opt/app', MODE: 'fast mode' });
    expect(d.workdir).toBe('/opt/app');
    expect(d.steps.filter((s) => s.kind === 'run')).toEqual([
      expect.objectContaining({
        command: ['/bin/sh', '-c', 'apt-get update && apt-get install -y jq'],
        user: undefined,
        workdir: '/',
        line: 5,
      }),
      expect.objectContaining({
        command: ['npm', 'install', 'left-pad@1.2'],
        user: 'studio',
        workdir: '/opt/app',
        line: 9,
      }),
    ]);
    expect(d.cmd).toBe("'node' 'server.js'");
    expect(d.healthcheck).toBe('curl -sf http://localhost:3000/');
  });

  it('refuses what it cannot build, naming the line and the fix', () => {
    expect(refusal(() => parseDockerfile('RUN true'))).toMatch(/line 1: the first instruction must be FROM/);
    expect(refusal(() => parseDockerfile('FROM default\nCOPY . /app'))).toMatch(
      /line 2: COPY needs a build context.*"files"/,
    );
    expect(refusal(() => parseDockerfile('FROM a AS b\nFROM c'))).toMatch(/FROM takes one name/);
    expect(refusal(() => parseDockerfile('FROM default\nFROM default'))).toMatch(/multi-stage/);
    expect(refusal(() => parseDockerfile('FROM default\nUSER nobody'))).toMatch(/two users, root and studio/);
    expect(refusal(() => parseDockerfile('FROM default\nRUN --mount=type=cache,target=/x true'))).toMatch(
      /RUN flags/,
    );
    expect(refusal(() => parseDockerfile('FROM default\nENV LD_PRELOAD=/x.so'))).toMatch(
      /LD_PRELOAD may not be set/,
    );
    expect(refusal(() => parseDockerfile('FROM default\nENTRYPOINT ["x"]'))).toMatch(
      /ENTRYPOINT is not supported/,
    );
    expect(refusal(() => parseDockerfile('FROM registry.example.com:5000/x'))).toMatch(
      /not a template name or a local image/,
    );
    expect(refusal(() => parseDockerfile('# nothing'))).toMatch(/no FROM/);
  });

  it('is part of templates.create', () => {
    const r = templateCreateInput.safeParse({ name: 'd', spec: { dockerfile: 'FROM default\nADD x /' } });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toMatch(/ADD needs a build context/);
  });
});

describe('template limits', () => {
  it('defaults to everyone building, bounded, from the package sources', () => {
    const p = parsePolicy(undefined);
    expect(p.templates).toMatchObject({ builders: 'everyone', maxPerUser: 10, buildCpus: 1 });
    expect(p.templates.sources).toContain('deb.debian.org');
    expect(
      parsePolicy({ templates: { builders: 'admins', sources: ['mirror.example.com:8080'] } }).templates
        .sources,
    ).toEqual(['mirror.example.com:8080']);
    expect(() => parsePolicy({ templates: { sources: ['10.0.0.0/8'] } })).toThrow(
      /templates.sources.0: must be a host name/,
    );
    expect(() => parsePolicy({ templates: { buildTimeoutMs: 1 } })).toThrow(/templates.buildTimeoutMs/);
  });
});
