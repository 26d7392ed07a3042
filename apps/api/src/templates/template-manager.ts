import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { isStoreError, type Role, type Store, type TemplateRecord } from '@studio/db';
import type { BuildStep, RootfsBuildOptions, RootfsBuildResult } from '@studio/isolation-gvisor';
import {
  canonicalEgressList,
  DEFAULT_TEMPLATE_NAME,
  type Policy,
  TEMPLATE_ID_PREFIX,
  type TemplateCreateInput,
  type TemplateSpec,
} from '@studio/policy';
import { AppError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Logger } from '../core/logger.ts';
import { proxyEnvironment, TRUST_DIR, trustEnvironment } from '../egress/egress-gateway.ts';
import type { EgressEvent, EgressProxy } from '../egress/egress-proxy.ts';
import { BuildLog, type BuildLogItem } from './build-log.ts';
import {
  compileTemplate,
  parseStoredSpec,
  recipeHash,
  storableSpec,
  type TemplateRuntime,
} from './recipe.ts';

const run = promisify(execFile);

/** The repository part of every template image's name; the tag is the first 20 hex digits of its digest. */
export const TEMPLATE_IMAGE_REPO = 'studio-template';
const IMAGE_PATTERN = /^studio-template:([0-9a-f]{20})$/;

/** Builds root filesystems in isolation (the gVisor package's `RootfsBuilder`). */
export interface TemplateBuilder {
  build(options: RootfsBuildOptions): Promise<RootfsBuildResult>;
  cleanup(): Promise<string[]>;
}

/** The Docker daemon's images, for the Docker backend (the Docker package's backend has these). */
export interface TemplateImageStore {
  importImage(tarPath: string, ref: string, labels: Record<string, string>): Promise<void>;
  hasImage(ref: string): Promise<boolean>;
  removeImage(ref: string): Promise<boolean>;
  /** For builds `FROM` an image already on the host. */
  imageId(ref: string): Promise<string | undefined>;
  exportImage(ref: string, tarPath: string): Promise<void>;
}

/** Options for {@link TemplateManager}. */
export interface TemplateManagerOptions {
  store: Store;
  policy: Policy;
  /** Where built root filesystems live: `<dir>/images/<tag>/{rootfs,rootfs.tar}`, `<dir>/recipes/<hash>`. */
  dir: string;
  /** Absent: this server cannot build (the reason is `builderMissing`). */
  builder?: TemplateBuilder | undefined;
  builderMissing?: string;
  /** Present when sessions may run on Docker: every build is imported there too. */
  docker?: TemplateImageStore | undefined;
  /** The operator's images; the first is the default template. */
  operatorImages: readonly string[];
  /** The root filesystem of the operator's images (builds start from it). */
  operatorRootfs: () => string;
  /** The egress proxy builds reach their package sources through. */
  egress: EgressProxy;
  /** CAs (PEM) builds trust beside the image's roots: the operator's `STUDIO_EGRESS_CA_FILE`. */
  trustPem: readonly string[];
  logger: Logger;
  /**
   * In a cluster, this node's id (issue 23): its builds are recorded with it, their log is written to the store
   * as they run (a replica shows it), and reconciliation fails only its own interrupted builds (a build running on
   * another node is not this node's to fail). Absent on a single box: every interrupted build is this server's.
   */
  instanceId?: string | undefined;
}

/** How often a cluster node writes a running build's log to the store (ms). */
const LOG_FLUSH_MS = 1000;

/** Who asks: the user, and whether an admin (admins may share and manage shared templates). */
export interface TemplateActor {
  userId: string;
  role: Role;
}

/** What `templates.list/get` show. */
export interface TemplateView {
  id: string;
  name: string;
  description: string | null;
  owner: 'you' | 'shared';
  shared: boolean;
  state: 'building' | 'ready' | 'failed';
  /** Sessions can be made from it (a good build exists, even while a new one runs). */
  usable: boolean;
  image: string | null;
  sizeBytes: number | null;
  failure: string | null;
  spec: Record<string, unknown>;
  createdAt: string;
  builtAt: string | null;
}

/** What a session runs: the backend image, its template and the template's runtime settings. */
export interface SessionTemplate {
  image: string;
  templateId: string | null;
  runtime: TemplateRuntime | undefined;
}

interface RunningBuild {
  log: BuildLog;
  abort: AbortController;
  done: Promise<void>;
}

/**
 * The root filesystem directory of template image `image` under templates directory `dir`, or undefined when
 * `image` is not a template image or its build is not there (the gVisor backend's `resolveImage`).
 */
export function templateRootfs(dir: string, image: string): string | undefined {
  const m = IMAGE_PATTERN.exec(image);
  if (!m) return undefined;
  const imageDir = join(dir, 'images', m[1] as string);
  return existsSync(join(imageDir, '.complete')) ? join(imageDir, 'rootfs') : undefined;
}

/** The image name of a build digest (sha256 hex). */
export const templateImage = (digest: string) => `${TEMPLATE_IMAGE_REPO}:${digest.slice(0, 20)}`;

/**
 * Templates (issue 19): users' own images, built isolated and cached by content, usable on Docker and gVisor.
 * A build runs in the background (its log live through {@link follow}); its root filesystem is kept under `dir`
 * by digest (the gVisor backend runs it from there) and imported into Docker. A template names its last good
 * build, so a failed rebuild leaves it usable. Images no template names and no live session runs are removed.
 */
export class TemplateManager {
  readonly #o: TemplateManagerOptions;
  readonly #builds = new Map<string, RunningBuild>();
  readonly #runtimes = new Map<string, TemplateRuntime>();
  /** Builds running their sandbox now, and those waiting for a turn (policy `templates.concurrentBuilds`). */
  #running = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #waiting: Array<() => void> = [];
  #closed = false;

  constructor(options: TemplateManagerOptions) {
    this.#o = options;
  }

  /** The root filesystem of a template image, for the gVisor backend; undefined for other images. */
  rootfsOf(image: string): string | undefined {
    return templateRootfs(this.#o.dir, image);
  }

  /** A build's connection through the egress proxy, allowed or not: a line in its log (`sessionId` is `build-<id>`). */
  noteEgress(e: EgressEvent): void {
    const log = this.#builds.get(e.sessionId.replace(/^build-/, ''))?.log;
    log?.append(
      `# egress ${e.host}:${e.port} ${e.allowed ? `allowed (${e.bytesIn} bytes in)` : `refused: ${e.message ?? e.reason ?? 'denied'}`}\n`,
    );
  }

  view(t: TemplateRecord, userId: string): TemplateView {
    return {
      id: t.id,
      name: t.name,
      description: t.description,
      owner: t.ownerId === userId ? 'you' : 'shared',
      shared: t.shared,
      state: t.state,
      usable: t.digest !== null,
      image: t.digest === null ? null : templateImage(t.digest),
      sizeBytes: t.sizeBytes,
      failure: t.failure,
      spec: t.spec,
      createdAt: t.createdAt.toISOString(),
      builtAt: t.builtAt?.toISOString() ?? null,
    };
  }

  /**
   * The operator's image as a template (`default`): listed first, usable by everyone, built by the operator with
   * infra/image/build.sh rather than through the API.
   */
  operatorView(): TemplateView {
    return {
      id: DEFAULT_TEMPLATE_NAME,
      name: DEFAULT_TEMPLATE_NAME,
      description:
        "the operator's image: Debian 12 with Node LTS, npm, Python 3 with pip and venv, build tools, git",
      owner: 'shared',
      shared: true,
      state: 'ready',
      usable: true,
      image: this.#o.operatorImages[0] as string,
      sizeBytes: null,
      failure: null,
      spec: {},
      createdAt: new Date(0).toISOString(),
      builtAt: null,
    };
  }

  #notOperator(ref: string): void {
    if (ref === DEFAULT_TEMPLATE_NAME) {
      throw new AppError(
        'FORBIDDEN',
        `"${DEFAULT_TEMPLATE_NAME}" is the operator's image: it is built on the server with infra/image/build.sh, not through the API; make your own template from it ({ base: "${DEFAULT_TEMPLATE_NAME}" })`,
      );
    }
  }

  #mayBuild(actor: TemplateActor): void {
    if (this.#o.policy.templates.builders === 'admins' && actor.role !== 'admin') {
      throw new AppError(
        'FORBIDDEN',
        "on this server only admins build templates (the operator's STUDIO_POLICY templates.builders); use a shared template or ask an admin",
      );
    }
  }

  /** Creates a template and starts its first build; the record comes back at once (state `building`). */
  async create(actor: TemplateActor, input: TemplateCreateInput): Promise<TemplateRecord> {
    this.#mayBuild(actor);
    if (input.name === DEFAULT_TEMPLATE_NAME) {
      throw new AppError(
        'ALREADY_EXISTS',
        `"${DEFAULT_TEMPLATE_NAME}" is the operator's image; choose another name`,
      );
    }
    if (input.shared && actor.role !== 'admin') {
      throw new AppError('FORBIDDEN', 'only admins share templates; create it without shared');
    }
    const max =
      actor.role === 'admin'
        ? Math.max(this.#o.policy.templates.maxPerUser, 100)
        : this.#o.policy.templates.maxPerUser;
    const record = await this.#o.store
      .createTemplate(
        {
          id: newId(TEMPLATE_ID_PREFIX),
          ownerId: actor.userId,
          name: input.name,
          description: input.description ?? null,
          shared: input.shared ?? false,
          spec: storableSpec(input.spec),
          builderId: this.#o.instanceId ?? null,
        },
        max,
      )
      .catch((error: unknown) => {
        if (isStoreError(error, 'INVALID_INPUT')) throw new AppError('LIMIT_EXCEEDED', error.message);
        if (isStoreError(error, 'CONFLICT')) throw new AppError('ALREADY_EXISTS', error.message);
        throw error;
      });
    this.#start(record);
    return record;
  }

  /**
   * Builds a template again: with a new spec when one is given, else the same one (after a failure, or to pick up
   * a changed base). Refused while a build runs. Sessions keep the last good build until the new one is ready.
   */
  async build(actor: TemplateActor, ref: string, spec?: TemplateSpec): Promise<TemplateRecord> {
    this.#notOperator(ref);
    this.#mayBuild(actor);
    const found = await this.find(actor.userId, ref);
    this.#mayManage(actor, found);
    let record = await this.#o.store.startTemplateBuild(
      found.id,
      ['ready', 'failed'],
      this.#o.instanceId ?? null,
    );
    if (record && spec !== undefined) {
      record = await this.#o.store.updateTemplate(found.id, { spec: storableSpec(spec) });
      this.#runtimes.delete(found.id);
    }
    if (!record) {
      throw new AppError(
        'INVALID_STATE',
        `template ${found.name} is being built now; follow its log (templates.logs) until it ends`,
      );
    }
    this.#start(record);
    return record;
  }

  #mayManage(actor: TemplateActor, t: TemplateRecord): void {
    if (t.ownerId !== actor.userId && actor.role !== 'admin') {
      throw new AppError('FORBIDDEN', `template ${t.name} is shared by an admin; only admins change it`);
    }
  }

  async list(userId: string): Promise<TemplateRecord[]> {
    return this.#o.store.listTemplates(userId);
  }

  /** A template the user may use, by id or name (their own first, then shared ones); TEMPLATE_NOT_FOUND else. */
  async find(userId: string, ref: string): Promise<TemplateRecord> {
    if (ref.startsWith(TEMPLATE_ID_PREFIX)) {
      const t = await this.#o.store.getTemplate(ref);
      if (t && (t.ownerId === userId || t.shared)) return t;
    } else {
      const named = (await this.#o.store.listTemplates(userId)).filter((t) => t.name === ref);
      const own = named.find((t) => t.ownerId === userId);
      if (own) return own;
      if (named.length === 1) return named[0] as TemplateRecord;
      if (named.length > 1) {
        throw new AppError(
          'TEMPLATE_NOT_FOUND',
          `several shared templates are named ${ref} (${named.map((t) => t.id).join(', ')}); name one by its id`,
        );
      }
    }
    throw new AppError(
      'TEMPLATE_NOT_FOUND',
      `there is no template ${ref} that you can use; templates.list shows yours and the shared ones ("${DEFAULT_TEMPLATE_NAME}" is the operator's image)`,
    );
  }

  /** The live log of a template's current build, or undefined when none runs (its last log is on the record). */
  follow(templateId: string): BuildLog | undefined {
    return this.#builds.get(templateId)?.log;
  }

  /**
   * The log of a build running on another node (a cluster's replica serves `templates.logs` from the store, where
   * the builder writes it every second): what is there, each new part, then how the build ended.
   */
  async *followStored(
    templateId: string,
    signal: AbortSignal,
    pollMs = LOG_FLUSH_MS,
  ): AsyncGenerator<BuildLogItem> {
    let shown = '';
    while (!signal.aborted) {
      const t = await this.#o.store.getTemplate(templateId);
      if (t === undefined) {
        yield { type: 'end', state: 'failed', failure: 'the template was deleted' };
        return;
      }
      if (t.log !== shown) {
        // The stored log keeps its last 64 KiB: once it is cut at the front, say so and show what is there.
        yield { type: 'log', text: t.log.startsWith(shown) ? t.log.slice(shown.length) : `\n# …\n${t.log}` };
        shown = t.log;
      }
      if (t.state !== 'building') {
        yield { type: 'end', state: t.state, failure: t.failure };
        return;
      }
      await sleep(pollMs, undefined, { signal }).catch(() => undefined);
    }
  }

  /**
   * The builds this server holds, as `sha256:` digests of templates that name them: what a cluster node reports,
   * so placement sends a template's sessions (and builds from it) to a node that has it.
   */
  async held(): Promise<string[]> {
    const digests = new Set<string>();
    for (const t of await this.#o.store.allTemplates()) {
      if (t.digest !== null && existsSync(join(this.#imageDir(t.digest), '.complete')))
        digests.add(`sha256:${t.digest}`);
    }
    return [...digests];
  }

  /**
   * The digest (`sha256:…`) of the template a build for `userId` starts from (`spec.base`), or null when it starts
   * from the operator's image, a host image or something not found (the build itself then says what is wrong).
   */
  async baseDigest(userId: string, spec: TemplateSpec | Record<string, unknown>): Promise<string | null> {
    const ref = compileTemplate(parseStoredSpec(storableSpec(spec as TemplateSpec))).base;
    if (ref === DEFAULT_TEMPLATE_NAME || this.#o.operatorImages.includes(ref)) return null;
    const base = await this.find(userId, ref).catch(() => undefined);
    return base?.digest ? `sha256:${base.digest}` : null;
  }

  /** Deletes a template: refused while a live session runs it; its image goes when nothing else names it. */
  async delete(actor: TemplateActor, ref: string): Promise<TemplateRecord> {
    this.#notOperator(ref);
    const t = await this.find(actor.userId, ref);
    this.#mayManage(actor, t);
    this.#builds.get(t.id)?.abort.abort();
    await this.#builds.get(t.id)?.done;
    await this.#o.store.deleteTemplate(t.id).catch((error: unknown) => {
      if (isStoreError(error, 'CONFLICT'))
        throw new AppError(
          'INVALID_STATE',
          `template ${t.name} ${error.message.replace(/^the template /, '')}`,
        );
      throw error;
    });
    this.#runtimes.delete(t.id);
    await this.collect();
    return t;
  }

  /**
   * What a session asks for, resolved: a template (by id or name), an operator image by name (clients from before
   * templates), or the default template. TEMPLATE_NOT_FOUND / TEMPLATE_NOT_READY name the fix.
   */
  async forSession(
    userId: string,
    input: { template?: string | undefined; image?: string | undefined },
  ): Promise<SessionTemplate> {
    if (input.template !== undefined && input.image !== undefined) {
      throw new AppError(
        'INPUT_INVALID',
        'give template or image, not both (image is the older name for an operator template)',
      );
    }
    const ref = input.template ?? input.image;
    const defaultImage = this.#o.operatorImages[0] as string;
    if (ref === undefined || ref === DEFAULT_TEMPLATE_NAME)
      return { image: defaultImage, templateId: null, runtime: undefined };
    if (this.#o.operatorImages.includes(ref)) return { image: ref, templateId: null, runtime: undefined };
    if (input.image !== undefined) {
      throw new AppError(
        'TEMPLATE_NOT_FOUND',
        `image ${ref} is not offered here: use a template (templates.list), or one of the operator's images: ${this.#o.operatorImages.join(', ')}`,
      );
    }
    const t = await this.find(userId, ref);
    if (t.digest === null) {
      throw new AppError(
        'TEMPLATE_NOT_READY',
        t.state === 'building'
          ? `template ${t.name} is still being built: follow templates.logs (or poll templates.get) until it is ready, then create the session`
          : `template ${t.name} has no good build: its build failed (${t.failure ?? 'see its log'}); fix it and run templates.build`,
      );
    }
    return { image: templateImage(t.digest), templateId: t.id, runtime: this.#runtime(t) };
  }

  /** The runtime settings of a session's template (env, working directory, start command). */
  async runtimeOf(templateId: string | null): Promise<TemplateRuntime | undefined> {
    if (templateId === null) return undefined;
    const cached = this.#runtimes.get(templateId);
    if (cached) return cached;
    const t = await this.#o.store.getTemplate(templateId);
    return t ? this.#runtime(t) : undefined;
  }

  #runtime(t: TemplateRecord): TemplateRuntime {
    const cached = this.#runtimes.get(t.id);
    if (cached) return cached;
    const runtime = compileTemplate(parseStoredSpec(t.spec)).runtime;
    this.#runtimes.set(t.id, runtime);
    return runtime;
  }

  #start(record: TemplateRecord): void {
    const log = new BuildLog();
    const abort = new AbortController();
    const build: RunningBuild = { log, abort, done: Promise.resolve() };
    build.done = this.#run(record, log, abort.signal)
      .catch((error: unknown) =>
        this.#o.logger.error('template build bookkeeping failed', { templateId: record.id, error }),
      )
      .finally(() => {
        if (this.#builds.get(record.id) === build) this.#builds.delete(record.id);
      });
    this.#builds.set(record.id, build);
  }

  async #run(record: TemplateRecord, log: BuildLog, signal: AbortSignal): Promise<void> {
    const t0 = performance.now();
    this.#runtimes.delete(record.id);
    // In a cluster the log goes to the store as it grows: a replica (or a replica after this one) shows it.
    let flushed = '';
    let flushing: Promise<unknown> = Promise.resolve();
    const flush =
      this.#o.instanceId === undefined
        ? undefined
        : setInterval(() => {
            const text = log.text();
            if (text === flushed) return;
            flushed = text;
            flushing = this.#o.store
              .updateTemplate(record.id, { log: text })
              .catch((error: unknown) => this.#o.logger.warn('build log not stored', { error }));
          }, LOG_FLUSH_MS);
    // Before the outcome is stored: a flush landing after it would put back an older log.
    const stopFlushing = async () => {
      clearInterval(flush);
      await flushing;
    };
    try {
      const compiled = compileTemplate(parseStoredSpec(record.spec));
      const base = await this.#base(record, compiled.base);
      const hash = recipeHash(base.identity, compiled.steps);
      log.append(`# template ${record.name}: from ${compiled.base}, ${compiled.steps.length} step(s)\n`);
      let digest = await this.#cached(hash);
      if (digest !== undefined) {
        log.append(`# unchanged since its last build: using image ${templateImage(digest)}\n`);
      } else {
        digest = await this.#buildImage(record, base.rootfs, compiled.steps, log, signal);
        await mkdir(join(this.#o.dir, 'recipes'), { recursive: true });
        await writeFile(join(this.#o.dir, 'recipes', hash), `${digest}\n`);
      }
      await this.#toDocker(digest, record, log);
      const size = await readFile(join(this.#imageDir(digest), 'size'), 'utf8').catch(() => '');
      log.append(
        `# ready in ${((performance.now() - t0) / 1000).toFixed(1)} s: image ${templateImage(digest)}\n`,
      );
      await stopFlushing();
      await this.#o.store.updateTemplate(record.id, {
        state: 'ready',
        recipeHash: hash,
        digest,
        sizeBytes: Number.parseInt(size, 10) || null,
        failure: null,
        log: log.text(),
        builtAt: new Date(),
      });
      log.end('ready', null);
      await this.collect();
    } catch (error) {
      const failure = signal.aborted ? 'the build was cancelled' : failureOf(error);
      log.append(`# failed: ${failure}\n`);
      this.#o.logger.info('template build failed', { templateId: record.id, failure });
      await stopFlushing();
      await this.#o.store.updateTemplate(record.id, { state: 'failed', failure, log: log.text() });
      log.end('failed', failure);
    } finally {
      clearInterval(flush);
    }
  }

  /** The base a build starts from: the operator's image, or a template the owner may use (its last good build). */
  async #base(record: TemplateRecord, ref: string): Promise<{ rootfs: string; identity: string }> {
    if (ref === DEFAULT_TEMPLATE_NAME || this.#o.operatorImages.includes(ref)) {
      const rootfs = this.#o.operatorRootfs();
      // The operator's rootfs path names its recipe's hash (infra/image/build.sh): a new default image is a new base.
      return { rootfs, identity: `operator:${rootfs}` };
    }
    const base = await this.find(record.ownerId, ref).catch(async (error: unknown) => {
      // Not a template: an image already on the host (a Dockerfile's FROM), when Docker is here.
      const host = await this.#hostImage(ref);
      if (host) return host;
      throw error;
    });
    if ('rootfs' in base) return base;
    if (base.id === record.id)
      throw new AppError('INPUT_INVALID', 'a template cannot start from itself: name another base');
    if (base.digest === null) {
      throw new AppError(
        'TEMPLATE_NOT_READY',
        `its base template ${base.name} has no good build yet; build it first`,
      );
    }
    const rootfs = this.rootfsOf(templateImage(base.digest));
    if (rootfs === undefined) {
      throw new AppError(
        'TEMPLATE_NOT_READY',
        `the build of its base template ${base.name} is missing on this server; run templates.build on it`,
      );
    }
    return { rootfs, identity: `template:${base.digest}` };
  }

  /**
   * The root filesystem of image `ref` on the Docker host, exported once per image id into `<dir>/bases/`; undefined
   * when Docker is not here or has no such image. Its content is the image's: the build's output check refuses it
   * when it lacks what sessions need (the user studio, /workspace).
   */
  async #hostImage(ref: string): Promise<{ rootfs: string; identity: string } | undefined> {
    const docker = this.#o.docker;
    if (!docker || !/^[a-z0-9][a-z0-9._/-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/.test(ref)) return undefined;
    const id = await docker.imageId(ref);
    if (id === undefined) return undefined;
    const key = id.replace(/^sha256:/, '').slice(0, 20);
    const dir = join(this.#o.dir, 'bases', key);
    if (!existsSync(join(dir, '.complete'))) {
      const tmp = `${dir}.tmp-${process.pid}`;
      await rm(tmp, { recursive: true, force: true });
      await mkdir(join(tmp, 'rootfs'), { recursive: true });
      try {
        await docker.exportImage(ref, join(tmp, 'rootfs.tar'));
        await run('tar', ['--numeric-owner', '-xpf', join(tmp, 'rootfs.tar'), '-C', join(tmp, 'rootfs')]);
        await rm(join(tmp, 'rootfs.tar'), { force: true });
        // What Docker adds to every container: not part of the image.
        await rm(join(tmp, 'rootfs', '.dockerenv'), { force: true });
        await writeFile(join(tmp, '.complete'), `${id}\n`);
        await rm(dir, { recursive: true, force: true });
        await rename(tmp, dir);
      } catch (error) {
        await rm(tmp, { recursive: true, force: true });
        throw error;
      }
    }
    return { rootfs: join(dir, 'rootfs'), identity: `image:${id}` };
  }

  async #cached(hash: string): Promise<string | undefined> {
    const digest = (await readFile(join(this.#o.dir, 'recipes', hash), 'utf8').catch(() => '')).trim();
    if (!/^[0-9a-f]{64}$/.test(digest)) return undefined;
    return existsSync(join(this.#imageDir(digest), '.complete')) ? digest : undefined;
  }

  #imageDir(digest: string): string {
    return join(this.#o.dir, 'images', digest.slice(0, 20));
  }

  async #buildImage(
    record: TemplateRecord,
    base: string,
    steps: readonly BuildStep[],
    log: BuildLog,
    signal: AbortSignal,
  ): Promise<string> {
    const builder = this.#o.builder;
    if (!builder) {
      throw new AppError(
        'BACKEND_UNAVAILABLE',
        `this server cannot build templates: ${this.#o.builderMissing ?? 'builds run in gVisor (runsc), which is not available'}`,
      );
    }
    const limits = this.#o.policy.templates;
    await this.#turn(log, signal);
    try {
      return await this.#buildInTurn(builder, record, base, steps, log, signal);
    } finally {
      this.#running--;
      this.#waiting.shift()?.();
    }
  }

  /** Waits until fewer than `templates.concurrentBuilds` builds run (each takes memory and a core). */
  async #turn(log: BuildLog, signal: AbortSignal): Promise<void> {
    if (this.#running < this.#o.policy.templates.concurrentBuilds) {
      this.#running++;
      return;
    }
    log.append('# waiting for another build to finish\n');
    await new Promise<void>((resolve, reject) => {
      const go = () => {
        signal.removeEventListener('abort', cancel);
        this.#running++;
        resolve();
      };
      const cancel = () => {
        const i = this.#waiting.indexOf(go);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(new Error('the build was cancelled'));
      };
      this.#waiting.push(go);
      signal.addEventListener('abort', cancel, { once: true });
    });
  }

  async #buildInTurn(
    builder: TemplateBuilder,
    record: TemplateRecord,
    base: string,
    steps: readonly BuildStep[],
    log: BuildLog,
    signal: AbortSignal,
  ): Promise<string> {
    const limits = this.#o.policy.templates;
    const building = join(this.#o.dir, 'building', record.id);
    await rm(building, { recursive: true, force: true });
    await mkdir(join(this.#o.dir, 'building'), { recursive: true });
    const allow = canonicalEgressList([...limits.sources]);
    const trust = this.#o.trustPem.length > 0;
    const result = await builder.build({
      base,
      output: building,
      steps: [...(trust ? trustSteps(this.#o.trustPem) : []), ...steps],
      limits: {
        memoryBytes: limits.buildMemoryBytes,
        cpus: limits.buildCpus,
        pids: limits.buildPids,
        diskBytes: limits.maxBytes,
        timeoutMs: limits.buildTimeoutMs,
      },
      env: { DEBIAN_FRONTEND: 'noninteractive', ...(trust ? trustEnvironment() : {}) },
      egress: {
        onConnection: (socket: Duplex) =>
          this.#o.egress.handle(socket, {
            sessionId: `build-${record.id}`,
            ownerId: record.ownerId,
            settings: () => ({ mode: 'allowlist', allow }),
          }),
        env: (port: number) => proxyEnvironment(port),
      },
      onLog: (text: string) => log.append(text),
      signal,
    });
    const finalDir = this.#imageDir(result.digest);
    await mkdir(join(this.#o.dir, 'images'), { recursive: true });
    if (existsSync(join(finalDir, '.complete'))) {
      await rm(result.output, { recursive: true, force: true });
    } else {
      await rm(finalDir, { recursive: true, force: true });
      await rename(result.output, finalDir);
    }
    await writeFile(join(finalDir, 'size'), `${result.bytes}\n`);
    return result.digest;
  }

  async #toDocker(digest: string, record: TemplateRecord, log: BuildLog): Promise<void> {
    const docker = this.#o.docker;
    if (!docker) return;
    const image = templateImage(digest);
    if (await docker.hasImage(image)) return;
    log.append(`# importing ${image} into Docker\n`);
    await docker.importImage(join(this.#imageDir(digest), 'rootfs.tar'), image, {
      'studio.template.digest': digest,
      'studio.template': record.id,
    });
  }

  /**
   * Removes built images no template names and no live session runs (their directory and their Docker image),
   * recipe entries that point at them, and what interrupted builds left. Safe at any time no build runs for them.
   */
  async collect(): Promise<string[]> {
    const removed: string[] = [];
    const [templates, inUse] = await Promise.all([this.#o.store.allTemplates(), this.#o.store.imagesInUse()]);
    const keep = new Set<string>();
    for (const t of templates) if (t.digest) keep.add(t.digest.slice(0, 20));
    for (const image of inUse) {
      const m = IMAGE_PATTERN.exec(image);
      if (m) keep.add(m[1] as string);
    }
    const imagesDir = join(this.#o.dir, 'images');
    for (const tag of await readdir(imagesDir).catch(() => [] as string[])) {
      if (keep.has(tag)) continue;
      const image = `${TEMPLATE_IMAGE_REPO}:${tag}`;
      try {
        if (this.#o.docker) await this.#o.docker.removeImage(image);
        await rm(join(imagesDir, tag), { recursive: true, force: true });
        removed.push(image);
      } catch (error) {
        this.#o.logger.warn('template image not removed (retried later)', { image, error: String(error) });
      }
    }
    const recipesDir = join(this.#o.dir, 'recipes');
    for (const hash of await readdir(recipesDir).catch(() => [] as string[])) {
      const digest = (await readFile(join(recipesDir, hash), 'utf8').catch(() => '')).trim();
      if (!keep.has(digest.slice(0, 20))) await rm(join(recipesDir, hash), { force: true });
    }
    // Host images' root filesystems are exported again when a build needs one.
    if (this.#builds.size === 0) await rm(join(this.#o.dir, 'bases'), { recursive: true, force: true });
    // Interrupted builds of this process's templates are running ones; others were left by a crash.
    const buildingDir = join(this.#o.dir, 'building');
    for (const id of await readdir(buildingDir).catch(() => [] as string[])) {
      if (!this.#builds.has(id)) {
        await rm(join(buildingDir, id), { recursive: true, force: true });
        removed.push(`building/${id}`);
      }
    }
    return removed;
  }

  /**
   * At start and then every `everyMs`: builds a crash interrupted are marked failed (their state said `building`
   * and this process runs no such build), the builder's leftovers (mounts, loop images, runsc containers) and
   * unreferenced images are removed.
   */
  async reconcile(everyMs?: number): Promise<void> {
    if (everyMs !== undefined && this.#timer === undefined) {
      this.#timer = setInterval(() => {
        this.reconcile().catch((error: unknown) =>
          this.#o.logger.warn('template reconciliation failed', { error }),
        );
      }, everyMs);
      this.#timer.unref();
    }
    // Later runs give a minute's grace: a template just created may not have its build registered yet (at start,
    // before the API serves, none can be).
    const grace = everyMs === undefined ? 60_000 : 0;
    for (const t of await this.#o.store.allTemplates()) {
      // In a cluster only this node's own builds (another node's may be running there; a replica fails those of
      // lost nodes).
      const mine = this.#o.instanceId === undefined || t.builderId === this.#o.instanceId;
      if (
        mine &&
        t.state === 'building' &&
        !this.#builds.has(t.id) &&
        Date.now() - t.updatedAt.getTime() >= grace
      ) {
        await this.#o.store.updateTemplate(t.id, {
          state: 'failed',
          failure: 'the server stopped during the build; run templates.build again',
        });
      }
    }
    if (this.#o.builder && !this.#builds.size) {
      await this.#o.builder
        .cleanup()
        .catch((error: unknown) => this.#o.logger.warn('template builder cleanup failed', { error }));
    }
    await this.collect();
  }

  /** Cancels running builds (the server is stopping). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const b of this.#builds.values()) b.abort.abort();
    await Promise.all([...this.#builds.values()].map((b) => b.done));
  }
}

/** The operator's CAs written into the build sandbox's /tmp, and the bundle the image's tools read. */
function trustSteps(pems: readonly string[]): BuildStep[] {
  return [
    {
      kind: 'file',
      path: `${TRUST_DIR}/ca.pem`,
      content: Buffer.from(pems.join('\n')),
      mode: 0o644,
      owner: 'root',
      description: 'trusted certificates',
    },
    {
      kind: 'run',
      command: [
        '/bin/sh',
        '-c',
        `{ cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null; cat ${TRUST_DIR}/ca.pem; } > ${TRUST_DIR}/ca-bundle.pem`,
      ],
      user: 'root',
      description: 'trusted certificates bundle',
    },
  ];
}

/** A build failure as a person reads it. */
function failureOf(error: unknown): string {
  if (error instanceof Error) return error.message.split('\n').slice(0, 12).join('\n');
  return String(error);
}
