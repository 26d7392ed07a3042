import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { generateApiTypes } from './api-types.ts';

// Builds the published package (issue 22): dist/*.js (ES modules, what node and bundlers load) and dist/*.d.ts.
// The sources import the API's types from @studio/api, @studio/policy and @studio/isolation, which are not
// published: dist/api-types.d.ts holds them, generated from the API (scripts/api-types.ts), and the emitted
// declarations import it instead. Inside the monorepo nothing uses dist: tsconfig.base.json maps
// @studio/client to src/index.ts.

const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));
export const DIST = join(PACKAGE_DIR, 'dist');
const UNPUBLISHED = /(['"])@studio\/(?:api|isolation|policy)\1/g;
// tsc rewrites `./x.ts` to `./x.js` in the JavaScript it emits but not in declarations.
const RELATIVE_TS = /(['"])(\.\.?\/[^'"]+)\.ts\1/g;

/** Builds dist/ and returns its path. Throws with the compiler's messages when the sources do not compile. */
export function buildClient(): string {
  rmSync(DIST, { recursive: true, force: true });
  mkdirSync(DIST, { recursive: true });
  writeFileSync(join(DIST, 'api-types.d.ts'), generateApiTypes(PACKAGE_DIR));

  const host: ts.ParseConfigFileHost = {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  };
  const config = ts.getParsedCommandLineOfConfigFile(join(PACKAGE_DIR, 'tsconfig.build.json'), {}, host);
  if (!config) throw new Error('tsconfig.build.json could not be read');
  const program = ts.createProgram(config.fileNames, config.options);
  const emitted = program.emit();
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics];
  if (diagnostics.length > 0) {
    throw new Error(
      ts.formatDiagnostics(diagnostics, {
        getCanonicalFileName: (f) => f,
        getCurrentDirectory: () => PACKAGE_DIR,
        getNewLine: () => '\n',
      }),
    );
  }
  for (const name of readdirSync(DIST)) {
    if (!name.endsWith('.d.ts') || name === 'api-types.d.ts') continue;
    const file = join(DIST, name);
    writeFileSync(
      file,
      readFileSync(file, 'utf8').replace(UNPUBLISHED, '$1./api-types.js$1').replace(RELATIVE_TS, '$1$2.js$1'),
    );
  }
  return DIST;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const out = buildClient();
  process.stderr.write(`built ${relative(process.cwd(), out)}\n`);
}
