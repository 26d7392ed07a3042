// The templates benchmark's client, in its own process (as api-client.ts): a client sharing the API's event loop
// would charge its own work to the API. Reads its job from argv[2] (JSON), prints its samples as JSON on stdout.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createStudioClient } from '@studio/client';
import { elapsed, interleaved, timed } from './stats.ts';

interface Job {
  url: string;
  token: string;
  template: string;
  backends: Array<'docker' | 'gvisor'>;
  rounds: number;
  /** Rebuild rounds (0: none); `dockerfile` is a directory with an unchanged Dockerfile for the raw side. */
  rebuilds: number;
  dockerfile: string;
}

const job = JSON.parse(process.argv[2] ?? '{}') as Job;
const client = createStudioClient({ url: job.url, token: job.token });
const run = promisify(execFile);

/** A session from `template` (or the default), then `echo ready`: the create path a person waits on. */
const createToOutput = (backend: 'docker' | 'gvisor', template?: string) =>
  timed(
    async () => {
      const s = await client.sessions.create.mutate({ backend, ...(template ? { template } : {}) });
      const r = await client.exec.run.mutate({ sessionId: s.id, command: ['echo', 'ready'] });
      if (r.stdout !== 'ready\n') throw new Error(`no output: ${JSON.stringify(r)}`);
      return s.id;
    },
    (sessionId) => client.sessions.destroy.mutate({ sessionId }),
  );

/** templates.build of an unchanged template, until it is ready again. */
const rebuild = elapsed(async () => {
  await client.templates.build.mutate({ template: job.template });
  for (;;) {
    const t = await client.templates.get.query({ template: job.template });
    if (t.state === 'ready') return;
    if (t.state === 'failed') throw new Error(`rebuild failed: ${t.failure}`);
    await new Promise((r) => setTimeout(r, 20));
  }
});

/** Docker's own build cache: `docker build` of a Dockerfile it has built before. */
const dockerRebuild = elapsed(() =>
  run('docker', ['build', '-q', '--network', 'none', job.dockerfile], {
    env: { ...process.env, DOCKER_BUILDKIT: '0' },
  }),
);

const out: Record<string, { ours: number[]; raw: number[] }> = {};
for (const backend of job.backends) {
  out[`create-${backend}`] = await interleaved(
    `${backend} create → output, custom template vs default`,
    job.rounds,
    createToOutput(backend, job.template),
    createToOutput(backend),
  );
}
if (job.rebuilds > 0)
  out.rebuild = await interleaved('no-change rebuild', job.rebuilds, rebuild, dockerRebuild);
process.stdout.write(JSON.stringify(out));
