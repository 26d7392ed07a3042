import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { StudioClientError } from '@studio/client';
import { type Db, openDb } from '@studio/db';
import type { IsolationBackend } from '@studio/isolation';
import type { RateLimiter } from '@studio/policy';
import { type App, type CreateAppOptions, createApp } from '../app.ts';
import { createLogger } from '../core/logger.ts';
import { parseEnv } from '../env.ts';
import { type StudioServer, startServer } from '../server.ts';

/** Where API tests keep data (JWT secret, Docker workspaces). */
export const TEST_DATA_DIR = fileURLToPath(new URL('../../../../.cache/test-data/api', import.meta.url));

export const ADMIN_PASSWORD = 'admin-password-for-tests';
/** The header by which the IDE proves a cookie-authenticated request is its own (SECURITY.md §4b). */
export const IDE: Readonly<Record<string, string>> = Object.freeze({ 'x-studio-ide': '1' });
export const JWT_SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz';

export interface TestApi {
  app: App;
  api: StudioServer;
  url: string;
  /** Raw tRPC over HTTP: a query (GET) or mutation (POST). Returns status and parsed body. */
  call(
    kind: 'query' | 'mutation',
    path: string,
    input: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: TrpcBody; headers: Headers }>;
  login(username: string, password: string): Promise<string>;
  close(): Promise<void>;
}

export interface TrpcBody {
  result?: { data: unknown };
  error?: {
    message: string;
    code: number;
    data: {
      code: string;
      httpStatus: number;
      studioCode: string;
      path: string | null;
      requestId: string | null;
      stack?: unknown;
    };
  };
}

/**
 * Why tests of `backend` skip (undefined: they run). In CI an unavailable runtime throws instead: there it must
 * be present, and a silent skip would hide that.
 */
export async function skipUnlessAvailable(
  backend: IsolationBackend,
  name = 'Docker',
): Promise<string | undefined> {
  const availability = await backend.available();
  if (availability.ok) return undefined;
  if (process.env.CI === 'true' || process.env.CI === '1') {
    throw new Error(`${name} is required in CI: ${availability.reason}`);
  }
  return availability.reason;
}

/** Starts the real API on 127.0.0.1 with a random port, an in-memory PGlite store and the given backends. */
export async function startTestApi(options: {
  /** Default: built from the env (STUDIO_BACKENDS), as a real start does. */
  backends?: IsolationBackend[];
  labels?: Record<string, string>;
  loginLimiter?: RateLimiter;
  createLimiter?: RateLimiter;
  env?: Record<string, string>;
  terminalRecheckMs?: number;
  /** Lock the data dir and claim the instance id as a real start does (default false: tests share a dir). */
  claim?: boolean;
  /** The store; default a fresh in-memory PGlite; `data-dir`: PGlite in the data dir, as a real start. */
  db?: Db | 'data-dir';
  /** The egress proxy's resolver (and dialler): the tests' own network. */
  egress?: CreateAppOptions['egress'];
}): Promise<TestApi> {
  mkdirSync(TEST_DATA_DIR, { recursive: true });
  const env = parseEnv({
    STUDIO_PORT: '0',
    STUDIO_PREVIEW_PORT: '0',
    STUDIO_DATA_DIR: TEST_DATA_DIR,
    STUDIO_JWT_SECRET: JWT_SECRET,
    STUDIO_ADMIN_PASSWORD: ADMIN_PASSWORD,
    STUDIO_INSTANCE_ID: 'api-test',
    STUDIO_WARM_POOL: '0',
    ...options.env,
  });
  const app = await createApp({
    env,
    ...(options.db === 'data-dir' ? {} : { db: options.db ?? (await openDb({})) }),
    claim: options.claim ?? false,
    ...(options.backends ? { backends: options.backends } : {}),
    logger: createLogger({ level: process.env.STUDIO_TEST_LOG === '1' ? 'debug' : 'silent' }),
    ...(options.labels ? { sandboxLabels: options.labels } : {}),
    ...(options.loginLimiter ? { loginLimiter: options.loginLimiter } : {}),
    ...(options.createLimiter ? { createLimiter: options.createLimiter } : {}),
    ...(options.egress ? { egress: options.egress } : {}),
  });
  const api = await startServer(app, {
    host: '127.0.0.1',
    port: 0,
    ...(options.terminalRecheckMs === undefined ? {} : { terminalRecheckMs: options.terminalRecheckMs }),
  });
  const call: TestApi['call'] = async (kind, path, input, headers = {}) => {
    const target = `${api.url}/trpc/${path}`;
    const res =
      kind === 'query'
        ? await fetch(
            input === undefined ? target : `${target}?input=${encodeURIComponent(JSON.stringify(input))}`,
            {
              headers,
            },
          )
        : await fetch(target, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...headers },
            body: input === undefined ? undefined : JSON.stringify(input),
          });
    const text = await res.text();
    let body: TrpcBody;
    try {
      body = JSON.parse(text) as TrpcBody;
    } catch {
      body = {
        error: {
          message: text,
          code: 0,
          data: { code: 'NON_JSON', httpStatus: res.status, studioCode: 'NON_JSON', path, requestId: null },
        },
      };
    }
    return { status: res.status, body, headers: res.headers };
  };
  return {
    app,
    api,
    url: api.url,
    call,
    async login(username, password) {
      const r = await call('mutation', 'auth.login', { username, password });
      if (!r.body.result) throw new Error(`login failed: ${JSON.stringify(r.body)}`);
      return (r.body.result.data as { token: string }).token;
    },
    close: () => api.close(1000),
  };
}

/** The Studio code a client call is refused with; throws when it succeeds or fails otherwise. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (error) {
    if (error instanceof StudioClientError) return error.code;
    throw error;
  }
  throw new Error('expected a refusal');
}

/**
 * Runs a program (no shell) with a time bound, as a person following a README would: resolves with its output,
 * rejects with the command, the failure and both outputs. For the tests that install packages outside the repo.
 */
export function runCommand(
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      command,
      args,
      { cwd: options.cwd, env: options.env ?? process.env, timeout: options.timeoutMs, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`${command} ${args.join(' ')} failed (${error.message}):\n${stdout}\n${stderr}`));
        } else resolvePromise({ stdout, stderr });
      },
    );
  });
}
