// The API benchmark's client, run in its own process (issue 15 item 5): a client sharing the API's event loop
// would charge its own work to the API and slow both. Reads its job from argv[2] (JSON), prints samples as JSON.
import { elapsed, interleaved } from './stats.ts';

interface Job {
  ours: string;
  raw: string;
  pings: number;
  seconds: number;
  rounds: number;
}

const job = JSON.parse(process.argv[2] ?? '{}') as Job;

async function get(url: string): Promise<void> {
  const res = await fetch(url);
  await res.text();
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
}

/** Requests per second with 10 requests in flight for `job.seconds`. */
const rps = (url: string) => async () => {
  const end = performance.now() + job.seconds * 1000;
  let count = 0;
  await Promise.all(
    Array.from({ length: 10 }, async () => {
      while (performance.now() < end) {
        await get(url);
        count++;
      }
    }),
  );
  return count / job.seconds;
};

const latency = await interleaved(
  'api no-op latency',
  job.pings,
  elapsed(() => get(job.ours)),
  elapsed(() => get(job.raw)),
  50,
);
const throughput = await interleaved('api no-op requests/s', job.rounds, rps(job.ours), rps(job.raw), 0);
process.stdout.write(`${JSON.stringify({ latency, throughput })}\n`);
