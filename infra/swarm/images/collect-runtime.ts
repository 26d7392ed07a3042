// Lays out what the API bundle (apps/api/dist/main.mjs) needs at run time under a staging directory, at the same
// paths relative to the repository as in the clone, for infra/swarm/images/build.sh to put under /app:
//   - the bundle and its source map;
//   - the packages it imports from node_modules and, transitively, their dependencies and the optional ones that are
//     installed (the prebuilt native addons of @node-rs/argon2 are such), copied from the clone's node_modules: the
//     exact versions the tests ran against, with no registry or npm cache involved;
//   - the files modules find beside their sources through import.meta.url (the bundle keeps them as URLs relative
//     to itself): the Drizzle migrations, the sandbox agent, the seccomp profile.
// Only packages are walked, never devDependencies; workspace packages (@studio/*) are inside the bundle.
//
// Usage: npx tsx infra/swarm/images/collect-runtime.ts REPO_DIR STAGE_DIR
// Prints one line per copied package (path relative to the repository) on stdout; fails with one line naming
// what is missing.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';

const [repoArg, stageArg] = process.argv.slice(2);
if (!repoArg || !stageArg) fail('usage: collect-runtime.ts REPO_DIR STAGE_DIR');
const REPO = realpathSync(repoArg);
const STAGE = stageArg;
const BUNDLE_DIR = join(REPO, 'apps', 'api', 'dist');
const BUNDLE = join(BUNDLE_DIR, 'main.mjs');

// Files and folders the bundle reaches through import.meta.url (see apps/api/scripts/build.ts). A new one shows
// up in the bundle as `new URL("<relative path>", import.meta.url)`: checked below, so it cannot be forgotten.
const BESIDE_SOURCES = [
  'packages/db/drizzle',
  'packages/sandbox-agent/agent/studio-agent',
  'infra/seccomp/studio.json',
];
// The source paths the bundle names in those URLs, and what each one needs from BESIDE_SOURCES.
const KNOWN_URL_SOURCES: Record<string, string[]> = {
  'packages/db/src/migrate.ts': ['packages/db/drizzle'],
  'packages/sandbox-agent/src/agent-dir.ts': ['packages/sandbox-agent/agent/studio-agent'],
  'apps/api/src/env.ts': ['infra/seccomp/studio.json'],
};

function fail(message: string): never {
  process.stderr.write(`collect-runtime: ${message}\n`);
  process.exit(1);
}

if (!existsSync(BUNDLE)) fail(`${BUNDLE} is missing: build it with npx tsx apps/api/scripts/build.ts`);
const bundle = readFileSync(BUNDLE, 'utf8');

// --- files beside sources -------------------------------------------------------------------------------
for (const m of bundle.matchAll(/new URL\("([^"]+)", import\.meta\.url\)/g)) {
  const source = relative(REPO, join(BUNDLE_DIR, m[1] as string))
    .split(sep)
    .join('/');
  if (!(source in KNOWN_URL_SOURCES)) {
    fail(
      `the bundle finds files beside ${source} (import.meta.url): add what it needs to BESIDE_SOURCES in collect-runtime.ts`,
    );
  }
}
for (const path of BESIDE_SOURCES) {
  const from = join(REPO, path);
  if (!existsSync(from)) {
    fail(
      path.endsWith('studio-agent')
        ? `${path} is missing: build the agent with bash packages/sandbox-agent/scripts/build-agent.sh`
        : `${path} is missing from the clone`,
    );
  }
  cpSync(from, join(STAGE, path), { recursive: true, dereference: true });
}
for (const file of ['main.mjs', 'main.mjs.map']) {
  const from = join(BUNDLE_DIR, file);
  if (existsSync(from)) cpSync(from, join(STAGE, 'apps/api/dist', file));
}

// --- packages -------------------------------------------------------------------------------------------
const builtins = new Set(builtinModules);
const packageName = (specifier: string): string => {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] as string);
};

const roots = new Set<string>();
for (const m of bundle.matchAll(
  /(?:^|[\s;})])(?:import|export)\s*(?:[\w*${},\s]+?\s*from\s*)?["']([^"'./][^"']*)["']|\bimport\(\s*["']([^"'./][^"']*)["']\s*\)/gm,
)) {
  const specifier = (m[1] ?? m[2]) as string;
  if (specifier.startsWith('node:') || builtins.has(specifier) || specifier.includes('\0')) continue;
  roots.add(packageName(specifier));
}
if (roots.size === 0) fail(`found no package imports in ${BUNDLE}: has the bundle's format changed?`);

// Node's lookup: node_modules/<name> in the directory and each parent, up to the repository.
function resolvePackage(name: string, fromDir: string): string | undefined {
  let dir = fromDir;
  for (;;) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dir === REPO || dir === dirname(dir)) return undefined;
    dir = dirname(dir);
  }
}

interface Manifest {
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

const copied = new Map<string, string>(); // real path -> path relative to the repository
const queue: { name: string; from: string; required: boolean; by: string }[] = [...roots].map((name) => ({
  name,
  from: BUNDLE_DIR,
  required: true,
  by: 'apps/api/dist/main.mjs',
}));
while (queue.length > 0) {
  const { name, from, required, by } = queue.shift() as (typeof queue)[number];
  const found = resolvePackage(name, from);
  if (found === undefined) {
    if (required) fail(`${name} (needed by ${by}) is not installed: run npm install (npm ci) in ${REPO}`);
    continue;
  }
  const real = realpathSync(found);
  if (copied.has(real)) continue;
  const rel = relative(REPO, found).split(sep).join('/');
  if (
    !real.startsWith(`${REPO}${sep}`) ||
    (!rel.startsWith('node_modules/') && !rel.includes('/node_modules/'))
  ) {
    fail(
      `${name} resolves to ${real}, outside the repository's node_modules (a workspace link?): bundle it instead`,
    );
  }
  copied.set(real, rel);
  // The package without its own nested node_modules: those are walked (and copied) only when needed.
  cpSync(real, join(STAGE, rel), {
    recursive: true,
    dereference: true,
    filter: (src) => src === real || !relative(real, src).split(sep).includes('node_modules'),
  });
  const manifest = JSON.parse(readFileSync(join(real, 'package.json'), 'utf8')) as Manifest;
  for (const dep of Object.keys(manifest.dependencies ?? {}))
    queue.push({ name: dep, from: found, required: true, by: rel });
  // Optional dependencies (platform builds of native addons among them) only where npm installed them.
  for (const dep of Object.keys(manifest.optionalDependencies ?? {}))
    queue.push({ name: dep, from: found, required: false, by: rel });
  // Peers the package cannot do without, when installed (the bundle imports the optional ones it uses, pg for
  // drizzle-orm among them); type-only peers are never needed at run time.
  for (const dep of Object.keys(manifest.peerDependencies ?? {})) {
    if (manifest.peerDependenciesMeta?.[dep]?.optional || dep === 'typescript' || dep.startsWith('@types/'))
      continue;
    queue.push({ name: dep, from: found, required: false, by: rel });
  }
}

mkdirSync(STAGE, { recursive: true });
for (const rel of [...copied.values()].sort()) process.stdout.write(`${rel}\n`);
const size = [...copied.keys()].reduce((sum, dir) => sum + duBytes(dir), 0);
process.stderr.write(
  `collect-runtime: ${copied.size} packages (${(size / 1e6).toFixed(1)} MB) for ${roots.size} imports\n`,
);

function duBytes(path: string): number {
  const s = statSync(path);
  if (!s.isDirectory()) return s.size;
  let total = 0;
  for (const entry of readdirSync(path)) {
    if (entry === 'node_modules') continue;
    total += duBytes(join(path, entry));
  }
  return total;
}
