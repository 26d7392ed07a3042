import { DEFAULT_TEMPLATE_NAME as POLICY_DEFAULT, templateCreateInput } from '@studio/policy/templates';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_TEMPLATE_NAME,
  EMPTY_FORM,
  parseEnvLines,
  specFromForm,
  specSummary,
  splitLines,
  splitList,
} from './templates.ts';

describe('templates on the page', () => {
  it("names the operator's image as the policy does", () => {
    expect(DEFAULT_TEMPLATE_NAME).toBe(POLICY_DEFAULT);
  });

  it('splits package lists on spaces and commas, keeping pip specifier commas', () => {
    expect(splitList(' jq,  curl\npostgresql-client jq ')).toEqual(['jq', 'curl', 'postgresql-client']);
    expect(splitList('django>=5,<6, requests')).toEqual(['django>=5,<6', 'requests']);
    expect(splitList('')).toEqual([]);
    expect(splitLines('make\n\n  \necho "a b"\r\n')).toEqual(['make', 'echo "a b"']);
  });

  it('reads NAME=value lines, and names a line that is not one', () => {
    expect(parseEnvLines('A=1\n# note\n\nB= two = 2 ')).toEqual({
      env: { A: '1', B: ' two = 2 ' },
      error: null,
    });
    expect(parseEnvLines('A=1\nnot a pair').error).toBe('Environment line 2 is not NAME=value: not a pair');
  });

  it('makes the spec of what was filled in, which the policy accepts', () => {
    const { spec, error } = specFromForm({
      ...EMPTY_FORM,
      files: [
        { path: ' /opt/hello/greeting.txt ', content: 'hello\n' },
        { path: '', content: '' },
      ],
      run: 'echo built > /opt/hello/built.txt\n',
      pip: 'requests',
    });
    expect(error).toBeNull();
    expect(spec).toEqual({
      pip: ['requests'],
      files: [{ path: '/opt/hello/greeting.txt', content: 'hello\n' }],
      run: ['echo built > /opt/hello/built.txt'],
    });
    expect(templateCreateInput.safeParse({ name: 'hello', spec }).success).toBe(true);
    expect(specFromForm(EMPTY_FORM).spec).toEqual({});
  });

  it('makes a Dockerfile spec with the settings both kinds have', () => {
    const { spec } = specFromForm({
      ...EMPTY_FORM,
      mode: 'dockerfile',
      debian: 'ignored',
      dockerfile: 'FROM default\nRUN echo hi\n',
      env: 'NODE_ENV=development',
      workdir: 'app',
      start: 'npm run dev',
      ready: 'curl -sf http://127.0.0.1:3000/',
    });
    expect(spec).toEqual({
      dockerfile: 'FROM default\nRUN echo hi\n',
      env: { NODE_ENV: 'development' },
      workdir: 'app',
      start: { command: 'npm run dev', ready: { command: 'curl -sf http://127.0.0.1:3000/' } },
    });
    expect(templateCreateInput.safeParse({ name: 'dev', spec }).success).toBe(true);
    expect(specFromForm({ ...EMPTY_FORM, ready: 'true' }).error).toBe('A ready check needs a start command.');
  });

  it('summarises a spec for the detail view', () => {
    expect(
      specSummary({
        base: 'node-api',
        debian: ['jq'],
        files: [{ path: '/etc/a', content: 'x' }],
        run: ['make'],
        env: { A: '1' },
        workdir: 'app',
        start: { command: 'npm start', ready: { command: 'true' } },
      }),
    ).toEqual([
      { label: 'Base', lines: ['node-api'] },
      { label: 'Debian packages', lines: ['jq'] },
      { label: 'Files', lines: ['/etc/a'] },
      { label: 'Build commands', lines: ['make'] },
      { label: 'Environment', lines: ['A'] },
      { label: 'Working directory', lines: ['/workspace/app'] },
      { label: 'Start', lines: ['npm start', 'ready when: true'] },
    ]);
    // A Dockerfile as text, or parsed with its text beside it.
    expect(specSummary({ dockerfile: { from: 'default', text: 'FROM default\nRUN x\n' } })).toEqual([
      { label: 'Dockerfile', lines: ['FROM default', 'RUN x'] },
    ]);
  });
});
