import { openTerminal } from '@studio/client';
import { describe, expect } from 'vitest';
import WebSocket from 'ws';
import { dockerApiTest, dockerSkip } from '../testing/docker-api.ts';

// A real terminal in a real Docker sandbox is recorded: what the shell printed is in the session's cast, in
// asciicast v2, and the event log says who opened it. Sandboxes are labelled studio.test=recording.

const test = dockerApiTest('recording');

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000) {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(dockerSkip !== undefined)(
  `recording on Docker${dockerSkip ? ` (skipped: ${dockerSkip})` : ''}`,
  () => {
    test("records a real terminal's output as asciicast v2", async ({ api, alice }) => {
      const { id: sessionId } = await alice.client.sessions.create.mutate({ image: 'studio-sandbox:latest' });
      try {
        const term = openTerminal({
          url: api.url,
          token: alice.token,
          sessionId,
          WebSocket: WebSocket as never,
        });
        let text = '';
        const decoder = new TextDecoder();
        term.onData((c) => {
          text += decoder.decode(c, { stream: true });
        });
        await term.ready;
        term.write('echo docker-rec-$((20+22)); exit\n');
        await until(() => text.includes('docker-rec-42'), 'the marker in the terminal');
        let cast = '';
        await until(async () => {
          const listing = await alice.client.recordings.list.query({ sessionId });
          if (!listing.files.some((f) => f.name === 'terminal-1.cast')) return false;
          cast = (await alice.client.recordings.get.query({ sessionId, file: 'terminal-1.cast' })).text;
          return cast.includes('docker-rec-42');
        }, 'the marker in the recording');
        const [header, ...entries] = cast
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as unknown);
        expect(header).toMatchObject({ version: 2, width: 80, height: 24, timestamp: expect.any(Number) });
        for (const e of entries)
          expect(e).toEqual([expect.any(Number), expect.stringMatching(/^[or]$/), expect.any(String)]);
        const log = (await alice.client.recordings.get.query({ sessionId, file: 'events.jsonl' })).text;
        expect(log).toContain('"terminal.opened"');
        expect(log).toContain('"name":"alice"');
        term.close();
      } finally {
        await alice.client.sessions.destroy.mutate({ sessionId });
      }
    });
  },
);
