import { type StudioClient, StudioClientError } from '@studio/client';
import { describe, expect, it } from 'vitest';
import { dockerApiTest, dockerSkip } from '../testing/docker-api.ts';

// files.search against a real session: ripgrep inside the sandbox image, run as the session's user.
// Every sandbox is labelled studio.test=files-search and destroyed when the file ends.

const IMAGE = 'studio-sandbox:latest';
const test = dockerApiTest('files-search');

async function refusal(p: Promise<unknown>): Promise<StudioClientError> {
  try {
    await p;
  } catch (error) {
    if (error instanceof StudioClientError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe.skipIf(dockerSkip !== undefined)(
  `files.search on Docker${dockerSkip ? ` (skipped: ${dockerSkip})` : ''}`,
  () => {
    let alice: StudioClient;
    let bob: StudioClient;
    let sessionId: string;

    test.beforeAll(async ({ alice: a, bob: b }) => {
      alice = a.client;
      bob = b.client;
      sessionId = (await alice.sessions.create.mutate({ image: IMAGE })).id;
      const write = (path: string, content: string) =>
        alice.files.write.mutate({ sessionId, path, content, createParents: true });
      await write('src/app.ts', 'const a = 1;\n// MARKER-42 here\nconst b = "Marker-42";\n');
      await write('docs/notes.md', 'nothing\nsee MARKER-42\n');
      await write('odd.txt', '--pre=sh is not an option here\n$(touch /tmp/pwned)\n');
      await write('.gitignore', 'ignored/\n');
      await write('ignored/skip.txt', 'MARKER-42 in an ignored folder\n');
    });

    it('finds literal text in the workspace, grouped by file, case-insensitive by default', async () => {
      const found = await alice.files.search.mutate({ sessionId, query: 'marker-42' });
      const paths = found.files.map((f) => f.path).sort();
      expect(paths).toEqual(['docs/notes.md', 'src/app.ts']);
      const app = found.files.find((f) => f.path === 'src/app.ts');
      expect(app?.matches.map((m) => m.line)).toEqual([2, 3]);
      expect(app?.matches[0]).toEqual({ line: 2, text: '// MARKER-42 here', ranges: [[3, 12]] });
      expect(found.truncated).toBe(false);
    });

    it('honours caseSensitive and regex', async () => {
      const exact = await alice.files.search.mutate({ sessionId, query: 'Marker-42', caseSensitive: true });
      expect(exact.matchCount).toBe(1);
      const regex = await alice.files.search.mutate({ sessionId, query: 'MARKER-\\d+ here', regex: true });
      expect(regex.files.map((f) => f.path)).toEqual(['src/app.ts']);
      // Literal by default: the same text is not a pattern.
      expect((await alice.files.search.mutate({ sessionId, query: 'MARKER-\\d+' })).matchCount).toBe(0);
      const bad = await refusal(alice.files.search.mutate({ sessionId, query: '(unclosed', regex: true }));
      expect(bad.code).toBe('INPUT_INVALID');
      expect(bad.message).toBe('the search is not a valid regular expression: unclosed group');
    });

    it('treats the query as text, never as an option or a shell word', async () => {
      const option = await alice.files.search.mutate({ sessionId, query: '--pre=sh' });
      expect(option.files.map((f) => f.path)).toEqual(['odd.txt']);
      const shell = await alice.files.search.mutate({ sessionId, query: '$(touch /tmp/pwned)' });
      expect(shell.matchCount).toBe(1);
      const probe = await alice.exec.run.mutate({ sessionId, command: ['test', '-e', '/tmp/pwned'] });
      expect(probe.exitCode).toBe(1);
    });

    it('lists the workspace files for finding one by name', async () => {
      const { paths } = await alice.files.paths.mutate({ sessionId });
      expect(paths).toEqual(['docs/notes.md', 'odd.txt', 'src/app.ts']);
    });

    it('searches only your own sessions', async () => {
      expect((await refusal(bob.files.search.mutate({ sessionId, query: 'MARKER' }))).code).toBe('NOT_FOUND');
    });

    it('a write into a missing folder names createParents', async () => {
      const missing = await refusal(
        alice.files.write.mutate({ sessionId, path: 'nope/deeper/x.txt', content: 'x' }),
      );
      expect(missing.code).toBe('NOT_FOUND');
      expect(missing.message).toContain('pass createParents: true');
    });
  },
);
