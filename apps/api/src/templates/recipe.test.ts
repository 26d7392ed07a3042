import { templateCreateInput } from '@studio/policy';
import { describe, expect, it } from 'vitest';
import { compileTemplate, parseStoredSpec, recipeHash, storableSpec } from './recipe.ts';

const spec = (s: unknown) => templateCreateInput.parse({ name: 't', spec: s }).spec;

describe('template recipes', () => {
  it('turns a recipe into steps in a fixed order, packages as arguments never as shell text', () => {
    const c = compileTemplate(
      spec({
        run: ['make install'],
        files: [{ path: '/opt/a.txt', content: 'aGk=', encoding: 'base64', owner: 'root', mode: 0o600 }],
        pip: ['requests==2.31.0'],
        npm: ['typescript@5'],
        debian: ['jq', 'tree'],
        env: { A: '1' },
        workdir: 'app',
        start: { command: 'npm start' },
      }),
    );
    expect(c.base).toBe('default');
    expect(c.steps.map((s) => s.description)).toEqual([
      'Debian packages: jq tree',
      'npm packages: typescript@5',
      'pip packages: requests==2.31.0',
      'file /opt/a.txt',
      'run 1: make install',
    ]);
    const apt = c.steps[0];
    expect(apt?.kind === 'run' && apt.command.slice(-3)).toEqual(['apt-install', 'jq', 'tree']);
    const file = c.steps[3];
    expect(file?.kind === 'file' && [Buffer.from(file.content).toString(), file.mode, file.owner]).toEqual([
      'hi',
      0o600,
      'root',
    ]);
    expect(c.runtime).toEqual({ env: { A: '1' }, workdir: 'app', start: { command: 'npm start' } });
  });

  it('turns a Dockerfile into its RUN steps, making each new WORKDIR first, CMD and HEALTHCHECK as the start', () => {
    const c = compileTemplate(
      spec({
        dockerfile:
          'FROM tools\nENV A=1\nWORKDIR /srv\nUSER studio\nRUN ["touch", "x"]\nCMD node app.js\nHEALTHCHECK CMD curl -sf localhost:3000',
      }),
    );
    expect(c.base).toBe('tools');
    expect(c.steps).toEqual([
      { kind: 'run', command: ['mkdir', '-p', '--', '/srv'], user: 'root', description: 'WORKDIR /srv' },
      expect.objectContaining({ command: ['touch', 'x'], user: 'studio', cwd: '/srv', env: { A: '1' } }),
    ]);
    expect(c.runtime).toEqual({
      env: { A: '1' },
      workdir: '',
      start: { command: 'node app.js', ready: { command: 'curl -sf localhost:3000', timeoutMs: 60_000 } },
    });
  });

  it('stores a spec in a form that parses again to the same build and settings', () => {
    for (const s of [
      spec({ dockerfile: 'FROM default\nRUN true', workdir: '.' }),
      spec({ debian: ['jq'], workdir: 'a/b', files: [{ path: '/etc/x', content: 'x' }] }),
      spec({ workdir: '.' }),
    ]) {
      const again = parseStoredSpec(JSON.parse(JSON.stringify(storableSpec(s))));
      expect(compileTemplate(again)).toEqual(compileTemplate(s));
    }
  });

  it('hashes what makes the image: base and steps, not the runtime settings', () => {
    const a = compileTemplate(spec({ run: ['echo a'], env: { X: '1' } }));
    const b = compileTemplate(spec({ run: ['echo a'], env: { X: '2' }, start: { command: 'sleep 1' } }));
    const c = compileTemplate(spec({ run: ['echo b'] }));
    expect(recipeHash('operator:x', a.steps)).toBe(recipeHash('operator:x', b.steps));
    expect(recipeHash('operator:x', a.steps)).not.toBe(recipeHash('operator:x', c.steps));
    expect(recipeHash('operator:x', a.steps)).not.toBe(recipeHash('operator:y', a.steps));
  });
});
