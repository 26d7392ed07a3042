// The raw baselines: the container runtimes driven directly, with none of Studio's hardening, quotas or API.

import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { RUNSC_FLAGS as GVISOR_RUNSC_FLAGS } from '@studio/isolation-gvisor';
import Docker from 'dockerode';
import { onCleanup } from './report.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;

/** One idle raw sandbox running `sleep`. */
export interface RawIdle {
  exec(cmd: string[]): Promise<string>;
  memoryMiB(): Promise<number>;
  remove(): Promise<void>;
}

export interface RawRuntime {
  /** Create, start, first output of `echo ready`; resolves with the remover (run outside the clock). */
  createToOutput(): Promise<() => Promise<void>>;
  startIdle(): Promise<RawIdle>;
  /** Memory of one of our sandboxes, measured exactly like the raw one's. */
  memoryOfSandbox(sandboxId: string): Promise<number>;
  describe: { create: string; exec: string; idle: string };
}

const RAW_LABEL = 'studio.bench-raw';

/** Raw dockerode: create + start + exec, no hardening, no quota, `--network none`. */
export function rawDocker(image: string): RawRuntime {
  const docker = new Docker();
  onCleanup(async () => {
    const list = await docker.listContainers({ all: true, filters: { label: [`${RAW_LABEL}=1`] } });
    await Promise.all(
      list.map((c) =>
        docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => undefined),
      ),
    );
  });
  const exec = async (container: Docker.Container, cmd: string[]): Promise<string> => {
    const e = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
    const stream = await e.start({ hijack: true, stdin: false });
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    docker.modem.demuxStream(stream, out, new PassThrough());
    await new Promise((resolve) => stream.on('end', resolve));
    await e.inspect();
    return Buffer.concat(chunks).toString();
  };
  const memory = async (c: Docker.Container) => {
    // one-shot: no second sample for CPU figures, which costs a second per call.
    const s = (await c.stats({
      stream: false,
      'one-shot': true,
    } as never)) as unknown as Docker.ContainerStats;
    const stats = s.memory_stats.stats as { cache?: number; inactive_file?: number };
    return (s.memory_stats.usage - (stats.inactive_file ?? stats.cache ?? 0)) / MiB;
  };
  const start = async () => {
    const c = await docker.createContainer({
      Image: image,
      Cmd: ['/usr/bin/tini', '--', 'sleep', 'infinity'],
      Labels: { [RAW_LABEL]: '1' },
      HostConfig: { NetworkMode: 'none' },
    });
    await c.start();
    return c;
  };
  return {
    describe: {
      create: 'dockerode create+start+exec',
      exec: 'dockerode exec',
      idle: 'bare `sleep` container',
    },
    // DockerBackend names its containers `studio-<sandbox id>`.
    memoryOfSandbox: (id) => memory(docker.getContainer(`studio-${id}`)),
    async createToOutput() {
      const c = await start();
      if (!(await exec(c, ['echo', 'ready'])).includes('ready')) throw new Error('no output');
      return async () => {
        await c.remove({ force: true });
      };
    },
    async startIdle() {
      const c = await start();
      return {
        exec: (cmd) => exec(c, cmd),
        memoryMiB: () => memory(c),
        async remove() {
          await c.remove({ force: true });
        },
      };
    },
  };
}

/**
 * The raw baseline runs with the gVisor backend's own runsc flags and platform (systrap, no root overlay,
 * OCI seccomp enabled, no network), so the comparison measures the backend, not a runsc configuration.
 */
export const RUNSC_FLAGS = [...GVISOR_RUNSC_FLAGS, '--platform=systrap'];

/** Raw `runsc`: a minimal OCI bundle on the same rootfs. */
export function rawGvisor(rootfs: string, dataDir: string, ourRunscRoot: string): RawRuntime {
  mkdirSync(dataDir, { recursive: true });
  const root = mkdtempSync(join(dataDir, 'raw-'));
  const args = ['--root', join(root, 'state'), ...RUNSC_FLAGS];
  let n = 0;
  onCleanup(async () => {
    const { stdout } = await run('runsc', [...args, 'list', '-quiet']).catch(() => ({ stdout: '' }));
    for (const id of stdout.split('\n').filter(Boolean))
      await run('runsc', [...args, 'delete', '--force', id]).catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  });
  const memory = async (rootArgs: string[], id: string) => {
    const { stdout } = await run('runsc', [...rootArgs, 'events', '--stats', id]);
    const usage = (JSON.parse(stdout) as { data?: { memory?: { usage?: { usage?: number } } } }).data?.memory
      ?.usage?.usage;
    return (usage ?? Number.NaN) / MiB;
  };
  const bundle = (id: string, cmd: string[]) => writeRawBundle(join(root, id), rootfs, cmd);
  return {
    describe: {
      create: '`runsc run` of a bare bundle (create, start, output, delete)',
      exec: '`runsc exec`',
      idle: 'bare `sleep` sandbox under runsc',
    },
    memoryOfSandbox: (id) => memory(['--root', ourRunscRoot, ...RUNSC_FLAGS], id),
    async createToOutput() {
      const id = `raw-${n++}`;
      const dir = bundle(id, ['/bin/echo', 'ready']);
      const { stdout } = await run('runsc', [...args, 'run', '--bundle', dir, id]);
      if (!stdout.includes('ready')) throw new Error('no output');
      return async () => {
        rmSync(dir, { recursive: true, force: true });
      };
    },
    async startIdle() {
      const id = `raw-idle-${n++}`;
      const dir = bundle(id, ['/bin/sleep', 'infinity']);
      await runscDetached([...args, 'run', '--detach', '--bundle', dir, id]);
      return {
        async exec(cmd) {
          return (await run('runsc', [...args, 'exec', id, ...cmd])).stdout;
        },
        memoryMiB: () => memory(args, id),
        async remove() {
          await run('runsc', [...args, 'delete', '--force', id]).catch(() => undefined);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

/** Writes a minimal OCI bundle (`config.json`) at `dir` on the read-only `rootfs`, its first process `cmd`. */
function writeRawBundle(dir: string, rootfs: string, cmd: string[]): string {
  mkdirSync(dir, { recursive: true });
  const config = {
    ociVersion: '1.0.2',
    process: {
      user: { uid: 1000, gid: 1000 },
      args: cmd,
      env: ['PATH=/usr/bin:/bin'],
      cwd: '/',
      terminal: false,
    },
    root: { path: rootfs, readonly: true },
    hostname: 'raw',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs' },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }],
    },
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

/**
 * A runsc call that leaves a sandbox running (`run --detach`, `restore --detach`). The detached sandbox inherits
 * runsc's stdio: with pipes, waiting for them to close would never end, so it gets none.
 */
function runscDetached(argv: string[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const child = spawn('runsc', argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      if (stderr.length < 4096) stderr += s;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      // The sandbox holds the stderr pipe open, so it never ends: take what runsc wrote (a moment more on failure,
      // for its message), then let go of it.
      setTimeout(
        () => {
          child.stderr.destroy();
          const what = argv.find((a) => a === 'run' || a === 'restore') ?? 'runsc';
          if (code === 0) resolve();
          else reject(new Error(`runsc ${what} --detach exited ${code}: ${stderr.trim().slice(0, 300)}`));
        },
        code === 0 ? 0 : 50,
      );
    });
  });
}

/** Raw runsc sandboxes for the pause bench: start, checkpoint, restore (into any id and bundle), exec, delete. */
export interface RawCheckpoints {
  /** Where this baseline keeps its bundles, checkpoint images and files. */
  readonly dir: string;
  /** Writes a bundle for sandbox `id` with `cmd` as its first process; returns its directory. */
  bundle(id: string, cmd: string[]): string;
  /** `runsc run --detach` of the bundle of `id` (written with {@link bundle} first). */
  start(id: string): Promise<void>;
  /** `runsc checkpoint --image-path DIR [--leave-running] <id>`. */
  checkpoint(id: string, imageDir: string, options?: { leaveRunning?: boolean }): Promise<void>;
  /** `runsc restore --image-path DIR --detach --bundle <bundle of id> <id>`. */
  restore(id: string, imageDir: string): Promise<void>;
  /** `runsc exec <id> ...`: its stdout. */
  exec(id: string, cmd: string[]): Promise<string>;
  /** `runsc delete --force <id>`. */
  delete(id: string): Promise<void>;
  /** Deletes every sandbox of this root and removes the directory (also run at cleanup). */
  close(): Promise<void>;
}

/**
 * Raw `runsc` with checkpoints: bare bundles on the same rootfs, with the backend's own flags (`RUNSC_FLAGS`), in a
 * runsc root of their own under `dataDir`. What issue 20's pause, resume and fork are measured against.
 */
export function rawGvisorCheckpoints(rootfs: string, dataDir: string): RawCheckpoints {
  mkdirSync(dataDir, { recursive: true });
  const root = mkdtempSync(join(dataDir, 'raw-'));
  const args = ['--root', join(root, 'state'), ...RUNSC_FLAGS];
  const bundleOf = (id: string) => join(root, 'bundles', id);
  const close = onCleanup(async () => {
    const { stdout } = await run('runsc', [...args, 'list', '-quiet']).catch(() => ({ stdout: '' }));
    for (const id of stdout.split('\n').filter(Boolean))
      await run('runsc', [...args, 'delete', '--force', id]).catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  });
  return {
    dir: root,
    bundle: (id, cmd) => writeRawBundle(bundleOf(id), rootfs, cmd),
    start: (id) => runscDetached([...args, 'run', '--detach', '--bundle', bundleOf(id), id]),
    async checkpoint(id, imageDir, options = {}) {
      await run('runsc', [
        ...args,
        'checkpoint',
        '--image-path',
        imageDir,
        ...(options.leaveRunning ? ['--leave-running'] : []),
        id,
      ]);
    },
    restore: (id, imageDir) =>
      runscDetached([...args, 'restore', '--image-path', imageDir, '--detach', '--bundle', bundleOf(id), id]),
    async exec(id, cmd) {
      return (await run('runsc', [...args, 'exec', id, ...cmd])).stdout;
    },
    async delete(id) {
      await run('runsc', [...args, 'delete', '--force', id]);
    },
    close,
  };
}
