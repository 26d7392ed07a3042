import { describe, expect, it } from 'vitest';
import { inputJsonSchema, studioTools } from './tools.ts';

const SID = 'ses_0123456789abcdefgh';
const byName = (name: string) => {
  const tool = studioTools.find((t) => t.name === name);
  if (!tool) throw new Error(`no tool ${name}`);
  return tool;
};
const parse = (name: string, args: unknown) => byName(name).input.safeParse(args);
const policyCode = (name: string, args: unknown) => {
  const r = parse(name, args);
  if (r.success) return 'accepted';
  const params = (r.error.issues[0] as { params?: { policyCode?: string } }).params;
  return params?.policyCode ?? r.error.issues[0]?.code;
};

describe('tool inputs are the policy schemas', () => {
  it('advertises an object JSON Schema for every tool, refusing unknown keys', () => {
    for (const tool of studioTools) {
      const schema = inputJsonSchema(tool);
      expect(schema.type).toBe('object');
      expect(schema.additionalProperties).toBe(false);
      expect(schema.$schema).toBeUndefined();
    }
  });

  it('refuses paths outside the workspace', () => {
    expect(policyCode('read_file', { sessionId: SID, path: '../x' })).toBe('PATH_TRAVERSAL');
    expect(policyCode('write_file', { sessionId: SID, path: '/etc/passwd', content: '' })).toBe(
      'PATH_ABSOLUTE',
    );
    expect(policyCode('list_files', { sessionId: SID, path: 'a/%2e%2e/b' })).toBe('PATH_TRAVERSAL');
    expect(policyCode('exec', { sessionId: SID, command: ['ls'], cwd: '../..' })).toBe('PATH_TRAVERSAL');
    expect(parse('list_files', { sessionId: SID }).data).toEqual({ sessionId: SID, path: '' });
  });

  it('refuses bad session ids, shell strings, dangerous env and over-long timeouts', () => {
    expect(parse('stop_session', { sessionId: 'ses_../../x' }).success).toBe(false);
    expect(parse('exec', { sessionId: SID, command: 'rm -rf /' }).success).toBe(false);
    expect(parse('exec', { sessionId: SID, command: ['sh'], env: { LD_PRELOAD: '/x.so' } }).success).toBe(
      false,
    );
    expect(parse('exec', { sessionId: SID, command: ['sh'], timeoutMs: 10 ** 9 }).success).toBe(false);
    expect(parse('exec', { sessionId: SID, command: ['sh', '-c', 'echo hi'], timeoutMs: 1000 }).success).toBe(
      true,
    );
  });

  it('refuses registry hosts in images and defaults the image later', () => {
    expect(parse('create_session', { image: 'localhost:5000/x' }).success).toBe(false);
    expect(parse('create_session', { privileged: true }).success).toBe(false);
    expect(parse('create_session', {}).data).toEqual({ backend: 'auto' });
  });

  it('checks preview ports and paths with the policy', () => {
    expect(policyCode('preview_fetch', { sessionId: SID, port: 22 })).toBe('PORT_BLOCKED');
    expect(policyCode('preview_fetch', { sessionId: SID, port: 80 })).toBe('PORT_BLOCKED');
    expect(policyCode('preview_fetch', { sessionId: SID, port: 10000 })).toBe('PORT_OUT_OF_RANGE');
    expect(parse('preview_fetch', { sessionId: SID, port: 3000, path: '//evil.example/' }).success).toBe(
      false,
    );
    expect(parse('preview_fetch', { sessionId: SID, port: '3000' }).data).toEqual({
      sessionId: SID,
      port: 3000,
      path: '/',
      maxBytes: 64 * 1024,
    });
  });

  it('bounds get_events', () => {
    expect(parse('get_events', { sessionId: SID, cursor: 'a b' }).success).toBe(false);
    expect(parse('get_events', { sessionId: SID, waitMs: 60_000 }).success).toBe(false);
    expect(parse('get_events', { sessionId: SID }).data).toEqual({
      sessionId: SID,
      waitMs: 1000,
      limit: 200,
    });
  });
});

describe('network tools', () => {
  it('create_session takes network settings, canonicalised by the policy', () => {
    expect(
      parse('create_session', {
        network: { mode: 'allowlist', allow: ['Registry.NPMJS.org.', '*.pypi.org', 'registry.npmjs.org'] },
      }).data,
    ).toEqual({
      backend: 'auto',
      network: { mode: 'allowlist', allow: ['registry.npmjs.org', '*.pypi.org'] },
    });
    expect(parse('create_session', { network: { mode: 'everything' } }).success).toBe(false);
  });

  it('set_network checks every allowlist entry with the egress rules', () => {
    expect(
      parse('set_network', { sessionId: SID, network: { mode: 'allowlist', allow: ['example.com:8443'] } })
        .data,
    ).toEqual({ sessionId: SID, network: { mode: 'allowlist', allow: ['example.com:8443'] } });
    expect(parse('set_network', { sessionId: SID, network: { mode: 'none' } }).data).toEqual({
      sessionId: SID,
      network: { mode: 'none', allow: [] },
    });
    for (const entry of ['localhost', '*.com', '10.0.0.1', 'exa mple.com'])
      expect(
        policyCode('set_network', { sessionId: SID, network: { mode: 'allowlist', allow: [entry] } }),
      ).toBe('HOST_INVALID');
    expect(parse('set_network', { sessionId: SID }).success).toBe(false);
  });

  it('check_egress takes a host and a port (default 443)', () => {
    expect(parse('check_egress', { sessionId: SID, host: 'example.com' }).data).toEqual({
      sessionId: SID,
      host: 'example.com',
      port: 443,
    });
    expect(parse('check_egress', { sessionId: SID, host: 'example.com', port: 70_000 }).success).toBe(false);
    expect(parse('check_egress', { sessionId: SID, host: '' }).success).toBe(false);
    expect(byName('check_egress').annotations.readOnlyHint).toBe(true);
  });
});

describe('secrets', () => {
  it('create_session takes secret names, checked, deduplicated and sorted by the policy', () => {
    expect(
      parse('create_session', { secrets: ['OPENAI_API_KEY', 'GITHUB_TOKEN', 'OPENAI_API_KEY'] }).data,
    ).toEqual({
      backend: 'auto',
      secrets: ['GITHUB_TOKEN', 'OPENAI_API_KEY'],
    });
    expect(policyCode('create_session', { secrets: ['openai_key'] })).toBe('SECRET_INVALID');
    // A name the loader reads could steer the programs given its placeholder.
    expect(policyCode('create_session', { secrets: ['LD_PRELOAD'] })).toBe('SECRET_INVALID');
    expect(byName('create_session').description).toMatch(/list_secrets/);
  });

  it('offers no tool that creates, changes or reads a secret value: only list_secrets, read-only', () => {
    expect(studioTools.map((t) => t.name).filter((name) => /secret/i.test(name))).toEqual(['list_secrets']);
    const list = byName('list_secrets');
    expect(list.annotations.readOnlyHint).toBe(true);
    expect(parse('list_secrets', {}).success).toBe(true);
    expect(parse('list_secrets', { name: 'OPENAI_API_KEY' }).success).toBe(false);
    expect(list.description).toMatch(/never their values/);
  });
});

describe('templates', () => {
  const FILE = { path: '/opt/hello/greeting.txt', content: 'hi' };

  it('create_session takes a template by name or id, or the older image, not both', () => {
    expect(parse('create_session', { template: 'node-api' }).data).toEqual({
      backend: 'auto',
      template: 'node-api',
    });
    expect(parse('create_session', { template: 'tpl_0123456789abcdefgh' }).success).toBe(true);
    expect(parse('create_session', { template: 'Node API' }).success).toBe(false);
    expect(parse('create_session', { template: 'node-api', image: 'studio-sandbox:latest' }).success).toBe(
      false,
    );
    const schema = inputJsonSchema(byName('create_session')) as unknown as {
      properties: Record<string, unknown>;
    };
    expect(schema.properties.template).toMatchObject({
      description: expect.stringMatching(/list_templates/),
    });
    expect(schema.properties.image).toMatchObject({ description: expect.stringMatching(/older way/) });
    expect(byName('create_session').description).toMatch(/`template`.*create_template.*list_templates/);
  });

  it('create_template takes a recipe at the top level and waits by default', () => {
    expect(
      parse('create_template', {
        name: 'hello',
        description: 'a greeting',
        files: [FILE],
        run: ['echo built > /opt/hello/built.txt'],
      }).data,
    ).toEqual({
      create: {
        name: 'hello',
        description: 'a greeting',
        spec: {
          files: [{ ...FILE, encoding: 'utf8', mode: 0o644, owner: 'studio' }],
          run: ['echo built > /opt/hello/built.txt'],
        },
      },
      wait: { wait: true, waitMs: 600_000 },
    });
  });

  it('create_template sends the Dockerfile and the working directory as written', () => {
    expect(
      parse('create_template', {
        name: 'from-docker',
        dockerfile: 'FROM default\nRUN echo hi\n',
        workdir: 'app',
        wait: false,
      }).data,
    ).toEqual({
      create: { name: 'from-docker', spec: { dockerfile: 'FROM default\nRUN echo hi\n', workdir: 'app' } },
      wait: { wait: false, waitMs: 600_000 },
    });
  });

  it('create_template refuses what the API would, with the policy code', () => {
    expect(parse('create_template', { name: 'x', dockerfile: 'FROM default', debian: ['jq'] }).success).toBe(
      false,
    );
    expect(policyCode('create_template', { name: 'x', files: [{ path: '/workspace/a', content: '' }] })).toBe(
      'TEMPLATE_INVALID',
    );
    expect(policyCode('create_template', { name: 'x', dockerfile: 'FROM default\nCOPY . /app' })).toBe(
      'TEMPLATE_INVALID',
    );
    // An apt option in a package name would run a command as root in the build.
    expect(parse('create_template', { name: 'x', debian: ['-oAPT::Update::Pre-Invoke::=id'] }).success).toBe(
      false,
    );
    expect(parse('create_template', { name: 'x', npm: ['git+ssh://evil.example/x'] }).success).toBe(false);
    expect(parse('create_template', { name: 'x', files: [FILE, FILE] }).success).toBe(false);
    expect(policyCode('create_template', { name: 'x', workdir: '../etc' })).toBe('PATH_TRAVERSAL');
    expect(parse('create_template', { name: 'Bad_Name' }).success).toBe(false);
    expect(parse('create_template', { name: 'x', waitMs: 10 }).success).toBe(false);
    expect(parse('create_template', { name: 'x', privileged: true }).success).toBe(false);
  });

  it('build_template and get_template name a template; list is read-only, delete destructive', () => {
    expect(parse('build_template', { template: 'hello' }).data).toEqual({
      template: 'hello',
      wait: true,
      waitMs: 600_000,
    });
    expect(parse('get_template', { template: '../x' }).success).toBe(false);
    expect(parse('delete_template', { template: 'tpl_0123456789abcdefgh' }).success).toBe(true);
    expect(byName('list_templates').annotations.readOnlyHint).toBe(true);
    expect(byName('get_template').annotations.readOnlyHint).toBe(true);
    expect(byName('delete_template').annotations.destructiveHint).toBe(true);
  });

  it('tells an agent how to use the result: the log, the outcome, the next call', () => {
    expect(byName('create_template').description).toMatch(/log/);
    expect(byName('create_template').description).toMatch(/wait: false.*get_template/);
    expect(byName('create_template').description).toMatch(/create_session with \{ "template"/);
    expect(byName('get_template').description).toMatch(/8 KiB/);
    expect(byName('list_templates').description).toMatch(/"default", the server's own image, is listed/);
    expect(byName('delete_template').description).toMatch(/INVALID_STATE/);
  });
});

describe('pause, fork and snapshots', () => {
  it('pause_session and resume_session take a session id and are idempotent', () => {
    for (const name of ['pause_session', 'resume_session']) {
      expect(parse(name, { sessionId: SID }).data).toEqual({ sessionId: SID });
      expect(parse(name, { sessionId: 'ses_../x' }).success).toBe(false);
      expect(byName(name).annotations.idempotentHint).toBe(true);
    }
  });

  it('tells an agent when to pause and that any call resumes a paused session', () => {
    const pause = byName('pause_session').description;
    expect(pause).toMatch(/between turns/);
    expect(pause).toMatch(/Any later tool call on it .* resumes it by itself/);
    expect(pause).toMatch(/none of the host's memory/);
    expect(byName('resume_session').description).toMatch(/RESTORE_FAILED.*start_session/);
    expect(byName('stop_session').description).toMatch(/pause_session/);
    expect(byName('get_events').description).toMatch(/session\.forked/);
  });

  it('fork_session makes 1 fork by default and at most 20 per call', () => {
    expect(parse('fork_session', { sessionId: SID }).data).toEqual({ sessionId: SID, count: 1 });
    expect(parse('fork_session', { sessionId: SID, count: 3 }).data).toEqual({ sessionId: SID, count: 3 });
    for (const count of [0, 21, 1.5, '2'])
      expect(parse('fork_session', { sessionId: SID, count }).success).toBe(false);
    expect(byName('fork_session').description).toMatch(/alternatives in parallel/);
    expect(byName('fork_session').description).toMatch(/forkIds/);
  });

  it('snapshot_session takes a name as templates have; delete and list name snapshots by name or id', () => {
    expect(parse('snapshot_session', { sessionId: SID, name: 'before-upgrade' }).data).toEqual({
      sessionId: SID,
      name: 'before-upgrade',
    });
    for (const name of ['', 'Before', '1st', 'a-', 'a/b', 'x'.repeat(64)])
      expect(parse('snapshot_session', { sessionId: SID, name }).success).toBe(false);
    expect(parse('delete_snapshot', { snapshot: 'snp-0123456789abcdef' }).success).toBe(true);
    expect(parse('delete_snapshot', { snapshot: 'before-upgrade' }).success).toBe(true);
    expect(parse('delete_snapshot', { snapshot: '../x' }).success).toBe(false);
    expect(parse('list_snapshots', {}).success).toBe(true);
    expect(parse('list_snapshots', { all: true }).success).toBe(false);
    expect(byName('list_snapshots').annotations.readOnlyHint).toBe(true);
    expect(byName('delete_snapshot').annotations.destructiveHint).toBe(true);
    expect(byName('snapshot_session').description).toMatch(/create_session \{ "fromSnapshot": name \}/);
  });

  it('create_session takes fromSnapshot (without template or image) and keepAwake', () => {
    expect(parse('create_session', { fromSnapshot: 'before-upgrade', keepAwake: true }).data).toEqual({
      backend: 'auto',
      fromSnapshot: 'before-upgrade',
      keepAwake: true,
    });
    expect(parse('create_session', { fromSnapshot: 'snp-0123456789abcdef' }).success).toBe(true);
    expect(parse('create_session', { fromSnapshot: 'Bad Name' }).success).toBe(false);
    expect(parse('create_session', { fromSnapshot: 'x', template: 'node-api' }).success).toBe(false);
    expect(parse('create_session', { fromSnapshot: 'x', image: 'studio-sandbox:latest' }).success).toBe(
      false,
    );
    expect(parse('create_session', { keepAwake: 'yes' }).success).toBe(false);
    const schema = inputJsonSchema(byName('create_session')) as unknown as {
      properties: Record<string, unknown>;
    };
    expect(schema.properties.fromSnapshot).toMatchObject({
      description: expect.stringMatching(/list_snapshots/),
    });
    expect(schema.properties.keepAwake).toMatchObject({ type: 'boolean' });
  });
});
