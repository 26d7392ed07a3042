import { mkdirSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { DockerBackend } from '@studio/isolation-docker';
import Docker from 'dockerode';
import { type Row, sample, sampleWith, summarize } from './stats.ts';

const MiB = 1024 * 1024;
const resources = {
  memoryBytes: 512 * MiB,
  cpus: 1,
  pids: 256,
  diskBytes: 256 * MiB,
  inodes: 20_000,
  tmpBytes: 64 * MiB,
};

/** Runs `docker exec` the raw way: create, start with a hijacked stream, wait for the end, inspect. */
async function rawExec(docker: Docker, container: Docker.Container, cmd: string[]): Promise<string> {
  const exec = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  docker.modem.demuxStream(stream, out, new PassThrough());
  await new Promise((resolve) => stream.on('end', resolve));
  await exec.inspect();
  return Buffer.concat(chunks).toString();
}

export async function benchDocker(options: {
  image: string;
  dataDir: string;
  quick: boolean;
}): Promise<Row[]> {
  mkdirSync(options.dataDir, { recursive: true });
  const docker = new Docker();
  const backend = new DockerBackend({ dataDir: options.dataDir, instanceId: 'bench' });
  const rows: Row[] = [];
  const creates = options.quick ? 3 : 8;
  const execs = options.quick ? 50 : 300;

  // 1. Create to first exec output.
  const oursCreate = await sampleWith(
    creates,
    async () => {
      const s = await backend.create({ image: options.image, resources, labels: { 'studio.test': 'bench' } });
      const r = await s.exec(['echo', 'ready'], { timeoutMs: 10_000, maxOutputBytes: 1024 });
      if (!new TextDecoder().decode(r.stdout).includes('ready')) throw new Error('no output');
      return s;
    },
    (s) => s.destroy(),
  );
  const rawCreate = await sampleWith(
    creates,
    async () => {
      const c = await docker.createContainer({
        Image: options.image,
        Cmd: ['/usr/bin/tini', '--', 'sleep', 'infinity'],
        HostConfig: { NetworkMode: 'none' },
      });
      await c.start();
      const out = await rawExec(docker, c, ['echo', 'ready']);
      if (!out.includes('ready')) throw new Error('no output');
      return c;
    },
    (c) => c.remove({ force: true }),
  );
  rows.push({
    name: 'docker: create to first exec output',
    unit: 'ms',
    ours: summarize(oursCreate),
    baseline: summarize(rawCreate),
    baselineName: 'dockerode create+start+exec (no hardening, no quota)',
  });

  // 2. Exec round trip of `true`, and 3. idle memory, on one sandbox each.
  const sandbox = await backend.create({
    image: options.image,
    resources,
    labels: { 'studio.test': 'bench' },
  });
  const raw = await docker.createContainer({
    Image: options.image,
    Cmd: ['/usr/bin/tini', '--', 'sleep', 'infinity'],
    HostConfig: { NetworkMode: 'none' },
  });
  await raw.start();
  try {
    const oursExec = await sample(execs, () =>
      sandbox.exec(['true'], { timeoutMs: 10_000, maxOutputBytes: 1024 }),
    );
    const rawExecs = await sample(execs, () => rawExec(docker, raw, ['true']));
    rows.push({
      name: 'docker: exec round trip (`true`)',
      unit: 'ms',
      ours: summarize(oursExec),
      baseline: summarize(rawExecs),
      baselineName: 'dockerode exec',
    });

    await new Promise((r) => setTimeout(r, 2000));
    const memOurs: number[] = [];
    const memRaw: number[] = [];
    for (let i = 0; i < 5; i++) {
      memOurs.push((await sandbox.stats()).memoryBytes / MiB);
      const s = (await raw.stats({ stream: false })) as Docker.ContainerStats;
      const cache = (s.memory_stats.stats as { cache?: number }).cache ?? 0;
      memRaw.push((s.memory_stats.usage - cache) / MiB);
    }
    rows.push({
      name: 'docker: memory per idle sandbox',
      unit: 'MiB',
      ours: summarize(memOurs),
      baseline: summarize(memRaw),
      baselineName: 'bare `sleep` container',
    });
  } finally {
    await sandbox.destroy();
    await raw.remove({ force: true });
  }
  return rows;
}
