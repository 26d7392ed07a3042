import { chmod } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

// Bundles the MCP server (src/main.ts, the workspace packages it imports and every npm dependency) into one
// ES module, dist/studio-mcp.js, the package's `studio-mcp` bin (issue 22). MCP clients start servers
// non-interactively from whatever directory and PATH they have: `npx tsx …/main.ts` failed there ("npx canceled
// due to missing packages") when tsx was not installed. The bundle needs Node 20 and nothing else, so the
// packed tarball installs with no dependencies to fetch.
//
// esbuild (a devDependency, the version tsx already brings, so nothing more is installed) does the bundling.

const MCP_DIR = fileURLToPath(new URL('..', import.meta.url));
export const BIN = join(MCP_DIR, 'dist', 'studio-mcp.js');

/** Builds dist/studio-mcp.js (or `outfile`) and returns its path. */
export async function buildMcp(outfile = BIN): Promise<string> {
  await build({
    entryPoints: [join(MCP_DIR, 'src', 'main.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    conditions: ['node', 'import'],
    banner: {
      // The shebang makes the file its own bin. Some bundled dependencies (ajv, through the MCP SDK) are
      // CommonJS and `require` Node's built-ins, which an ES module can do only through createRequire.
      js: [
        '#!/usr/bin/env node',
        "import { createRequire as __studioCreateRequire } from 'node:module';",
        'const require = __studioCreateRequire(import.meta.url);',
      ].join('\n'),
    },
    logLevel: 'warning',
    legalComments: 'linked',
  });
  await chmod(outfile, 0o755);
  return outfile;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const out = await buildMcp();
  process.stderr.write(`built ${relative(process.cwd(), out)}\n`);
}
