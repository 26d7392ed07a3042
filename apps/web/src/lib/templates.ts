import type { AppRouter } from '@studio/client';
import type { inferRouterOutputs } from '@trpc/server';

/**
 * The name of the operator's image as a template (`DEFAULT_TEMPLATE_NAME` of `@studio/policy/templates`, held
 * equal by the unit test): a copy, so the page does not bundle the policy's template schemas for one string.
 */
export const DEFAULT_TEMPLATE_NAME = 'default';

/** A template as the API lists it (`templates.list`): state, whether usable, size, spec, dates. */
export type Template = inferRouterOutputs<AppRouter>['templates']['list'][number];

/** One item of a template's live build log (`templates.logs`). */
export type BuildLogItem =
  inferRouterOutputs<AppRouter>['templates']['logs'] extends AsyncIterable<infer T> ? T : never;

/** The most build-log characters the page keeps (the API keeps 64 KiB; a reconnect replays that much). */
export const MAX_LOG_CHARS = 256 * 1024;

/**
 * Package names typed as a list: separated by spaces, commas or new lines, duplicates dropped. A comma before a
 * version operator stays: it joins pip's specifiers (`django>=5,<6`).
 */
export function splitList(text: string): string[] {
  return [...new Set(text.split(/\s+|,(?![<>=!~])/).filter((s) => s !== ''))];
}

/** Build commands, one a line: blank lines dropped, each line as typed (a shell line). */
export function splitLines(text: string): string[] {
  return text.split(/\r?\n/).filter((line) => line.trim() !== '');
}

/**
 * `NAME=value` lines as an environment (the value is everything after the first `=`, as typed); blank lines and
 * `#` comments are skipped. A line without `=` is an error naming its number, so nothing is guessed.
 */
export function parseEnvLines(text: string): { env: Record<string, string>; error: string | null } {
  const env: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (const [i, line] of lines.entries()) {
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const at = line.indexOf('=');
    if (at <= 0) return { env, error: `Environment line ${i + 1} is not NAME=value: ${line.trim()}` };
    env[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  return { env, error: null };
}

/** A file row of the recipe editor. */
export interface FileRow {
  path: string;
  content: string;
}

/** What the create form holds, as typed. */
export interface TemplateForm {
  mode: 'recipe' | 'dockerfile';
  base: string;
  debian: string;
  npm: string;
  pip: string;
  files: FileRow[];
  run: string;
  dockerfile: string;
  env: string;
  workdir: string;
  start: string;
  ready: string;
}

export const EMPTY_FORM: TemplateForm = {
  mode: 'recipe',
  base: DEFAULT_TEMPLATE_NAME,
  debian: '',
  npm: '',
  pip: '',
  files: [],
  run: '',
  dockerfile: 'FROM default\n',
  env: '',
  workdir: '',
  start: '',
  ready: '',
};

/**
 * The `spec` of `templates.create` from the form: only what was filled in (the API applies its defaults and
 * checks every field; its refusal names the field). A form the API could not read is an error here instead.
 */
export function specFromForm(form: TemplateForm): { spec: Record<string, unknown>; error: string | null } {
  const { env, error } = parseEnvLines(form.env);
  if (error) return { spec: {}, error };
  if (form.ready.trim() !== '' && form.start.trim() === '') {
    return { spec: {}, error: 'A ready check needs a start command.' };
  }
  const spec: Record<string, unknown> = {};
  if (form.mode === 'dockerfile') {
    spec.dockerfile = form.dockerfile;
  } else {
    if (form.base !== '' && form.base !== DEFAULT_TEMPLATE_NAME) spec.base = form.base;
    for (const key of ['debian', 'npm', 'pip'] as const) {
      const list = splitList(form[key]);
      if (list.length > 0) spec[key] = list;
    }
    const files = form.files.filter((f) => f.path.trim() !== '' || f.content !== '');
    if (files.length > 0) spec.files = files.map((f) => ({ path: f.path.trim(), content: f.content }));
    const run = splitLines(form.run);
    if (run.length > 0) spec.run = run;
  }
  if (Object.keys(env).length > 0) spec.env = env;
  if (form.workdir.trim() !== '') spec.workdir = form.workdir.trim();
  if (form.start.trim() !== '') {
    spec.start = {
      command: form.start.trim(),
      ...(form.ready.trim() !== '' ? { ready: { command: form.ready.trim() } } : {}),
    };
  }
  return { spec, error: null };
}

/** What a template is made of, for its detail view: each part a label and its lines. */
export function specSummary(spec: Record<string, unknown>): Array<{ label: string; lines: string[] }> {
  const parts: Array<{ label: string; lines: string[] }> = [];
  const strings = (value: unknown) =>
    Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
  const dockerfile = spec.dockerfile;
  // The API keeps a Dockerfile as its text, or parsed with the text beside it.
  const dockerText =
    typeof dockerfile === 'string'
      ? dockerfile
      : typeof dockerfile === 'object' && dockerfile !== null && 'text' in dockerfile
        ? String((dockerfile as { text: unknown }).text)
        : null;
  if (dockerText !== null)
    parts.push({ label: 'Dockerfile', lines: dockerText.replace(/\n$/, '').split('\n') });
  if (typeof spec.base === 'string') parts.push({ label: 'Base', lines: [spec.base] });
  for (const [key, label] of [
    ['debian', 'Debian packages'],
    ['npm', 'npm packages'],
    ['pip', 'pip packages'],
  ] as const) {
    const list = strings(spec[key]);
    if (list.length > 0) parts.push({ label, lines: [list.join(' ')] });
  }
  if (Array.isArray(spec.files) && spec.files.length > 0) {
    parts.push({
      label: 'Files',
      lines: spec.files.map((f: { path?: unknown }) => String(f.path ?? '')),
    });
  }
  const run = strings(spec.run);
  if (run.length > 0) parts.push({ label: 'Build commands', lines: run });
  if (typeof spec.env === 'object' && spec.env !== null) {
    const names = Object.keys(spec.env);
    if (names.length > 0) parts.push({ label: 'Environment', lines: [names.join(', ')] });
  }
  if (typeof spec.workdir === 'string' && spec.workdir !== '') {
    parts.push({ label: 'Working directory', lines: [`/workspace/${spec.workdir}`] });
  }
  const start = spec.start as { command?: unknown; ready?: { command?: unknown } } | undefined;
  if (start && typeof start.command === 'string') {
    parts.push({
      label: 'Start',
      lines: [
        start.command,
        ...(typeof start.ready?.command === 'string' ? [`ready when: ${start.ready.command}`] : []),
      ],
    });
  }
  return parts;
}
