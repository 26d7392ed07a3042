// The e2b bench's baseline, in its own process as the SDK's side is: @studio/client's session create → the output
// of its first exec, the same command line E2B's envd runs (`/bin/bash -l -c`). Same line protocol as
// e2b-sdk-client.mjs; the job (API URL and token) is argv[2] as JSON.
import { createInterface } from 'node:readline';
import { createStudioClient } from '@studio/client';

const job = JSON.parse(process.argv[2] ?? '{}') as { url: string; token: string };
const client = createStudioClient({ url: job.url, token: job.token });
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
out({ ready: true });
for await (const line of createInterface({ input: process.stdin })) {
  const { op } = JSON.parse(line) as { op: string };
  if (op === 'exit') break;
  try {
    const t = performance.now();
    const s = await client.sessions.create.mutate({});
    const r = await client.exec.run.mutate({
      sessionId: s.id,
      command: ['/bin/bash', '-l', '-c', 'echo ok'],
    });
    const ms = performance.now() - t;
    await client.sessions.destroy.mutate({ sessionId: s.id });
    if (r.stdout !== 'ok\n') throw new Error(`unexpected output ${JSON.stringify(r.stdout)}`);
    out({ ms });
  } catch (error) {
    out({ error: String((error as Error)?.stack ?? error) });
  }
}
process.exit(0);
