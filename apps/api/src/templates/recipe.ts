import { createHash } from 'node:crypto';
import type { BuildStep } from '@studio/isolation-gvisor';
import { DEFAULT_TEMPLATE_NAME, type TemplateSpec, templateCreateInput } from '@studio/policy';

/** Bumped when the way a spec becomes build steps changes: every template then builds again. */
export const RECIPE_VERSION = 1;

/** What a session of a template gets besides its image: applied by the API to every exec and terminal. */
export interface TemplateRuntime {
  /** Environment every exec and terminal gets (a call's own `env` wins). */
  env: Record<string, string>;
  /** Default working directory, relative to /workspace ('' = the root). */
  workdir: string;
  /** Started when the session starts; create waits for `ready`. */
  start?: { command: string; ready?: { command: string; timeoutMs: number } };
}

/** A spec turned into what a build runs. */
export interface CompiledTemplate {
  /** The template (name or id) or host image the build starts from. */
  base: string;
  steps: BuildStep[];
  runtime: TemplateRuntime;
}

/** A stored spec parsed again with the policy's rules (it was checked at create; the rules may have changed). */
export function parseStoredSpec(spec: unknown): TemplateSpec {
  return templateCreateInput.shape.spec.parse(spec);
}

/**
 * A parsed spec as it is stored (and shown): what the user gave, with defaults filled in, that parses again to
 * the same spec (a Dockerfile as its text, the workspace root as no `workdir`).
 */
export function storableSpec(spec: TemplateSpec): Record<string, unknown> {
  if ('dockerfile' in spec) {
    const { dockerfile, workdir, ...rest } = spec;
    return { ...rest, dockerfile: dockerfile.text, ...(workdir ? { workdir } : {}) };
  }
  const { workdir, ...rest } = spec;
  return { ...rest, ...(workdir ? { workdir } : {}) };
}

// apt-get reads the package names as arguments of `sh -c`, never as shell text.
const APT_INSTALL =
  'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" && apt-get clean && rm -rf /var/lib/apt/lists/*';

const shell = (line: string): string[] => ['/bin/sh', '-c', line];

/**
 * The build steps of a spec: for a recipe, Debian packages (apt-get as root), npm packages (global, as root), pip
 * packages (system-wide, as root), files, then the build commands (as root) in that order; for a Dockerfile, its
 * RUN lines with their user, working directory and environment. Packages were validated by the policy (no option
 * or shell word can reach apt, npm or pip).
 */
export function compileTemplate(spec: TemplateSpec): CompiledTemplate {
  if ('dockerfile' in spec) {
    const d = spec.dockerfile;
    const steps: BuildStep[] = [];
    const made = new Set<string>(['/']);
    for (const step of d.steps) {
      if (step.kind !== 'run') continue;
      if (!made.has(step.workdir)) {
        // Docker creates a WORKDIR that does not exist; so does this build, as root, before the first RUN there.
        steps.push({
          kind: 'run',
          command: ['mkdir', '-p', '--', step.workdir],
          user: 'root',
          description: `WORKDIR ${step.workdir}`,
        });
        made.add(step.workdir);
      }
      steps.push({
        kind: 'run',
        command: step.command,
        user: step.user === 'studio' ? 'studio' : 'root',
        env: step.env,
        cwd: step.workdir,
        description: `line ${step.line}: ${step.text.length > 120 ? `${step.text.slice(0, 117)}...` : step.text}`,
      });
    }
    const start =
      spec.start ??
      (d.cmd === undefined
        ? undefined
        : {
            command: d.cmd,
            ...(d.healthcheck === undefined ? {} : { ready: { command: d.healthcheck, timeoutMs: 60_000 } }),
          });
    return {
      base: d.from,
      steps,
      runtime: { env: { ...d.env, ...spec.env }, workdir: spec.workdir ?? '', ...(start ? { start } : {}) },
    };
  }
  const steps: BuildStep[] = [];
  if (spec.debian?.length) {
    steps.push({
      kind: 'run',
      command: [...shell(APT_INSTALL), 'apt-install', ...spec.debian],
      user: 'root',
      description: `Debian packages: ${spec.debian.join(' ')}`,
    });
  }
  if (spec.npm?.length) {
    steps.push({
      kind: 'run',
      command: ['npm', 'install', '--global', '--no-fund', '--no-audit', '--no-update-notifier', ...spec.npm],
      user: 'root',
      description: `npm packages: ${spec.npm.join(' ')}`,
    });
  }
  if (spec.pip?.length) {
    steps.push({
      kind: 'run',
      // Debian marks its Python as externally managed (PEP 668); a template's image is its own, so system-wide.
      command: ['pip3', 'install', '--no-cache-dir', '--break-system-packages', '--', ...spec.pip],
      user: 'root',
      description: `pip packages: ${spec.pip.join(' ')}`,
    });
  }
  for (const f of spec.files ?? []) {
    steps.push({
      kind: 'file',
      path: f.path,
      content: f.encoding === 'base64' ? Buffer.from(f.content, 'base64') : Buffer.from(f.content, 'utf8'),
      mode: f.mode,
      owner: f.owner,
      description: `file ${f.path}`,
    });
  }
  for (const [i, line] of (spec.run ?? []).entries()) {
    steps.push({
      kind: 'run',
      command: shell(line),
      user: 'root',
      description: `run ${i + 1}: ${line.length > 120 ? `${line.slice(0, 117)}...` : line}`,
    });
  }
  return {
    base: spec.base ?? DEFAULT_TEMPLATE_NAME,
    steps,
    runtime: {
      env: spec.env ?? {},
      workdir: spec.workdir ?? '',
      ...(spec.start ? { start: spec.start } : {}),
    },
  };
}

/**
 * The content hash of a build: its base's identity and its steps (a file by its content's hash). Equal hashes build
 * the same image, so an unchanged template is not built again. The runtime settings are not part of it: they
 * change sessions, not the image.
 */
export function recipeHash(baseIdentity: string, steps: readonly BuildStep[]): string {
  const canonical = steps.map((s) =>
    s.kind === 'file'
      ? ['file', s.path, s.mode, s.owner, createHash('sha256').update(s.content).digest('hex')]
      : ['run', s.command, s.user, s.cwd ?? '/', Object.entries(s.env ?? {}).sort()],
  );
  return createHash('sha256')
    .update(JSON.stringify({ v: RECIPE_VERSION, base: baseIdentity, steps: canonical }))
    .digest('hex');
}
