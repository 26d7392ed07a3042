import { type StudioClient, StudioClientError } from '@studio/client';
import { describe, expect, it } from 'vitest';
import { toToolError } from './errors.ts';
import { studioTools, type ToolContext, WRITE_FILE_NOT_FOUND_FIX } from './tools.ts';

const SID = 'ses_0123456789abcdefgh';
const writeFile = studioTools.find((t) => t.name === 'write_file');

// A client whose files.write refuses a path under a missing folder unless createParents is set, as the API does.
function contextWith(calls: unknown[]): ToolContext {
  const client = {
    files: {
      write: {
        mutate: async (input: { path: string; createParents?: boolean }) => {
          calls.push(input);
          if (input.createParents !== true && input.path.includes('/'))
            throw new StudioClientError(
              `cannot write ${input.path}: the folder src/a does not exist; pass createParents: true to make it`,
              {
                code: 'NOT_FOUND',
                trpcCode: 'NOT_FOUND',
                httpStatus: 404,
                path: 'files.write',
                requestId: 'r',
              },
            );
          return { path: input.path, size: 1 };
        },
      },
    },
  } as unknown as StudioClient;
  return { client } as unknown as ToolContext;
}

describe('write_file into a folder that does not exist', () => {
  it('answers NOT_FOUND with a fix naming createParents: true', async () => {
    if (!writeFile) throw new Error('no write_file tool');
    const calls: unknown[] = [];
    const failure = await writeFile
      .call({ sessionId: SID, path: 'src/a/b.txt', content: 'x' }, contextWith(calls))
      .then(
        () => null,
        (e: unknown) => toToolError(e),
      );
    expect(failure?.code).toBe('NOT_FOUND');
    expect(failure?.fix).toBe(WRITE_FILE_NOT_FOUND_FIX);
    expect(failure?.fix).toContain('createParents: true');
    expect(failure?.message).toContain('pass createParents: true');
  });

  it('writes when createParents is given', async () => {
    if (!writeFile) throw new Error('no write_file tool');
    const calls: unknown[] = [];
    const done = await writeFile.call(
      { sessionId: SID, path: 'src/a/b.txt', content: 'x', createParents: true },
      contextWith(calls),
    );
    expect(done).toEqual({ path: 'src/a/b.txt', size: 1 });
    expect(calls).toHaveLength(1);
  });
});
