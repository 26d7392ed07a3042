import { ADMIN_PASSWORD, startTestApi, type TestApi } from '@studio/api/testing';
import { createStudioClient } from '@studio/client';
import type { IsolationBackend } from '@studio/isolation';
import { createRateLimiter } from '@studio/policy';
import { onCleanup } from './report.ts';

export type Client = ReturnType<typeof createStudioClient>;

/** The policy caps live sessions per user at 5 (SECURITY.md §5): 20 sessions need 4 users. */
export const SESSIONS_PER_USER = 5;

export interface Harness {
  t: TestApi;
  token: string;
  /** admin first, then bench users: `clients[i % clients.length]` spreads sessions 5 a user. */
  clients: Client[];
  close(): Promise<void>;
}

/** The real API in-process on 127.0.0.1 with `backend`, plus enough users for `sessions` live sessions. */
export async function startHarness(options: {
  backend: IsolationBackend;
  /** More backends the API offers beside `backend` (sessions name theirs). */
  extraBackends?: IsolationBackend[];
  labels: Record<string, string>;
  sessions: number;
  env?: Record<string, string>;
  /** The egress proxy's resolver (the egress bench's own network). */
  egress?: Parameters<typeof startTestApi>[0]['egress'];
}): Promise<Harness> {
  const t = await startTestApi({
    backends: [options.backend, ...(options.extraBackends ?? [])],
    labels: options.labels,
    createLimiter: createRateLimiter({ limit: 100_000, windowMs: 60_000 }),
    ...(options.env ? { env: options.env } : {}),
    ...(options.egress ? { egress: options.egress } : {}),
  });
  const destroyAll = async () => {
    for (const b of [options.backend, ...(options.extraBackends ?? [])])
      for (const s of await b.list({ labels: options.labels }).catch(() => []))
        await b.destroy(s.id).catch(() => undefined);
  };
  const close = onCleanup(async () => {
    await destroyAll();
    await t.close().catch(() => undefined);
    await destroyAll(); // a warm pool may have refilled meanwhile
  });
  const token = await t.login('admin', ADMIN_PASSWORD);
  const admin = createStudioClient({ url: t.url, token });
  const clients: Client[] = [admin];
  const users = Math.ceil(options.sessions / SESSIONS_PER_USER);
  for (let i = 1; i < users; i++) {
    const username = `bench${i}`;
    const password = `bench-password-${i}-0123456789`;
    await admin.users.create.mutate({ username, password });
    clients.push(createStudioClient({ url: t.url, token: await t.login(username, password) }));
  }
  return { t, token, clients, close };
}

/** Creates a session and runs `echo ready` in it; resolves with the session id once the output is back. */
export async function createToOutput(
  client: Client,
  image: string,
  backend: 'docker' | 'gvisor',
  extra: { resources?: { pids: number } } = {},
): Promise<string> {
  const session = await client.sessions.create.mutate({ image, backend, ...extra });
  const r = await client.exec.run.mutate({ sessionId: session.id, command: ['echo', 'ready'] });
  if (r.stdout !== 'ready\n') throw new Error(`no output: ${JSON.stringify(r)}`);
  return session.id;
}
