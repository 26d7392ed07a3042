import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GVisorBackend } from '@studio/isolation-gvisor';
import { type Row, sample, sampleWith, summarize } from './stats.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const resources = {
  memoryBytes: 512 * MiB,
  cpus: 1,
  pids: 256,
  diskBytes: 256 * MiB,
  inodes: 20_000,
  tmpBytes: 64 * MiB,
};
const FLAGS = ['--network=none', '--platform=ptrace'];

/** A minimal OCI bundle on the same rootfs, for the raw `runsc` baselines. */
function rawBundle(dir: string, rootfs: string, args: string[]): void {
  mkdirSync(dir, { recursive: true });
  const config = {
    ociVersion: '1.0.2',
    process: { user: { uid: 1000, gid: 1000 }, args, env: ['PATH=/usr/bin:/bin'], cwd: '/', terminal: false },
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
}

export async function benchGvisor(options: {
  image: string;
  rootfs: string;
  dataDir: string;
  quick: boolean;
}): Promise<Row[]> {
  mkdirSync(options.dataDir, { recursive: true });
  const backend = new GVisorBackend({
    dataDir: options.dataDir,
    instanceId: 'bench',
    images: { [options.image]: options.rootfs },
  });
  const rawRoot = mkdtempSync(join(options.dataDir, 'raw-'));
  const rows: Row[] = [];
  const creates = options.quick ? 3 : 6;
  const execs = options.quick ? 20 : 100;
  let n = 0;
  try {
    // Destroy runs outside the clock: the host takes about 2 s to tear down a ptrace sandbox.
    const oursCreate = await sampleWith(
      creates,
      async () => {
        const s = await backend.create({
          image: options.image,
          resources,
          labels: { 'studio.test': 'bench' },
        });
        const r = await s.exec(['echo', 'ready'], { timeoutMs: 20_000, maxOutputBytes: 1024 });
        if (!new TextDecoder().decode(r.stdout).includes('ready')) throw new Error('no output');
        return s;
      },
      (s) => s.destroy(),
    );
    const rawCreate = await sample(
      creates,
      async () => {
        const id = `raw-${n++}`;
        const dir = join(rawRoot, id);
        rawBundle(dir, options.rootfs, ['/bin/echo', 'ready']);
        const { stdout } = await run('runsc', [
          '--root',
          join(rawRoot, 'state'),
          ...FLAGS,
          'run',
          '--bundle',
          dir,
          id,
        ]);
        if (!stdout.includes('ready')) throw new Error('no output');
      },
      1,
    );
    rows.push({
      name: 'gvisor: create to first exec output',
      unit: 'ms',
      ours: summarize(oursCreate),
      baseline: summarize(rawCreate),
      baselineName: '`runsc run` of a bare bundle on the same rootfs (create, start, wait, delete)',
    });

    const sandbox = await backend.create({
      image: options.image,
      resources,
      labels: { 'studio.test': 'bench' },
    });
    const idleId = `raw-idle-${n++}`;
    const idleDir = join(rawRoot, idleId);
    rawBundle(idleDir, options.rootfs, ['/bin/sleep', 'infinity']);
    const rawArgs = ['--root', join(rawRoot, 'state'), ...FLAGS];
    // The detached sandbox inherits runsc's stdio: with pipes, waiting for them to close would never end.
    await new Promise<void>((resolve, reject) => {
      const child = spawn('runsc', [...rawArgs, 'run', '--detach', '--bundle', idleDir, idleId], {
        stdio: 'ignore',
      });
      child.on('error', reject);
      child.on('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`runsc run --detach exited ${code}`)),
      );
    });
    try {
      const oursExec = await sample(execs, () =>
        sandbox.exec(['true'], { timeoutMs: 10_000, maxOutputBytes: 1024 }),
      );
      const rawExec = await sample(execs, () =>
        run('runsc', ['--root', join(options.dataDir, 'runsc'), ...FLAGS, 'exec', sandbox.id, '/bin/true']),
      );
      rows.push({
        name: 'gvisor: exec round trip (`true`)',
        unit: 'ms',
        ours: summarize(oursExec),
        baseline: summarize(rawExec),
        baselineName: '`runsc exec <id> /bin/true`',
      });
      await new Promise((r) => setTimeout(r, 2000));
      const memOurs: number[] = [];
      const memRaw: number[] = [];
      for (let i = 0; i < 5; i++) {
        memOurs.push((await sandbox.stats()).memoryBytes / MiB);
        const { stdout } = await run('runsc', [...rawArgs, 'events', '--stats', idleId]);
        const usage = (JSON.parse(stdout) as { data?: { memory?: { usage?: { usage?: number } } } }).data
          ?.memory?.usage?.usage;
        memRaw.push((usage ?? Number.NaN) / MiB);
      }
      rows.push({
        name: 'gvisor: memory per idle sandbox',
        unit: 'MiB',
        ours: summarize(memOurs),
        baseline: summarize(memRaw),
        baselineName: 'bare `sleep` sandbox under runsc',
      });
    } finally {
      await sandbox.destroy();
      await run('runsc', [...rawArgs, 'delete', '--force', idleId]).catch(() => undefined);
    }
  } finally {
    await backend.close();
    rmSync(rawRoot, { recursive: true, force: true });
  }
  return rows;
}
