import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { type StudioClient, StudioClientError } from '@studio/client';
import { afterEach, describe, expect, it } from 'vitest';
import { parseEnv } from './env.ts';
import { createStudioMcpServer, parseResourceUri, recordingUri, type StudioMcpServer } from './server.ts';

// The session recording as an MCP resource: listed per session, read as one text (the event log, then each
// terminal's asciicast), another user's session NOT_FOUND with the fix.

const SID = 'ses_recrecrecrecrecrecre';
const OTHER = 'ses_otherotherotherother';
const EVENTS = `${JSON.stringify({ at: '2026-01-01T00:00:00.000Z', actor: { kind: 'agent', name: 'alice' }, type: 'exec.started', execId: 'exe_1', command: ['ls'] })}\n`;
const CAST = `${JSON.stringify({ version: 2, width: 80, height: 24, timestamp: 1 })}\n[0.1, "o", "hello-cast\\r\\n"]\n`;
const notFound = (path: string) =>
  new StudioClientError(`session ${OTHER} not found`, {
    code: 'NOT_FOUND',
    trpcCode: 'NOT_FOUND',
    httpStatus: 404,
    path,
    requestId: 'req_1',
  });
const reads: unknown[] = [];

const fakeClient = {
  sessions: {
    list: { query: async () => [{ id: SID, state: 'running' }] },
  },
  files: { list: { query: async () => [] } },
  recordings: {
    list: {
      query: async ({ sessionId }: { sessionId: string }) => {
        if (sessionId !== SID) throw notFound('recordings.list');
        return {
          enabled: true,
          maxBytes: 16 * 1024 * 1024,
          bytes: EVENTS.length + CAST.length,
          stopped: false,
          files: [
            { name: 'events.jsonl', kind: 'events', size: EVENTS.length, durationSec: null, openedBy: null },
            {
              name: 'terminal-1.cast',
              kind: 'terminal',
              size: CAST.length,
              durationSec: 0.1,
              openedBy: { kind: 'user', userId: 'usr_a', name: 'alice' },
            },
          ],
        };
      },
    },
    get: {
      query: async (input: { sessionId: string; file: string }) => {
        reads.push(input);
        return { file: input.file, text: input.file === 'events.jsonl' ? EVENTS : CAST };
      },
    },
  },
} as unknown as StudioClient;

let studio: StudioMcpServer | undefined;

async function connect(): Promise<Client> {
  studio = createStudioMcpServer({
    env: parseEnv({ STUDIO_API_TOKEN: 'sst_test' }),
    client: fakeClient,
    log: () => undefined,
  });
  const [a, b] = InMemoryTransport.createLinkedPair();
  const client = new Client({ name: 'unit', version: '0' });
  await Promise.all([studio.server.connect(a), client.connect(b)]);
  return client;
}

afterEach(async () => {
  await studio?.close();
  reads.length = 0;
});

describe('studio://sessions/{sessionId}/recording', () => {
  it('is a template, listed for each session', async () => {
    const client = await connect();
    const templates = await client.listResourceTemplates();
    expect(templates.resourceTemplates.map((t) => t.uriTemplate)).toContain(
      'studio://sessions/{sessionId}/recording',
    );
    const listed = await client.listResources();
    expect(listed.resources).toContainEqual(
      expect.objectContaining({ uri: recordingUri(SID), mimeType: 'text/plain' }),
    );
  });

  it('reads as the event log and the terminal casts, with who opened each', async () => {
    const client = await connect();
    const read = await client.readResource({ uri: recordingUri(SID) });
    const [content] = read.contents;
    expect(content).toMatchObject({ uri: recordingUri(SID), mimeType: 'text/plain' });
    const text = (content as { text: string }).text;
    expect(text).toContain('recording is on');
    expect(text).toContain('## events.jsonl');
    expect(text).toContain('"command":["ls"]');
    expect(text).toContain('## terminal-1.cast (terminal, asciicast v2, opened by alice (user), 0.1 s)');
    expect(text).toContain('hello-cast');
    expect(text.indexOf('## events.jsonl')).toBeLessThan(text.indexOf('## terminal-1.cast'));
    expect(reads).toEqual([
      { sessionId: SID, file: 'events.jsonl' },
      { sessionId: SID, file: 'terminal-1.cast' },
    ]);
  });

  it("answers another user's session with NOT_FOUND and its fix, and checks the id", async () => {
    const client = await connect();
    await expect(client.readResource({ uri: recordingUri(OTHER) })).rejects.toMatchObject({
      data: { code: 'NOT_FOUND', fix: expect.stringMatching(/list_sessions/) },
    });
    expect(parseResourceUri(recordingUri(SID))).toEqual({ kind: 'recording', sessionId: SID });
    expect(() => parseResourceUri('studio://sessions/ses_x/recording')).toThrow(/not a Studio resource/);
  });
});
