import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { runtimePaths } from '@studio/isolation/testing';
import { GVisorBackend } from '@studio/isolation-gvisor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../scripts/build.ts';
import { type Census, imagesUnder, loopsUnder, mountsUnder, poolImagesUnder } from '../testing/chaos.ts';
import { expectCrashSafe, runChaos } from '../testing/chaos-run.ts';

// Issue 17, "crash-safe", on gVisor: the chaos run of chaos.docker.test.ts (20 kill -9 of the real API during
// creates, execs, writes, destroys and stop/start), with the API on the gVisor backend. The census counts what
// runsc and the backend leave on the host: runsc's containers (its state dir), bundles, runsc processes (a
// sandbox runsc forgot still runs), workspace images, mounts and loop devices, all of this instance only.

const run = promisify(execFile);
const INSTANCE = `api-test-chaos-gv-${process.pid}`;
const IMAGE = 'studio-sandbox:latest';
const dataDir = mkdtempSync(join(tmpdir(), 'studio-chaos-gv-'));
const gvisorDir = join(dataDir, 'data', 'gvisor');
const workspaces = join(gvisorDir, 'workspaces');
const runtimeDir = join(dataDir, 'run');
const stateDir = join(runtimeDir, INSTANCE, 'runsc');
const backend = new GVisorBackend({
  dataDir: gvisorDir,
  stateDir,
  instanceId: INSTANCE,
  images: { [IMAGE]: runtimePaths().sandboxRootfs },
  seccompProfile: runtimePaths().seccompProfile,
  reconcileOnStart: false,
});
const availability = await backend.available();
const inCi = process.env.CI === 'true' || process.env.CI === '1';
if (!availability.ok && inCi) throw new Error(`gVisor is required in CI: ${availability.reason}`);
const skip = availability.ok ? undefined : availability.reason;
const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** The session label of a bundle (its config's annotations), or undefined when it has none (yet). */
async function sessionOf(id: string): Promise<string | undefined> {
  const text = await readFile(join(gvisorDir, 'sandboxes', id, 'config.json'), 'utf8').catch(() => '');
  if (!text) return undefined;
  return (JSON.parse(text) as { annotations?: Record<string, string> }).annotations?.[
    'studio.label.studio.session'
  ];
}

/** Sandbox ids of runsc processes (sandbox, gofer) of this instance, by the bundle they name. */
function runscProcesses(): string[] {
  const ids: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let args: string[];
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!args[0]?.startsWith('runsc') || !args.some((a) => a.includes(stateDir))) continue;
    const bundle = args.find((a) => a.startsWith('--bundle='))?.slice('--bundle='.length);
    if (bundle) ids.push(bundle.split('/').pop() ?? bundle);
  }
  return ids;
}

async function census(): Promise<Census> {
  const { stdout } = await run('runsc', ['--root', stateDir, 'list', '-quiet']).catch(() => ({ stdout: '' }));
  const ids = new Set([
    ...stdout.split('\n').filter(Boolean),
    ...(await readdir(join(gvisorDir, 'sandboxes')).catch(() => [] as string[])),
    ...runscProcesses(),
  ]);
  const sandboxes: Census['sandboxes'] = new Map();
  // runtimeId: the sandbox id (gVisor's host name inside is the image's, so sessions are told apart by label).
  for (const id of ids) sandboxes.set(id, { session: await sessionOf(id), runtimeId: id });
  const [images, poolImages, mounts, loops] = await Promise.all([
    imagesUnder(workspaces),
    poolImagesUnder(workspaces),
    mountsUnder(dataDir),
    loopsUnder(dataDir),
  ]);
  return { sandboxes, images, poolImages, mounts, loops };
}

describe.skipIf(skip !== undefined)(
  `chaos: kill -9 of the API on gVisor${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let bundle = '';
    beforeAll(async () => {
      bundle = await buildApi(
        fileURLToPath(new URL(`../../dist/chaos-gv-${process.pid}.mjs`, import.meta.url)),
      );
    }, 60_000);
    afterAll(async () => {
      // Whatever a failed run left: this instance's sandboxes (destroy also unmounts their workspaces).
      await backend.reconcile().catch(() => undefined);
      for (const s of await backend.list().catch(() => []))
        await backend.destroy(s.id).catch(() => undefined);
      for (const id of await imagesUnder(workspaces)) await backend.destroy(id).catch(() => undefined);
      await backend.close();
      rmSync(dataDir, { recursive: true, force: true });
      for (const f of [bundle, `${bundle}.map`]) if (f) rmSync(f, { force: true });
    }, 180_000);

    it('leaves nothing behind and loses nothing confirmed after 20 kills', async () => {
      const result = await runChaos({
        api: {
          bundle,
          dataDir: join(dataDir, 'data'),
          instanceId: INSTANCE,
          backends: 'gvisor',
          env: { STUDIO_RUNTIME_DIR: runtimeDir },
        },
        image: IMAGE,
        // No warm pool: its members carry the label `pool` for ever, and on gVisor nothing else tells them apart.
        poolSize: 0,
        kills: 20,
        // gVisor's destroy takes about 2 s, its create about 0.6 s: a slower run than Docker's.
        budgetMs: 540_000,
        seed,
        census,
        log: (line) => console.log(line),
      });
      expectCrashSafe(result, 20);
    }, 720_000);
  },
);
