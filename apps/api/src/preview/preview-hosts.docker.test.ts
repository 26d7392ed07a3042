import { request } from 'node:http';
import { join } from 'node:path';
import {
  createStudioClient,
  type EventSourceConstructor,
  type StudioClient,
  streamExec,
} from '@studio/client';
import { runtimePaths } from '@studio/isolation/testing';
import { DockerBackend } from '@studio/isolation-docker';
import { EventSource } from 'eventsource';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_PASSWORD,
  skipUnlessAvailable,
  startTestApi,
  TEST_DATA_DIR,
  type TestApi,
} from '../testing/api-fixture.ts';
import { previewHostName } from './preview.ts';

// Host-name previews, as served behind Traefik: each session and port on `<port>-<label>.<domain>`. Traefik
// passes the Host header through, so these tests speak to the preview port with the host names a browser
// would send. Sandboxes are labelled studio.test=preview-hosts.

const IMAGE = 'studio-sandbox:latest';
const LABELS = { 'studio.test': 'preview-hosts' };
// A registrable domain of its own, not the IDE's (studio.test): start-up refuses a same-site one.
const DOMAIN = 'studio-preview.test';
const IDE_ORIGIN = 'https://studio.test';
const backend = new DockerBackend({
  dataDir: join(TEST_DATA_DIR, 'docker'),
  instanceId: 'api-test',
  seccompProfile: runtimePaths().seccompProfile,
});
const skip = await skipUnlessAvailable(backend);

const DEV_SERVER = `require('http').createServer((q, s) => s.end('port ' + process.argv.at(-1))).listen(+process.argv.at(-1), '127.0.0.1', () => console.log('listening ' + process.argv.at(-1)));`;

/** A GET to the preview port with the given Host header (what Traefik forwards). */
function get(
  port: number,
  host: string,
  path: string,
  cookie?: string,
): Promise<{ status: number; body: string; setCookie: string | undefined; location: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, headers: { host, ...(cookie ? { cookie } : {}) } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            setCookie: res.headers['set-cookie']?.[0],
            location: res.headers.location,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe.skipIf(skip !== undefined)(
  `preview host names on Docker${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let t: TestApi;
    let alice: StudioClient;
    let previewPort: number;
    const sessions: string[] = [];
    const stops: (() => void)[] = [];

    async function devServer(sessionId: string, port: number): Promise<void> {
      let listening = false;
      const sub = streamExec(
        alice,
        { sessionId, command: ['node', '-e', DEV_SERVER, String(port)], timeoutMs: 600_000 },
        {
          onData: (e) => {
            if (e.type === 'stdout' && e.data.includes('listening')) listening = true;
          },
        },
      );
      stops.push(() => sub.unsubscribe());
      const end = Date.now() + 20_000;
      while (!listening && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      expect(listening).toBe(true);
    }

    beforeAll(async () => {
      t = await startTestApi({
        backends: [backend],
        labels: LABELS,
        env: { STUDIO_PREVIEW_DOMAIN: DOMAIN, STUDIO_PREVIEW_SCHEME: 'http', STUDIO_ORIGINS: IDE_ORIGIN },
      });
      const admin = createStudioClient({ url: t.url, token: await t.login('admin', ADMIN_PASSWORD) });
      await admin.users.create.mutate({ username: 'alice', password: 'alice-password-1' });
      alice = createStudioClient({
        url: t.url,
        token: await t.login('alice', 'alice-password-1'),
        EventSource: EventSource as unknown as EventSourceConstructor,
      });
      for (let i = 0; i < 2; i++) {
        sessions.push(
          (await alice.sessions.create.mutate({ image: IMAGE, resources: { memoryMb: 256 } })).id,
        );
      }
      await devServer(sessions[0] as string, 3000);
      await devServer(sessions[0] as string, 3001);
      await devServer(sessions[1] as string, 3000);
      const base = t.app.deps.previews.baseUrl;
      expect(base).not.toBeNull();
      previewPort = Number(new URL(base as string).port);
    });

    afterAll(async () => {
      for (const stop of stops) stop();
      for (const s of await backend.list({ labels: LABELS }))
        await backend.destroy(s.id).catch(() => undefined);
      await t?.close();
    });

    it('links name the session and port as a host; the grant works only on its own host', async () => {
      const [a, b] = sessions as [string, string];
      const link = new URL((await alice.previews.create.mutate({ sessionId: a, port: 3000 })).url);
      const host = previewHostName(a, 3000, DOMAIN);
      expect(link.host).toBe(host);
      expect(host).toMatch(/^3000-[0-9a-f]{16}\.studio-preview\.test$/);
      const path = `${link.pathname}${link.search}`;

      // The link lands only on its own host: it cannot plant its cookie on another session's or port's host.
      for (const other of [
        previewHostName(a, 3001, DOMAIN),
        previewHostName(b, 3000, DOMAIN),
        'evil.example',
      ]) {
        const wrong = await get(previewPort, other, path);
        expect(wrong.status).toBe(404);
        expect(wrong.setCookie).toBeUndefined();
      }
      const landed = await get(previewPort, host.toUpperCase(), path);
      expect(landed.status).toBe(302);
      expect(landed.location).toBe('/');
      expect(landed.setCookie).toMatch(
        /^__Host-studio_preview=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; Secure; SameSite=None; Partitioned;/,
      );
      expect(landed.setCookie).not.toMatch(/Domain=/i);
      const cookie = (landed.setCookie ?? '').split(';')[0] as string;

      expect(await get(previewPort, host, '/', cookie)).toMatchObject({ status: 200, body: 'port 3000' });
      expect(await get(previewPort, `${host}:443`, '/', cookie)).toMatchObject({ status: 200 });
      // The same cookie, replayed on another session's or another port's host, reaches nothing.
      for (const other of [previewHostName(a, 3001, DOMAIN), previewHostName(b, 3000, DOMAIN)]) {
        const replay = await get(previewPort, other, '/', cookie);
        expect(replay.status).toBe(401);
        expect(replay.body).not.toMatch(/port 300/);
      }
      // The other port of the same session has its own grant and its own host.
      const link2 = new URL((await alice.previews.create.mutate({ sessionId: a, port: 3001 })).url);
      const landed2 = await get(previewPort, link2.host, `${link2.pathname}${link2.search}`);
      const cookie2 = (landed2.setCookie ?? '').split(';')[0] as string;
      expect(await get(previewPort, link2.host, '/', cookie2)).toMatchObject({
        status: 200,
        body: 'port 3001',
      });
    });

    it('with https links, the grant cookie is __Host-, Secure and partitioned', async () => {
      const secure = await startTestApi({
        backends: [backend],
        labels: LABELS,
        env: { STUDIO_PREVIEW_DOMAIN: DOMAIN, STUDIO_ORIGINS: IDE_ORIGIN },
      });
      try {
        const grants = secure.app.deps.previews;
        const grant = grants.create('usr_any', 'ses_any', 3000);
        const link = new URL(
          grants.linkFor({ sessionId: 'ses_any', port: 3000, token: grant.token }) as string,
        );
        expect(link.protocol).toBe('https:');
        const port = Number(new URL(grants.baseUrl as string).port);
        const landed = await get(port, link.host, `${link.pathname}${link.search}`);
        expect(landed.status).toBe(302);
        expect(landed.setCookie).toMatch(
          /^__Host-studio_preview=[\w-]{43}; Path=\/; HttpOnly; Secure; SameSite=None; Partitioned;/,
        );
      } finally {
        await secure.close();
      }
    });
  },
);
