import {
  createStudioClient,
  type EventSourceConstructor,
  loginStudioClient,
  type StudioClient,
  streamExec,
} from '@studio/client';
import { EventSource } from 'eventsource';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, type E2E, missingPrerequisite, startE2E, until } from './fixture.ts';

// Hostile pages served from a sandbox's preview, in a real chromium, against the real API on Docker: on the
// default local setup (IDE on 127.0.0.1, previews on *.localhost) and on a production-shaped one (IDE and
// previews on two registrable domains over TLS, through a proxy routing by Host as Traefik does).
//
// The victim is `admin`, signed in to the IDE in the browser, with a running session V. The attacker, `mallory`,
// runs a dev server in her own session M and gets the victim to open its preview link. Its pages try every way a
// page has to make the victim's browser call Studio with the victim's authority (images, forms, fetch with
// credentials, EventSource, WebSocket, top-level navigation), each aimed at a command that would leave a file
// `pwned-<vector>` in V; and its responses try to sign the IDE in as mallory and to remove preview grants.
// Each check is shown able to fail: the same request made the IDE's way (from its own origin, with its proof)
// does create the file, a changed sign-in and a removed grant are seen as such.

const skip = missingPrerequisite();
const IMAGE = 'studio-sandbox:latest';
const ES = EventSource as unknown as EventSourceConstructor;

/** Vectors that aim at `exec.run` (or `exec.start`) in V, each with the file its command would create. */
const VECTORS = [
  'img-get',
  'img-api',
  'form-run',
  'form-start',
  'fetch-simple',
  'fetch-header',
  'fetch-api',
] as const;

/** The attacker's dev server (the image's Node, in the sandbox): the attack pages and the cookie-planting response. */
function hostileServer(c: {
  targets: string[];
  sessionId: string;
  malloryToken: string;
  cookieDomain: string;
}) {
  return `
const http = require('http');
const C = ${JSON.stringify(c)};
const run = (file) => JSON.stringify({ sessionId: C.sessionId, command: ['touch', '/workspace/pwned-' + file] });
const q = (file) => encodeURIComponent(run(file));
// A text/plain form whose body is JSON: name '{"a":…,"x":"' and value '"}' give '{"a":…,"x":"="}'.
const form = (action, file, target) => {
  const body = run(file).slice(0, -1) + ',"x":"';
  return '<form method="POST" enctype="text/plain" action="' + action + '"' + (target ? ' target="' + target + '"' : '') +
    '><input name=\\'' + body + '\\' value=\\'"}\\'></form>';
};
const page = () => {
  const [web, api] = C.targets;
  let html = '<!doctype html><title>hostile</title><iframe name="sink"></iframe>';
  html += '<img src="' + web + '/trpc/exec.run?input=' + q('img-get') + '">';
  html += '<img src="' + web + '/trpc/events.subscribe?input=' + encodeURIComponent(JSON.stringify({ sessionId: C.sessionId })) + '">';
  if (api) html += '<img src="' + api + '/trpc/exec.run?input=' + q('img-api') + '">';
  html += form(web + '/trpc/exec.run', 'form-run', 'sink') + form(web + '/trpc/exec.start', 'form-start', 'sink');
  html += '<script>const C=' + JSON.stringify({ web, api, sessionId: C.sessionId, bodies: Object.fromEntries(['fetch-simple','fetch-header','fetch-api'].map((f) => [f, run(f)])) }) + ';' + ${JSON.stringify(
    `
window.results = {};
const note = (k) => (v) => { window.results[k] = String(v && v.status !== undefined ? v.status + ' ' + v.type : v); };
for (const f of document.forms) f.submit();
fetch(C.web + '/trpc/exec.run', { method: 'POST', credentials: 'include', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: C.bodies['fetch-simple'] }).then(note('fetch-simple'), note('fetch-simple'));
fetch(C.web + '/trpc/exec.run', { method: 'POST', credentials: 'include', headers: { 'content-type': 'application/json', 'x-studio-ide': '1' }, body: C.bodies['fetch-header'] }).then(note('fetch-header'), note('fetch-header'));
fetch(C.web + '/trpc/auth.me', { credentials: 'include' }).then((r) => r.text()).then(note('fetch-read'), note('fetch-read'));
if (C.api) fetch(C.api + '/trpc/exec.run', { method: 'POST', credentials: 'include', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: C.bodies['fetch-api'] }).then(note('fetch-api'), note('fetch-api'));
const es = new EventSource(C.web + '/trpc/events.subscribe?input=' + encodeURIComponent(JSON.stringify({ sessionId: C.sessionId })), { withCredentials: true });
es.onmessage = (m) => { window.results.eventsource = 'message ' + m.data.slice(0, 80); };
es.onerror = () => { window.results.eventsource = window.results.eventsource || 'error'; };
const ws = new WebSocket(C.web.replace(/^http/, 'ws') + '/terminal');
ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token: 'none', sessionId: C.sessionId }));
ws.onmessage = (m) => { window.results.websocket = 'message ' + String(m.data).slice(0, 80); };
ws.onclose = (e) => { window.results.websocket = window.results.websocket || 'closed ' + e.code; };
setTimeout(() => { document.title = 'done'; }, 4000);
`,
  )} + '</script>';
  return html;
};
http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/cookies') {
    const t = C.malloryToken;
    res.writeHead(200, { 'content-type': 'text/html', 'set-cookie': [
      'studio_token=' + t + '; Path=/',
      '__Host-studio_token=' + t + '; Path=/; Secure',
      '__Host-studio_token=' + t + '; Path=/; Secure; SameSite=None',
      'studio_token=' + t + '; Path=/; Domain=' + C.cookieDomain,
      '__Host-studio_preview=; Path=/; Secure; Max-Age=0',
      '__Host-studio_preview=' + 'A'.repeat(43) + '; Path=/; Secure; SameSite=None; Partitioned',
      'studio_preview=; Path=/; Max-Age=0',
      'app=kept; Path=/',
    ] });
    res.end('<!doctype html><title>cookies</title><p>planted</p>');
    return;
  }
  if (url.pathname === '/nav-get') {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><script>location.href = ' + JSON.stringify(C.targets[0] + '/trpc/auth.me') + ';</script>');
    return;
  }
  if (url.pathname === '/nav-post') {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html>' + form(C.targets[0] + '/trpc/exec.run', 'nav-post', '') + '<script>document.forms[0].submit();</script>');
    return;
  }
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end(page());
}).listen(Number(process.argv[2]), () => console.log('listening'));
`;
}

/** Runs `script` in the sandbox as a dev server on `port` and resolves once it prints "listening". */
async function serve(client: StudioClient, sessionId: string, command: string[]): Promise<() => void> {
  let listening = false;
  let failure: unknown;
  const run = streamExec(
    client,
    { sessionId, command, timeoutMs: 600_000 },
    {
      onData: (e) => {
        if ((e.type === 'stdout' || e.type === 'stderr') && /listening|Serving HTTP/.test(e.data))
          listening = true;
      },
      onError: (error) => {
        failure = error;
      },
    },
  );
  await until(() => listening || failure !== undefined, `the dev server (${command.join(' ')})`);
  if (failure !== undefined) throw failure;
  return () => run.unsubscribe();
}

for (const mode of ['local', 'production'] as const) {
  describe.skipIf(skip !== undefined)(
    `hostile previews, ${mode} setup${skip ? ` (skipped: ${skip})` : ''}`,
    () => {
      let e: E2E;
      let admin: StudioClient;
      let victimSession = '';
      let hostileOrigin = '';
      let ownPreview = '';
      let malloryToken = '';
      let mallory: StudioClient | undefined;
      const stops: (() => void)[] = [];

      /** Runs `fn` in the IDE tab (the IDE's own origin), as the IDE's code does. */
      const fromIde = <T, A>(fn: (arg: A) => Promise<T>, arg: A): Promise<T> =>
        e.page.evaluate(fn as never, arg as never) as Promise<T>;
      const ideCall = (path: string, input: unknown) =>
        fromIde(
          async ({ path, input }) => {
            const res = await fetch(`/trpc/${path}`, {
              method: 'POST',
              headers: { 'content-type': 'application/json', 'x-studio-ide': '1' },
              body: JSON.stringify(input),
            });
            return { status: res.status, body: await res.text() };
          },
          { path, input },
        );
      const whoAmI = () =>
        fromIde(async () => {
          const res = await fetch('/trpc/auth.me', { headers: { 'x-studio-ide': '1' } });
          const body = (await res.json()) as { result?: { data: { username: string } } };
          return body.result?.data.username ?? `refused ${res.status}`;
        }, undefined);
      const pwned = async () =>
        (await admin.files.list.query({ sessionId: victimSession }))
          .map((f) => f.path)
          .filter((p) => p.startsWith('pwned-'))
          .sort();
      // Every cookie in the browser that could be a sign-in (any name, any host).
      const loginCookie = async () =>
        (await e.context.cookies()).filter((c) => /studio_token/i.test(c.name) || c.value === malloryToken);

      beforeAll(async () => {
        e = await startE2E({ mode });
        const signedIn = await loginStudioClient({
          url: e.apiUrl,
          username: 'admin',
          password: ADMIN_PASSWORD,
        });
        admin = createStudioClient({ url: e.apiUrl, token: signedIn.token, EventSource: ES });
        await admin.users.create.mutate({ username: 'mallory', password: 'mallory-password-1' });
        const m = await loginStudioClient({
          url: e.apiUrl,
          username: 'mallory',
          password: 'mallory-password-1',
        });
        mallory = createStudioClient({ url: e.apiUrl, token: m.token, EventSource: ES });
        malloryToken = m.token;

        victimSession = (await admin.sessions.create.mutate({ image: IMAGE })).id;
        const attackerSession = (await mallory.sessions.create.mutate({ image: IMAGE })).id;
        const webTargets = mode === 'local' ? [e.webUrl, e.apiUrl] : [e.webUrl];
        await mallory.files.write.mutate({
          sessionId: attackerSession,
          path: 'hostile.js',
          content: hostileServer({
            targets: webTargets,
            sessionId: victimSession,
            malloryToken: m.token,
            cookieDomain: mode === 'local' ? 'localhost' : 'studio-preview.test',
          }),
        });
        stops.push(await serve(mallory, attackerSession, ['node', 'hostile.js', '8000']));
        stops.push(await serve(admin, victimSession, ['python3', '-u', '-m', 'http.server', '8001']));
        const link = (await mallory.previews.create.mutate({ sessionId: attackerSession, port: 8000 })).url;
        expect(link).toMatch(e.previewUrlPattern);
        hostileOrigin = new URL(link).origin;

        // The victim signs in to the IDE, in the browser.
        await e.page.goto(e.webUrl);
        await e.page.waitForURL('**/login');
        await e.page.getByLabel('Password').fill(ADMIN_PASSWORD);
        await e.page.getByRole('button', { name: 'Sign in' }).click();
        await e.page.getByRole('button', { name: 'Create session' }).waitFor();
        expect(await whoAmI()).toBe('admin');
        // The victim's own preview (V, port 8001), granted in its own tab.
        const own = (await admin.previews.create.mutate({ sessionId: victimSession, port: 8001 })).url;
        ownPreview = new URL(own).origin;
        const tab = await e.context.newPage();
        await tab.goto(own);
        await tab.getByText('Directory listing for /').waitFor();
        await tab.close();
        // The victim follows the attacker's link (it grants that preview only).
        const hostile = await e.context.newPage();
        await hostile.goto(link);
        await hostile.waitForFunction(() => document.title === 'done', undefined, { timeout: 30_000 });
        await hostile.close();
      });

      afterAll(async () => {
        for (const stop of stops) stop();
        // The fixture destroys the admin's sessions; the attacker's go here (their workspaces are mounts).
        for (const s of (await mallory?.sessions.list.query().catch(() => [])) ?? [])
          await mallory?.sessions.destroy.mutate({ sessionId: s.id }).catch(() => undefined);
        await e?.close();
      });

      it('runs nothing in the victim session: images, forms, fetch, EventSource, WebSocket; the IDE way does', async () => {
        // Everything the hostile page fired has landed by now (it waited 4 s before saying done).
        expect(await pwned()).toEqual([]);
        // Nobody watches V: the EventSource and the WebSocket reached no procedure with the victim's authority.
        expect(await admin.events.watchers.query({ sessionId: victimSession })).toEqual([]);
        const page = await e.context.newPage();
        try {
          await page.goto(`${hostileOrigin}/`);
          await page.waitForFunction(() => document.title === 'done', undefined, { timeout: 30_000 });
          const results = (await page.evaluate(
            () => (window as unknown as { results: unknown }).results,
          )) as Record<string, string>;
          // The header-carrying fetch never left the browser (no CORS approval), the readable ones saw no data.
          expect(results['fetch-header']).toMatch(/TypeError/);
          expect(results['fetch-read'] ?? '').not.toContain('"username":"admin"');
          expect(results.eventsource ?? '').not.toMatch(/^message/);
          expect(results.websocket ?? '').not.toMatch(/^message .*"ready"/);
        } finally {
          await page.close();
        }
        expect(await pwned()).toEqual([]);
        expect(await admin.events.watchers.query({ sessionId: victimSession })).toEqual([]);

        // The check can fail: the same calls made the IDE's way create every file, and the IDE's own event stream
        // and terminal show up as watchers.
        for (const vector of VECTORS) {
          const r = await ideCall('exec.run', {
            sessionId: victimSession,
            command: ['touch', `/workspace/pwned-${vector}`],
          });
          expect(r.status, r.body).toBe(200);
        }
        expect(await pwned()).toEqual(VECTORS.map((v) => `pwned-${v}`).sort());
        for (const v of VECTORS)
          await admin.files.remove.mutate({ sessionId: victimSession, path: `pwned-${v}` });
        await e.page.goto(`${e.webUrl}/s/${victimSession}`);
        await until(async () => {
          const via = (await admin.events.watchers.query({ sessionId: victimSession })).map((w) => w.via);
          return via.includes('events') && via.includes('terminal');
        }, 'the IDE to watch V');
        await e.page.goto(e.webUrl);
        await e.page.getByRole('button', { name: 'Create session' }).waitFor();
      });

      it('top-level navigations carry no authority: a GET reads nothing, a POST runs nothing', async () => {
        expect(await pwned()).toEqual([]);
        const page = await e.context.newPage();
        try {
          await page.goto(`${hostileOrigin}/nav-get`);
          await page.waitForURL(`${e.webUrl}/trpc/auth.me`);
          const text = (await page.locator('body').textContent()) ?? '';
          expect(text).not.toContain('"username":"admin"');
          expect(text).toMatch(/UNAUTHENTICATED|ORIGIN_REFUSED/);

          await page.goto(`${hostileOrigin}/nav-post`);
          await page.waitForURL(`${e.webUrl}/trpc/exec.run`);
          expect(await page.locator('body').textContent()).toMatch(
            /UNAUTHENTICATED|ORIGIN_REFUSED|UNSUPPORTED/,
          );
        } finally {
          await page.close();
        }
        expect(await pwned()).toEqual([]);
        // The same calls from the IDE's origin, with its proof, are the victim's.
        expect(await whoAmI()).toBe('admin');
        const r = await ideCall('exec.run', {
          sessionId: victimSession,
          command: ['touch', '/workspace/pwned-nav-post'],
        });
        expect(r.status, r.body).toBe(200);
        expect(await pwned()).toEqual(['pwned-nav-post']);
        await admin.files.remove.mutate({ sessionId: victimSession, path: 'pwned-nav-post' });
      });

      it('no sandbox response changes who the IDE is signed in as, or removes a preview grant', async () => {
        const cookieBefore = await loginCookie();
        expect(cookieBefore).toHaveLength(1);
        expect(cookieBefore[0]).toMatchObject({
          name: '__Host-studio_token',
          domain: new URL(e.webUrl).hostname,
          path: '/',
          secure: true,
          httpOnly: true,
          sameSite: 'Strict',
        });
        const page = await e.context.newPage();
        try {
          await page.goto(`${hostileOrigin}/cookies`);
          await page.getByText('planted').waitFor();
          // The app's own cookie stays, host-only, on its own preview host; no Studio name came from the sandbox.
          const all = await e.context.cookies();
          const app = all.filter((c) => c.name === 'app');
          expect(app.map((c) => c.domain)).toEqual([new URL(hostileOrigin).hostname]);
          expect(all.filter((c) => c.value === 'A'.repeat(43) || c.name === 'studio_preview')).toEqual([]);
          // The attacker's own grant survived its own dev server's attempt to clear it.
          await page.goto(`${hostileOrigin}/`);
          await page.waitForFunction(() => document.title === 'done', undefined, { timeout: 30_000 });
        } finally {
          await page.close();
        }
        expect(await loginCookie()).toEqual(cookieBefore);
        expect(await whoAmI()).toBe('admin');
        // The victim's own preview still opens with its grant.
        const own = await e.context.newPage();
        try {
          await own.goto(`${ownPreview}/`);
          await own.getByText('Directory listing for /').waitFor();

          // The checks can fail: without the grant cookie the preview refuses, and a sign-in answered on the IDE's
          // own origin does change who the IDE is.
          await e.context.clearCookies({ domain: new URL(ownPreview).hostname });
          const refused = await own.goto(`${ownPreview}/`);
          expect(refused?.status()).toBe(401);
        } finally {
          await own.close();
        }
        const swapped = await ideCall('auth.login', { username: 'mallory', password: 'mallory-password-1' });
        expect(swapped.status).toBe(200);
        expect(await whoAmI()).toBe('mallory');
        await ideCall('auth.login', { username: 'admin', password: ADMIN_PASSWORD });
        expect(await whoAmI()).toBe('admin');
      });
    },
  );
}
