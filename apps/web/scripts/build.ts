import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The web app's folder (apps/web). */
export const WEB_ROOT = fileURLToPath(new URL('..', import.meta.url));
const REPO_ROOT = join(WEB_ROOT, '..', '..');
const STAMP = join(WEB_ROOT, '.next', 'studio-build.hash');

// What the production build depends on: the app's sources and config, the workspace packages it bundles (policy,
// client), the lockfile.
const INPUTS = [
  join(WEB_ROOT, 'src'),
  join(WEB_ROOT, 'next.config.ts'),
  join(WEB_ROOT, 'package.json'),
  join(WEB_ROOT, 'tsconfig.json'),
  join(REPO_ROOT, 'packages', 'policy', 'src'),
  join(REPO_ROOT, 'packages', 'client', 'src'),
  join(REPO_ROOT, 'package-lock.json'),
];

function walk(path: string, out: string[]): void {
  if (!existsSync(path)) return;
  if (statSync(path).isDirectory()) {
    for (const name of readdirSync(path).sort()) {
      if (name === 'node_modules' || name.endsWith('.test.ts')) continue;
      walk(join(path, name), out);
    }
  } else {
    out.push(path);
  }
}

/** A hash of every build input (paths and contents). */
export function sourceHash(): string {
  const files: string[] = [];
  for (const input of INPUTS) walk(input, files);
  const hash = createHash('sha256');
  for (const file of files) {
    hash.update(relative(REPO_ROOT, file));
    hash.update('\0');
    hash.update(readFileSync(file));
    hash.update('\0');
  }
  return hash.digest('hex');
}

/**
 * Runs `next build` unless `.next` was built from exactly these sources (the hash is stored next to it), so
 * repeated `npm start` and e2e runs skip the build. Throws when the build fails.
 */
export function ensureBuild(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): void {
  const hash = sourceHash();
  if (existsSync(STAMP) && readFileSync(STAMP, 'utf8').trim() === hash) return;
  log('[web] building the IDE (next build; cached until apps/web changes)…');
  const started = Date.now();
  const result = spawnSync(
    process.execPath,
    [join(REPO_ROOT, 'node_modules', 'next', 'dist', 'bin', 'next'), 'build'],
    {
      cwd: WEB_ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1' },
    },
  );
  if (result.status !== 0) throw new Error(`next build failed (exit ${result.status ?? result.signal})`);
  writeFileSync(STAMP, `${hash}\n`);
  log(`[web] built in ${Math.round((Date.now() - started) / 1000)} s`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  ensureBuild();
}
