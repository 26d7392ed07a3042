import { z } from 'zod';
import { isAllowedEnvName } from './env-names.ts';
import { PolicyError } from './errors.ts';
import { LABEL_NAME } from './lib/names.ts';
import { findControlChar, hasLoneSurrogate, utf8ByteLength } from './lib/text.ts';
import { envNameSchema, viaPolicy } from './lib/via-policy.ts';
import { resolveWorkspacePath } from './paths.ts';

// Templates (issue 19): what a user may ask a build to put into an image. A build runs isolated (as root inside a
// gVisor sandbox, with no way out but the package sources the operator allows), so these rules do not guard the
// host from a build; they guard the *tools the build runs with the user's words* (apt-get, npm, pip, a shell
// wrapper) from option injection, keep a template's files out of the places Studio mounts over at run time, and
// bound what one template can cost to store and to parse.

/** The prefix of every template id, so ids of different kinds are never confused. */
export const TEMPLATE_ID_PREFIX = 'tpl_';

/** The name of the operator's image as a template: every session uses it unless it names another. */
export const DEFAULT_TEMPLATE_NAME = 'default';

/** Most Debian, npm or pip packages one template may list (each list). */
export const MAX_TEMPLATE_PACKAGES = 64;
/** Most files one template may carry. */
export const MAX_TEMPLATE_FILES = 64;
/** Most bytes of all of a template's files together (decoded). */
export const MAX_TEMPLATE_FILES_BYTES = 1024 * 1024;
/** Most build commands (`run` lines, or Dockerfile instructions) of one template. */
export const MAX_TEMPLATE_STEPS = 64;
/** Longest Dockerfile accepted. */
export const MAX_DOCKERFILE_CHARS = 64 * 1024;

const MAX_COMMAND_CHARS = 16 * 1024;
const MAX_ENV_VARS = 64;
const MAX_ENV_VALUE_CHARS = 8 * 1024;

/**
 * A template id: `tpl_` and 16-64 URL-safe characters. Security meaning: names a template, grants nothing; the API
 * still checks that the caller owns it or that it is shared.
 */
export const templateIdSchema = z
  .string()
  .max(TEMPLATE_ID_PREFIX.length + 64)
  .regex(/^tpl_[A-Za-z0-9_-]{16,64}$/, {
    error: 'template id must be tpl_ followed by 16-64 of A-Z a-z 0-9 _ -',
  });

/**
 * A template name: 1-63 of a-z 0-9 and inner '-', starting with a letter (a DNS label, so it fits an image tag,
 * a file name and a host name alike). Security meaning: one spelling per template; never an id's shape.
 */
export const templateNameSchema = z.string().max(63).regex(LABEL_NAME, {
  error: 'template name must be 1-63 of a-z 0-9 and -, start with a letter and not end with -',
});

/** A template named by id (`tpl_…`) or by name; see {@link templateIdSchema} and {@link templateNameSchema}. */
export const templateRefSchema = z.union([templateIdSchema, templateNameSchema], {
  error: 'template must be a template id (tpl_…) or a name (a-z 0-9 -, such as "default")',
});

// Debian policy's package name grammar (§5.6.1), with an optional `=version` (Debian's version characters).
const DEBIAN_PACKAGE = /^[a-z0-9][a-z0-9+.-]{1,99}(?:=[A-Za-z0-9.+~:-]{1,100})?$/;

/**
 * A Debian package for apt-get: `name` or `name=version`. Security meaning: starts with a letter or digit, so it
 * can never be read as an apt option (`-o APT::…` would run any command as root in the build), and holds no space
 * or shell character.
 */
export const debianPackageSchema = z.string().max(201).regex(DEBIAN_PACKAGE, {
  error: 'Debian package must be name or name=version (Debian package name characters)',
});

// npm names (scoped or not) with an optional @range of version characters. No URL, git, file: or alias forms.
const NPM_PACKAGE =
  /^(?:@[a-z0-9][a-z0-9._~-]{0,100}\/)?[a-z0-9][a-z0-9._~-]{0,213}(?:@[A-Za-z0-9.^~<>=|*+ -]{1,64})?$/;

/**
 * An npm package for `npm install -g`: `name`, `@scope/name`, with an optional `@version-or-range`. Security
 * meaning: only registry packages (no `git+ssh:`, `https:`, `file:` or `npm:` alias specs that would fetch from or
 * read elsewhere), never an npm option, no shell characters.
 */
export const npmPackageSchema = z
  .string()
  .max(300)
  .regex(NPM_PACKAGE, {
    error: 'npm package must be name or @scope/name with an optional @version (registry packages only)',
  })
  .refine((s) => !/\s$/.test(s) && !/@.*\s{2}/.test(s), { error: 'npm package version has stray spaces' });

// PEP 508 names with optional extras and version specifiers; no URLs (`name @ https://…`) and no markers.
const PIP_PACKAGE =
  /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?(?:\[[A-Za-z0-9._,-]{1,100}\])?(?:(?:===|==|!=|<=|>=|~=|<|>)[A-Za-z0-9.*+!-]{1,64}(?:,(?:===|==|!=|<=|>=|~=|<|>)[A-Za-z0-9.*+!-]{1,64}){0,4})?$/;

/**
 * A pip requirement: `name`, `name[extra]`, `name==1.2`, `name>=1,<2`. Security meaning: package index names only
 * (no direct URLs, paths or `-r`/`--index-url` options), no spaces or shell characters.
 */
export const pipPackageSchema = z.string().max(300).regex(PIP_PACKAGE, {
  error: 'pip package must be a name with optional [extras] and version specifiers (no URLs)',
});

/**
 * Directories a template's files may not go into: Studio mounts over them when a session runs (the workspace, /tmp,
 * the agent at /opt/studio) or the kernel provides them (/proc, /sys, /dev), so a file there would be hidden or
 * would shadow what Studio puts there.
 */
export const TEMPLATE_RESERVED_DIRS: readonly string[] = Object.freeze([
  '/workspace',
  '/tmp',
  '/opt/studio',
  '/proc',
  '/sys',
  '/dev',
]);

function checkImagePath(path: string): string {
  if (!path.startsWith('/')) {
    throw new PolicyError(
      'TEMPLATE_INVALID',
      `file path ${JSON.stringify(path)} must be absolute, such as /etc/app.conf`,
    );
  }
  if (findControlChar(path) !== -1 || hasLoneSurrogate(path) || path.includes('\\')) {
    throw new PolicyError('TEMPLATE_INVALID', 'file path must not contain control characters or backslashes');
  }
  const parts = path.split('/').slice(1);
  if (parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new PolicyError(
      'TEMPLATE_INVALID',
      `file path ${JSON.stringify(path)} must be canonical (no empty, '.' or '..' segments, no trailing '/')`,
    );
  }
  if (utf8ByteLength(path) > 1024 || parts.some((p) => utf8ByteLength(p) > 255)) {
    throw new PolicyError('TEMPLATE_INVALID', 'file path is too long (1024 bytes, 255 per name)');
  }
  const reserved = TEMPLATE_RESERVED_DIRS.find((d) => path === d || path.startsWith(`${d}/`));
  if (reserved !== undefined) {
    throw new PolicyError(
      'TEMPLATE_INVALID',
      `file path ${path} is under ${reserved}, which Studio mounts over at run time; put it elsewhere (for example /home/studio or /opt/app)`,
    );
  }
  return path;
}

/**
 * An absolute path inside a template's image: canonical, not under {@link TEMPLATE_RESERVED_DIRS}. Security
 * meaning: a template's file cannot hide under a mount or aim at the kernel's filesystems; the build itself is
 * what keeps it from reaching the host.
 */
export const templateFilePathSchema = z.string().min(1).max(1024).transform(viaPolicy(checkImagePath));

const commandSchema = z
  .string()
  .min(1)
  .max(MAX_COMMAND_CHARS)
  .refine((s) => !s.includes('\u0000') && !hasLoneSurrogate(s), {
    error: 'command must not contain NUL or broken Unicode',
  });

const envSchema = z
  .record(
    envNameSchema,
    z
      .string()
      .max(MAX_ENV_VALUE_CHARS)
      .refine((s) => !s.includes('\u0000'), { error: 'value must not contain NUL' }),
  )
  .refine((env) => Object.keys(env).length <= MAX_ENV_VARS, {
    error: `at most ${MAX_ENV_VARS} environment variables`,
  });

/** A file a template puts into its image. `content` is UTF-8 text, or base64 with `encoding: 'base64'`. */
const templateFileSchema = z.strictObject({
  path: templateFilePathSchema,
  content: z.string().max(Math.ceil((MAX_TEMPLATE_FILES_BYTES * 4) / 3) + 4),
  encoding: z.enum(['utf8', 'base64']).default('utf8'),
  /** Permission bits (no setuid, setgid or sticky): default 0644. */
  mode: z.int().min(0).max(0o777).default(0o644),
  /** Who owns it: the sandbox user (default) or root. */
  owner: z.enum(['studio', 'root']).default('studio'),
});

/** How a session of the template starts: a command left running, and a check create waits for. */
const startSchema = z.strictObject({
  /** Run with /bin/sh -c in the working directory when the session starts, and left running (a dev server). */
  command: commandSchema,
  /** Run with /bin/sh -c until it exits 0; `sessions.create` returns only then. */
  ready: z
    .strictObject({
      command: commandSchema,
      /** How long create waits for it. 1 s..10 min, default 60 s. */
      timeoutMs: z.int().min(1000).max(600_000).default(60_000),
    })
    .optional(),
});

/** What every template has, whichever way its image is built. */
const runtimeShape = {
  /** Environment variables every exec and terminal of a session gets (a call's own `env` wins). */
  env: envSchema.optional(),
  /** Where execs and terminals start, relative to /workspace: default the workspace root. */
  workdir: z
    .string()
    .max(1024)
    .transform(viaPolicy((p: string) => resolveWorkspacePath(p, { allowRoot: true })))
    .optional(),
  start: startSchema.optional(),
};

/**
 * The declarative recipe: a base template, then Debian packages, npm and pip packages, files and build commands,
 * applied in that order. Build commands run as root inside the build sandbox.
 */
export const templateRecipeSchema = z
  .strictObject({
    /** The template this one starts from, by id or name; default {@link DEFAULT_TEMPLATE_NAME}. */
    base: templateRefSchema.optional(),
    debian: z.array(debianPackageSchema).max(MAX_TEMPLATE_PACKAGES).optional(),
    npm: z.array(npmPackageSchema).max(MAX_TEMPLATE_PACKAGES).optional(),
    pip: z.array(pipPackageSchema).max(MAX_TEMPLATE_PACKAGES).optional(),
    files: z.array(templateFileSchema).max(MAX_TEMPLATE_FILES).optional(),
    run: z.array(commandSchema).max(MAX_TEMPLATE_STEPS).optional(),
    ...runtimeShape,
  })
  .superRefine((r, ctx) => {
    let bytes = 0;
    const seen = new Set<string>();
    for (const [i, f] of (r.files ?? []).entries()) {
      bytes += f.encoding === 'base64' ? Math.floor((f.content.length * 3) / 4) : utf8ByteLength(f.content);
      if (f.encoding === 'base64' && !/^[A-Za-z0-9+/]*={0,2}$/.test(f.content)) {
        ctx.addIssue({
          code: 'custom',
          path: ['files', i, 'content'],
          message: 'content is not valid base64',
        });
      }
      if (seen.has(f.path)) {
        ctx.addIssue({ code: 'custom', path: ['files', i, 'path'], message: `${f.path} is listed twice` });
      }
      seen.add(f.path);
    }
    if (bytes > MAX_TEMPLATE_FILES_BYTES) {
      ctx.addIssue({
        code: 'custom',
        path: ['files'],
        message: `files hold more than ${MAX_TEMPLATE_FILES_BYTES} bytes together; install large content with a package or a build command`,
      });
    }
  });

/** A template built from a Dockerfile (see {@link parseDockerfile} for what it may hold). */
export const templateDockerfileSchema = z.strictObject({
  dockerfile: z.string().min(1).max(MAX_DOCKERFILE_CHARS).transform(viaPolicy(parseDockerfile)),
  ...runtimeShape,
});

/** The declarative recipe, as {@link templateRecipeSchema} gives it. */
export type TemplateRecipe = z.output<typeof templateRecipeSchema>;
/** A Dockerfile template, its Dockerfile parsed. */
export type TemplateDockerfileSpec = z.output<typeof templateDockerfileSchema>;
/** What a template is made of: a recipe or a Dockerfile. */
export type TemplateSpec = TemplateRecipe | TemplateDockerfileSpec;

/**
 * A template's spec: a recipe ({@link templateRecipeSchema}) or `{ dockerfile }` ({@link templateDockerfileSchema}),
 * told apart by the `dockerfile` key so that each kind's errors are its own (a union would report the other kind's
 * "unknown key" instead of what is wrong).
 */
export const templateSpecSchema = z.unknown().transform((value, ctx): TemplateSpec => {
  const isDockerfile = typeof value === 'object' && value !== null && Object.hasOwn(value, 'dockerfile');
  const parsed = (isDockerfile ? templateDockerfileSchema : templateRecipeSchema).safeParse(value);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) ctx.addIssue({ ...issue, path: issue.path } as never);
  return z.NEVER;
});

/**
 * `templates.create`: `{ name, description?, shared?, spec }`. `shared` (admins only, checked by the API) makes the
 * template usable by everyone. Security meaning: every field bounded; packages, paths and commands parsed by the
 * rules above, a Dockerfile by {@link parseDockerfile}.
 */
export const templateCreateInput = z.strictObject({
  name: templateNameSchema,
  description: z
    .string()
    .max(500)
    .refine((s) => findControlChar(s.replace(/\n/g, ' ')) === -1, {
      error: 'description must not contain control characters',
    })
    .optional(),
  shared: z.boolean().optional(),
  spec: templateSpecSchema,
});

/** `templates.get` / `templates.delete` / `templates.logs`: `{ template }` by id or name. */
export const templateByRefInput = z.strictObject({ template: templateRefSchema });

/**
 * `templates.build`: `{ template, spec? }`: builds the template again, with a new spec when one is given (the
 * template keeps its name, id and last good build until the new one succeeds).
 */
export const templateBuildInput = z.strictObject({
  template: templateRefSchema,
  spec: templateSpecSchema.optional(),
});

/** `templates.build`'s input, parsed. */
export type TemplateBuildInput = z.output<typeof templateBuildInput>;

/** `templates.create`'s input before parsing. */
export type TemplateCreateInput = z.output<typeof templateCreateInput>;

// ------------------------------------------------------------------------------------------------ Dockerfile

/** One instruction of a parsed Dockerfile, in order. */
export type DockerfileStep =
  | {
      kind: 'run';
      command: string[];
      user: string | undefined;
      workdir: string;
      env: Record<string, string>;
      line: number;
      text: string;
    }
  | { kind: 'env'; name: string; value: string; line: number };

/** A Dockerfile as Studio builds it. */
export interface ParsedDockerfile {
  /** What `FROM` names: a template (by name or id) or an image already on the host. */
  from: string;
  steps: DockerfileStep[];
  /** `ENV` lines, in effect for sessions too. */
  env: Record<string, string>;
  /** The last `WORKDIR`, absolute. */
  workdir: string;
  /** `CMD` in shell form, as a start command. */
  cmd: string | undefined;
  /** `HEALTHCHECK CMD`, as a ready check. */
  healthcheck: string | undefined;
  /** The original text (kept so the template can be shown and rebuilt). */
  text: string;
}

const IGNORED_INSTRUCTIONS = new Set(['LABEL', 'EXPOSE', 'MAINTAINER', 'STOPSIGNAL', 'VOLUME', 'ONBUILD']);

function dockerfileError(line: number, message: string): PolicyError {
  return new PolicyError('TEMPLATE_INVALID', `Dockerfile line ${line}: ${message}`);
}

/** The exec form `["a", "b"]` as argv, or undefined when `rest` is shell form. */
function execForm(rest: string, line: number): string[] | undefined {
  if (!rest.startsWith('[')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(rest);
  } catch {
    throw dockerfileError(line, 'a JSON array (exec form) must be valid JSON, such as ["npm", "ci"]');
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((a) => typeof a === 'string')) {
    throw dockerfileError(line, 'the exec form must be a non-empty array of strings');
  }
  return parsed as string[];
}

function substitute(text: string, vars: Record<string, string>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (m, a, b) => {
    const name = (a ?? b) as string;
    return Object.hasOwn(vars, name) ? (vars[name] as string) : m;
  });
}

function envPairs(rest: string, line: number): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  if (!rest.includes('=')) {
    const m = /^(\S+)\s+(.*)$/.exec(rest);
    if (!m) throw dockerfileError(line, 'ENV needs a name and a value');
    pairs.push([m[1] as string, (m[2] as string).trim()]);
  } else {
    const re = /([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)\s*/gy;
    let m: RegExpExecArray | null;
    let consumed = 0;
    // biome-ignore lint/suspicious/noAssignInExpressions: the classic exec loop
    while ((m = re.exec(rest)) !== null && m[0] !== '') {
      let value = m[2] as string;
      if (value.startsWith('"')) value = value.slice(1, -1).replace(/\\(.)/g, '$1');
      else if (value.startsWith("'")) value = value.slice(1, -1);
      pairs.push([m[1] as string, value]);
      consumed = re.lastIndex;
    }
    if (consumed !== rest.length) throw dockerfileError(line, 'ENV must be NAME=value pairs');
  }
  for (const [name] of pairs) {
    if (!isAllowedEnvName(name))
      throw dockerfileError(
        line,
        `${name} may not be set (LD_*, BASH_FUNC_* and shell-startup variables are refused)`,
      );
  }
  return pairs;
}

function absoluteDir(dir: string, cwd: string, line: number): string {
  const joined = dir.startsWith('/') ? dir : `${cwd.replace(/\/$/, '')}/${dir}`;
  const out: string[] = [];
  for (const part of joined.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  const path = `/${out.join('/')}`;
  if (findControlChar(path) !== -1)
    throw dockerfileError(line, 'WORKDIR must not contain control characters');
  return path;
}

/**
 * Parses the Dockerfile subset Studio builds: `FROM` (once: a template name or id, or an image on the host),
 * `RUN` (shell or exec form), `ENV`, `ARG` (with a default; substituted in later lines), `WORKDIR`, `USER`
 * (root, studio, 0 or 1000), `CMD` (the start command) and `HEALTHCHECK CMD` (the ready check); `LABEL`, `EXPOSE`
 * and the like are accepted and ignored. Refused with the reason: `COPY`/`ADD` (a template has no build context:
 * use the recipe's `files`), multi-stage builds, `ENTRYPOINT`, `SHELL`, `RUN --mount` and other flags, parser
 * directives other than comments.
 *
 * Security meaning: the build runs in an isolated sandbox whatever the Dockerfile says; this parse bounds the
 * work (steps, size), keeps users to the two the image has, and turns the text into argv lists so no instruction
 * reaches a shell on the host.
 */
export function parseDockerfile(text: string): ParsedDockerfile {
  if (text.includes('\u0000') || hasLoneSurrogate(text)) {
    throw new PolicyError('TEMPLATE_INVALID', 'Dockerfile must be text without NUL or broken Unicode');
  }
  // Join continuation lines (a trailing backslash), remembering where each instruction started.
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  const instructions: Array<{ line: number; text: string }> = [];
  let current: { line: number; text: string } | undefined;
  for (const [i, raw] of lines.entries()) {
    const trimmed = raw.trim();
    if (current === undefined && (trimmed === '' || trimmed.startsWith('#'))) continue;
    if (current !== undefined && trimmed.startsWith('#')) continue;
    const continued = /\\\s*$/.test(raw);
    const body = continued ? raw.replace(/\\\s*$/, '') : raw;
    if (current === undefined) current = { line: i + 1, text: body.trim() };
    else current.text += ` ${body.trim()}`;
    if (!continued) {
      instructions.push(current);
      current = undefined;
    }
  }
  if (current !== undefined) instructions.push(current);
  if (instructions.length > MAX_TEMPLATE_STEPS + 16) {
    throw new PolicyError(
      'TEMPLATE_INVALID',
      `Dockerfile has more than ${MAX_TEMPLATE_STEPS + 16} instructions`,
    );
  }

  let from: string | undefined;
  const steps: DockerfileStep[] = [];
  const env: Record<string, string> = {};
  const args: Record<string, string> = {};
  let workdir = '/';
  let user: string | undefined;
  let cmd: string | undefined;
  let healthcheck: string | undefined;
  let runs = 0;
  for (const { line, text: instruction } of instructions) {
    const m = /^([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(instruction);
    if (!m) throw dockerfileError(line, `cannot read ${JSON.stringify(instruction.slice(0, 40))}`);
    const keyword = (m[1] as string).toUpperCase();
    const rest = substitute((m[2] ?? '').trim(), { ...args, ...env });
    if (from === undefined && keyword !== 'FROM' && keyword !== 'ARG') {
      throw dockerfileError(
        line,
        'the first instruction must be FROM (a template name, or an image on this host)',
      );
    }
    switch (keyword) {
      case 'FROM': {
        if (from !== undefined)
          throw dockerfileError(line, 'multi-stage builds are not supported: use one FROM');
        const parts = rest.split(/\s+/);
        if (parts.length !== 1 || parts[0] === '' || parts[0]?.startsWith('--')) {
          throw dockerfileError(line, 'FROM takes one name (no --platform, no AS stage)');
        }
        from = parts[0] as string;
        if (
          !/^[a-z0-9][a-z0-9._/-]{0,200}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/.test(from) ||
          from.includes('..')
        ) {
          throw dockerfileError(line, `FROM ${from} is not a template name or a local image name`);
        }
        break;
      }
      case 'RUN': {
        if (rest === '') throw dockerfileError(line, 'RUN needs a command');
        if (rest.startsWith('--'))
          throw dockerfileError(line, 'RUN flags (--mount, --network, --security) are not supported');
        runs += 1;
        if (runs > MAX_TEMPLATE_STEPS)
          throw dockerfileError(line, `more than ${MAX_TEMPLATE_STEPS} RUN instructions`);
        const argv = execForm(rest, line) ?? ['/bin/sh', '-c', rest];
        steps.push({ kind: 'run', command: argv, user, workdir, env: { ...env }, line, text: `RUN ${rest}` });
        break;
      }
      case 'ENV': {
        for (const [name, value] of envPairs(rest, line)) {
          env[name] = value;
          steps.push({ kind: 'env', name, value, line });
        }
        break;
      }
      case 'ARG': {
        const am = /^([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$/.exec(rest);
        if (!am) throw dockerfileError(line, 'ARG must be NAME or NAME=default');
        args[am[1] as string] = am[2] ?? '';
        break;
      }
      case 'WORKDIR':
        if (rest === '') throw dockerfileError(line, 'WORKDIR needs a directory');
        workdir = absoluteDir(rest, workdir, line);
        break;
      case 'USER': {
        const u = rest.split(':')[0];
        if (u === 'root' || u === '0') user = 'root';
        else if (u === 'studio' || u === '1000') user = 'studio';
        else throw dockerfileError(line, `USER ${rest}: the image has two users, root and studio (1000)`);
        break;
      }
      case 'CMD': {
        const argv = execForm(rest, line);
        cmd = argv ? argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ') : rest;
        break;
      }
      case 'HEALTHCHECK': {
        const hm = /^(?:--\S+\s+)*CMD\s+([\s\S]+)$/i.exec(rest);
        if (rest.toUpperCase() === 'NONE') healthcheck = undefined;
        else if (!hm) throw dockerfileError(line, 'HEALTHCHECK must be HEALTHCHECK CMD <command>');
        else {
          const argv = execForm((hm[1] as string).trim(), line);
          healthcheck = argv
            ? argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
            : (hm[1] as string).trim();
        }
        break;
      }
      case 'COPY':
      case 'ADD':
        throw dockerfileError(
          line,
          `${keyword} needs a build context, which templates do not have: put the files in a recipe's "files", or fetch them in a RUN step`,
        );
      case 'ENTRYPOINT':
      case 'SHELL':
        throw dockerfileError(
          line,
          `${keyword} is not supported: sessions run Studio's agent; use CMD for a start command`,
        );
      default:
        if (IGNORED_INSTRUCTIONS.has(keyword)) break;
        throw dockerfileError(line, `unknown instruction ${keyword}`);
    }
  }
  if (from === undefined) throw new PolicyError('TEMPLATE_INVALID', 'Dockerfile has no FROM line');
  return { from, steps, env, workdir, cmd, healthcheck, text };
}
