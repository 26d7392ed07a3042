import { readFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

// Bundles the API (src/main.ts and the workspace packages it imports, all TypeScript) into one ES module,
// dist/main.mjs, for `npm start` (issue 17, "the API's own memory"). Running under tsx kept esbuild's service
// process, tsx's loader hooks and a compiled copy of every module resident for the life of the API; the bundle
// is plain JavaScript that node loads once. Packages from node_modules stay external: node loads them as
// usual (PGlite finds its WASM files beside its own module, dockerode its protocol files).
//
// esbuild is tsx's dependency (hoisted to the root node_modules), so a fresh clone has it after `npm install`.

const API_DIR = fileURLToPath(new URL('..', import.meta.url));
export const BUNDLE = join(API_DIR, 'dist', 'main.mjs');

// Modules find files beside their source with `new URL('../drizzle', import.meta.url)` (migrations, the agent,
// the seccomp profile, the repository root). In a bundle import.meta.url is the bundle's; each module's own
// is put back as a URL relative to the bundle, so the bundle still works from any clone path.
const ownImportMetaUrl = (outfile: string): Plugin => ({
  name: 'own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      if (!source.includes('import.meta.url')) return { contents: source, loader: 'ts' };
      const rel = relative(dirname(outfile), args.path);
      const own = `new URL(${JSON.stringify(rel)}, import.meta.url).href`;
      return { contents: source.replaceAll('import.meta.url', own), loader: 'ts' };
    });
  },
});

// Everything from node_modules stays external, except the workspace's own packages (@studio/*), which are
// TypeScript sources that node cannot load without a loader.
const externalDependencies: Plugin = {
  name: 'external-dependencies',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) =>
      args.path.startsWith('@studio/') ? undefined : { path: args.path, external: true },
    );
  },
};

/** Builds dist/main.mjs (or `outfile`) and returns its path. */
export async function buildApi(outfile = BUNDLE): Promise<string> {
  await build({
    entryPoints: [join(API_DIR, 'src', 'main.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: 'linked',
    // Stack traces of the bundle name the TypeScript files (node --enable-source-maps).
    sourcesContent: false,
    conditions: ['node', 'import'],
    plugins: [ownImportMetaUrl(outfile), externalDependencies],
    logLevel: 'warning',
    legalComments: 'none',
  });
  return outfile;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const out = await buildApi();
  process.stderr.write(`built ${relative(process.cwd(), out)}\n`);
}
