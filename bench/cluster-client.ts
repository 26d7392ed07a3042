// The cluster benchmark's client (issue 23), run in its own process like api-client.ts: a client sharing the
// servers' event loop would charge its own work to them. Reads its job from argv[2] (JSON): an API replica whose
// sessions run on a node service, and a single box; prints both sides' samples as JSON on stdout.
import { createStudioClient, type StudioClient } from '@studio/client';
import { elapsed, interleaved, timed } from './stats.ts';

interface Side {
  url: string;
  token: string;
}

interface Job {
  /** The API replica (STUDIO_ROLE=api): every session call is forwarded, signed, to the node. */
  cluster: Side;
  /** The single box (STUDIO_ROLE=all) on the same PostgreSQL server. */
  single: Side;
  image: string;
  execs: number;
  creates: number;
}

const job = JSON.parse(process.argv[2] ?? '{}') as Job;
const cluster = createStudioClient({ url: job.cluster.url, token: job.cluster.token });
const single = createStudioClient({ url: job.single.url, token: job.single.token });

/** Sessions this client made and has not destroyed yet: destroyed on the way out, whatever happens. */
const live = new Map<string, StudioClient>();

/** `sessions.create` + `exec.run echo ready` to its output, as harness.ts's createToOutput. */
async function createToOutput(client: StudioClient): Promise<string> {
  const session = await client.sessions.create.mutate({ image: job.image, backend: 'docker' });
  live.set(session.id, client);
  const r = await client.exec.run.mutate({ sessionId: session.id, command: ['echo', 'ready'] });
  if (r.stdout !== 'ready\n') throw new Error(`no output: ${JSON.stringify(r)}`);
  return session.id;
}

async function destroy(sessionId: string): Promise<void> {
  const client = live.get(sessionId);
  live.delete(sessionId);
  await client?.sessions.destroy.mutate({ sessionId });
}

try {
  // 1. Exec round trip on one live session a side (the policy caps live sessions at 5 a user: one each here).
  const ours = await createToOutput(cluster);
  const raw = await createToOutput(single);
  const exec = await interleaved(
    'cluster exec round trip',
    job.execs,
    elapsed(() => cluster.exec.run.mutate({ sessionId: ours, command: ['true'] })),
    elapsed(() => single.exec.run.mutate({ sessionId: raw, command: ['true'] })),
    5,
  );
  await destroy(ours);
  await destroy(raw);

  // 2. Create → first output; each session is destroyed outside the clock, so at most one is live a side.
  const create = await interleaved(
    'cluster create → first output',
    job.creates,
    timed(() => createToOutput(cluster), destroy),
    timed(() => createToOutput(single), destroy),
  );
  process.stdout.write(`${JSON.stringify({ exec, create })}\n`);
} catch (error) {
  process.stderr.write(`[bench] cluster client: ${(error as Error).message}\n`);
  process.exitCode = 1;
} finally {
  for (const id of [...live.keys()]) await destroy(id).catch(() => undefined);
}
