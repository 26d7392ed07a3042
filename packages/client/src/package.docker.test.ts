import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ADMIN_PASSWORD,
  runCommand as run,
  skipUnlessAvailable,
  startTestApi,
  type TestApi,
} from '@studio/api/testing';
import { createStudioClient } from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { DockerBackend } from '@studio/isolation-docker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The published package, used as the README says (issue 22): `npm pack` in the clone, the tarball installed into
// a plain Node project in a temporary folder outside the repository, a .mjs that signs in, creates a session,
// runs a command and streams one over SSE against a real API (Docker backend), and `tsc --noEmit` of a
// TypeScript file that uses the package's types. Nothing from the monorepo is on the consumer's path.

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const LABELS = { 'studio.test': 'client-package' };
const INSTANCE = 'client-package-test';
const TEST_DIR = join(REPO, '.cache/test-data/client-package');

const backend = new DockerBackend({
  dataDir: join(TEST_DIR, 'docker'),
  instanceId: INSTANCE,
  seccompProfile: runtimePaths().seccompProfile,
});
const skip = await skipUnlessAvailable(backend);

// The README's example, verbatim (packages/client/README.md, "Install it in a Node project").
const CLIENT_MJS = `import { loginStudioClient, streamExec } from '@studio/client';
import { EventSource } from 'eventsource';

const { client } = await loginStudioClient({
  url: process.env.STUDIO_URL,
  username: process.env.STUDIO_USERNAME,
  password: process.env.STUDIO_PASSWORD,
  EventSource, // Node 20 has no global EventSource
});
const session = await client.sessions.create.mutate({ image: 'studio-sandbox:latest' });
try {
  const run = await client.exec.run.mutate({
    sessionId: session.id,
    command: ['sh', '-c', 'echo hello from $(uname -s)'],
  });
  console.log('exec', run.exitCode, run.stdout.trim());

  // Server-sent events: each chunk of output as the command prints it, then its exit.
  let output = '';
  const exitCode = await new Promise((resolve, reject) => {
    streamExec(
      client,
      { sessionId: session.id, command: ['sh', '-c', 'for i in 1 2 3; do echo line $i; sleep 0.2; done'] },
      {
        onData: (e) => {
          if (e.type === 'stdout') output += e.data;
          if (e.type === 'exit') resolve(e.exitCode);
        },
        onError: reject,
      },
    );
  });
  console.log('stream', JSON.stringify(output), 'exit', exitCode);
} finally {
  await client.sessions.destroy.mutate({ sessionId: session.id });
}
`;

// A TypeScript consumer: the error-code union, a procedure's output type, inputs checked against the API's schemas.
const CONSUMER_TS = `import {
  createStudioClient,
  isStudioClientError,
  type StudioClientError,
  type StudioErrorCode,
  type StudioOutputs,
} from '@studio/client';
import { EventSource } from 'eventsource';

const client = createStudioClient({ url: 'http://127.0.0.1:4000', token: 'sst_example', EventSource });

type Session = StudioOutputs['sessions']['create'];

export async function start(): Promise<Session['id']> {
  const session: Session = await client.sessions.create.mutate({ image: 'studio-sandbox:latest' });
  const run = await client.exec.run.mutate({ sessionId: session.id, command: ['node', '-v'] });
  const exit: number | null = run.exitCode;
  return exit === 0 ? session.id : '';
}

export function explain(error: StudioClientError): string {
  switch (error.code) {
    case 'SESSION_LIMIT':
      return 'destroy a session first';
    case 'PATH_TRAVERSAL':
      return 'stay inside the workspace';
    default:
      return error.message;
  }
}

export const known: StudioErrorCode = 'EGRESS_DENIED';
// @ts-expect-error: not one of the client's codes
export const unknownCode: StudioErrorCode = 'NOT_A_STUDIO_CODE';
// @ts-expect-error: the input is checked against the API's schema
void client.sessions.create.mutate({ image: 42 });
// @ts-expect-error: no such procedure
void client.sessions.nonexistent;
export const limited = (e: unknown) => isStudioClientError(e, 'RATE_LIMITED');
// A subscription's events are typed too (each with its id, for resuming).
export const watching = client.events.subscribe.subscribe(
  { sessionId: 'ses_example' },
  { onData: (event) => console.log(event.id, event.data.type, event.data.at) },
);
`;

const TSCONFIG = `{
  "compilerOptions": {
    "target": "es2022",
    "module": "nodenext",
    "strict": true,
    "skipLibCheck": true,
    "noEmit": true
  }
}
`;

describe.skipIf(skip !== undefined)(`@studio/client as a package${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let t: TestApi;
  let work = '';
  let app = '';

  beforeAll(async () => {
    mkdirSync(TEST_DIR, { recursive: true });
    work = mkdtempSync(join(tmpdir(), 'studio-client-package-'));
    app = join(work, 'my-app');
    mkdirSync(app);
    t = await startTestApi({
      backends: [backend],
      labels: LABELS,
      env: { STUDIO_DATA_DIR: TEST_DIR, STUDIO_INSTANCE_ID: INSTANCE },
    });
    const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
    await admin.users.create.mutate({ username: 'alice', password: 'alice-password-1' });

    // Built once for the file: `npm pack` runs the package's prepack (scripts/build.ts).
    await run('npm', ['pack', '-w', '@studio/client', '--pack-destination', work], {
      cwd: REPO,
      timeoutMs: 180_000,
    });
    const tarball = readdirSync(work).find((f) => /^studio-client-.*\.tgz$/.test(f));
    expect(tarball).toBeDefined();
    await run('npm', ['init', '-y'], { cwd: app, timeoutMs: 30_000 });
    await run('npm', ['pkg', 'set', 'type=module'], { cwd: app, timeoutMs: 30_000 });
    // --prefer-offline: the packages come from npm's cache, which the repository's own install filled.
    const install = ['install', '--prefer-offline', '--no-audit', '--no-fund'];
    await run('npm', [...install, join(work, tarball!), 'eventsource'], { cwd: app, timeoutMs: 180_000 });
    await run('npm', [...install, '-D', 'typescript@5.9', '@types/node@20'], {
      cwd: app,
      timeoutMs: 180_000,
    });
  });

  afterAll(async () => {
    for (const s of await backend.list({ labels: LABELS }))
      await backend.destroy(s.id).catch(() => undefined);
    await t?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('signs in, creates a session, runs a command and streams one from a plain .mjs', async () => {
    writeFileSync(join(app, 'client.mjs'), CLIENT_MJS);
    // Only what a fresh shell has: node, and the three variables the example reads.
    const { stdout } = await run(process.execPath, ['client.mjs'], {
      cwd: app,
      env: {
        PATH: '/usr/bin:/bin',
        STUDIO_URL: t.url,
        STUDIO_USERNAME: 'alice',
        STUDIO_PASSWORD: 'alice-password-1',
      },
      timeoutMs: 120_000,
    });
    expect(stdout).toBe('exec 0 hello from Linux\nstream "line 1\\nline 2\\nline 3\\n" exit 0\n');
    // The example destroyed what it made.
    expect((await backend.list({ labels: LABELS })).filter((s) => s.state === 'running')).toEqual([]);
  });

  it('type-checks a TypeScript consumer against the published declarations', async () => {
    writeFileSync(join(app, 'tsconfig.json'), TSCONFIG);
    writeFileSync(join(app, 'consumer.ts'), CONSUMER_TS);
    await run('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: app, timeoutMs: 120_000 });
    // A mistake is caught: the declarations carry the API's types, not `any`.
    writeFileSync(
      join(app, 'mistake.ts'),
      `${CONSUMER_TS.split('\n// @ts-expect-error')[0]}\nvoid client.sessions.create.mutate({ imag: 'x' });\n`,
    );
    await expect(
      run('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: app, timeoutMs: 120_000 }),
    ).rejects.toThrow(/mistake\.ts.*'imag' does not exist/s);
  });
});
