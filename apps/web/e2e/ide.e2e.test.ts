import { readFileSync } from 'node:fs';
import { createStudioClient, isStudioClientError, type StudioClient } from '@studio/client';
import type { ConsoleMessage } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, type E2E, missingPrerequisite, startE2E, until } from './fixture.ts';

// The IDE end to end: the real API (child process) on a real Docker backend, the production web build behind
// its own server, and Debian's chromium driven by playwright-core. Every step saves a screenshot to
// apps/web/e2e/screenshots/ (git-ignored). Every session is destroyed and every process stopped afterwards.

const skip = missingPrerequisite();
const XSS = '<img src=x onerror=alert(1)>';
// Secret values typed into the secrets page: neither may ever be on the page again once saved.
const SECRET_VALUE = 'sk-e2e-first-value-0123456789';
const ROTATED_VALUE = 'sk-e2e-rotated-value-9876543210';

describe.skipIf(skip !== undefined)(`web IDE e2e${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let e: E2E;
  let sessionId = '';
  // What chromium reports while the secrets tests run: a refused script or style would be a CSP violation.
  const cspViolations: string[] = [];
  const onConsole = (message: ConsoleMessage) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  };
  // Everything of the page a person could read: its text, its markup (attributes) and every field's value.
  const everythingShown = () =>
    e.page.evaluate(() =>
      [
        document.documentElement.outerHTML,
        // biome-ignore lint/performance/useDomNodeTextContent: the rendered text is what a person reads
        document.body.innerText,
        ...Array.from(document.querySelectorAll('input, textarea'), (el) => (el as HTMLInputElement).value),
      ].join('\n'),
    );

  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator, not a DOM node
  const terminalText = () => e.page.locator('.xterm-rows').innerText();
  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator, not a DOM node
  const editorText = () => e.page.locator('.cm-content').innerText();

  beforeAll(async () => {
    e = await startE2E();
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail')
      await e?.shot(`FAILED-${ctx.task.name.slice(0, 40).replace(/\W+/g, '-')}`);
  });

  afterAll(async () => {
    await e?.close();
  });

  it('shows the login page with the first-start hint and signs in', async () => {
    const { page } = e;
    await page.goto(e.webUrl);
    await page.waitForURL('**/login');
    await page.getByText('First start?').click();
    await page.getByText('prints a one-time password').waitFor();
    await e.shot('login');
    await page.getByLabel('Password').fill('wrong-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('Wrong username or password.').waitFor();
    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('No sessions yet').waitFor();
    await e.shot('dashboard-empty');
    // The policy package's headers, with a fresh nonce per response.
    const a = await fetch(`${e.webUrl}/login`);
    const b = await fetch(`${e.webUrl}/login`);
    const csp = a.headers.get('content-security-policy') ?? '';
    expect(csp).toMatch(/script-src 'self' 'nonce-[^']+' 'strict-dynamic'/);
    expect(csp).not.toContain('unsafe');
    expect(csp).toContain(`frame-src ${e.previewOrigin}`);
    expect(csp).not.toBe(b.headers.get('content-security-policy'));
    expect(a.headers.get('x-frame-options')).toBe('DENY');
  });

  it('creates a session from the dashboard and opens the IDE', async () => {
    const { page } = e;
    await page.getByRole('button', { name: 'Create session' }).click();
    await page.getByRole('link', { name: /^Open session ses_/ }).waitFor({ timeout: 120_000 });
    const sessions = await e.client.sessions.list.query();
    expect(sessions).toHaveLength(1);
    sessionId = sessions[0]?.id ?? '';
    // Memory used / its limit, then pids: an idle sandbox holds only the agent (under 1 MiB since it is the Rust
    // binary), so the unit is any of B, KiB, MiB, GiB.
    await page.getByText(/(\d B|iB) \/ .*pids/).waitFor({ timeout: 30_000 });
    await e.shot('dashboard-session');
    await page.getByRole('link', { name: `Open session ${sessionId}` }).click();
    await page.waitForURL(`**/s/${sessionId}`);
    await page.getByText('The workspace is empty').waitFor();
    await page.getByText('Terminal: ready').waitFor({ timeout: 30_000 });
    await e.shot('ide-open');
  });

  it('writes a file in the editor, saves it with Ctrl+S and runs it in the terminal', async () => {
    const { page } = e;
    await page.getByRole('button', { name: 'New file' }).click();
    await page.getByLabel('New file name').fill('hello.py');
    await page.getByRole('button', { name: 'OK' }).click();
    await page.locator('.cm-content').waitFor();
    await page.locator('.cm-content').click();
    await page.keyboard.type('print("hello from " + "the editor")');
    await page.getByLabel('unsaved changes').waitFor();
    await e.shot('editor-dirty');
    await page.keyboard.press('Control+s');
    await page.getByLabel('unsaved changes').waitFor({ state: 'detached' });
    const saved = await e.client.files.read.query({ sessionId, path: 'hello.py' });
    expect(saved.content).toBe('print("hello from " + "the editor")');
    await e.shot('editor-saved');

    await page.locator('.terminal-host').click();
    await page.keyboard.type('python3 hello.py\n');
    await until(async () => (await terminalText()).includes('hello from the editor'), 'the program output');
    await e.shot('terminal-run');

    // The shell has the size the page fitted it to, not the 80×24 it opened with.
    await page.keyboard.type('echo SIZE=$(stty size)=\n');
    await until(async () => /SIZE=\d+ \d+=/.test(await terminalText()), 'stty size');
    const [, rows, cols] = /SIZE=(\d+) (\d+)=/.exec(await terminalText()) ?? [];
    expect(`${rows} ${cols}`).not.toBe('24 80');
    expect(Number(rows)).toBeGreaterThan(4);
    expect(Number(cols)).toBeGreaterThan(40);

    // What a process in the sandbox creates shows up in the tree without a refresh.
    await page.keyboard.type('mkdir -p made && echo x > made/by-terminal.txt && echo y > by-shell.txt\n');
    await page.locator('.tree-name', { hasText: 'by-shell.txt' }).waitFor();
    await page.locator('.tree-name', { hasText: 'made' }).waitFor();
    await page.locator('.activity-item', { hasText: 'changed by-shell.txt' }).first().waitFor();
    await e.shot('tree-live-from-terminal');
  });

  it('shows a dev server started in the sandbox in the preview pane', async () => {
    const { page } = e;
    await page.locator('.terminal-host').click();
    await page.keyboard.type('python3 -m http.server 8000 >/tmp/http.log 2>&1 &\n');
    await new Promise((r) => setTimeout(r, 1500));
    await page.getByLabel('Port').fill('8000');
    const frame = page.frameLocator('iframe.preview-frame');
    await until(async () => {
      await page.getByRole('button', { name: 'Show preview' }).click();
      return frame
        .getByText('Directory listing for /')
        .waitFor({ timeout: 3000 })
        .then(
          () => true,
          () => false,
        );
    }, 'the preview to show the dev server');
    await frame.getByText('hello.py').waitFor();
    const sandbox = await page.locator('iframe.preview-frame').getAttribute('sandbox');
    expect(sandbox).toBe('allow-scripts allow-forms allow-same-origin');
    // Its own host, `8000-<label>.localhost:<port>`: another site than the IDE on 127.0.0.1.
    expect(await page.locator('iframe.preview-frame').getAttribute('src')).toMatch(e.previewUrlPattern);
    await e.shot('preview');
  });

  it('renders hostile output and file names as text, with no dialog', async () => {
    const { page } = e;
    await page.getByRole('button', { name: 'New file' }).click();
    await page.getByLabel('New file name').fill(XSS);
    await page.getByRole('button', { name: 'OK' }).click();
    await page.locator('.tree-name', { hasText: XSS }).waitFor();
    await page.locator('.terminal-host').click();
    await page.keyboard.type(`echo '${XSS}'; printf '\\033[31m%s\\033[0m\\n' 'red ${XSS}'\n`);
    await until(async () => (await terminalText()).includes(`red ${XSS}`), 'the terminal echo');
    await page.getByRole('tab', { name: /^Console/ }).click();
    await page.getByLabel('Command to run').fill(`printf '\\033[32m%s\\033[0m\\n' '${XSS}'`);
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    const line = page.locator('.console-stdout .ansi-fg-2', { hasText: XSS });
    await line.waitFor();
    expect(await line.textContent()).toBe(XSS);
    await page.waitForTimeout(500);
    expect(await page.locator('img').count()).toBe(0);
    expect(e.dialogs).toEqual([]);
    await e.shot('xss-as-text');
    await page.getByRole('tab', { name: 'Terminal' }).click();
  });

  it('shows changes made through the API live: tree, clean tab reload, dirty tab conflict', async () => {
    const { page } = e;
    await e.client.files.write.mutate({
      sessionId,
      path: 'from-api.txt',
      content: 'written by another client',
    });
    await page.locator('.tree-name', { hasText: 'from-api.txt' }).waitFor();
    await page.locator('.activity-item', { hasText: 'wrote from-api.txt' }).first().waitFor();

    await page.locator('.tree-name', { hasText: 'hello.py' }).click();
    await e.client.files.write.mutate({
      sessionId,
      path: 'hello.py',
      content: 'print("changed by the API")',
    });
    await until(async () => (await editorText()).includes('changed by the API'), 'the clean tab to reload');

    await page.locator('.cm-content').click();
    await page.keyboard.press('End');
    await page.keyboard.type('  # mine');
    await page.getByLabel('unsaved changes').waitFor();
    await e.client.files.write.mutate({ sessionId, path: 'hello.py', content: 'print("second API change")' });
    await page.getByText('changed on disk while you were editing it').waitFor();
    expect(await editorText()).toContain('# mine');
    await e.shot('live-conflict');
    await page.getByRole('button', { name: 'Reload from disk (discard mine)' }).click();
    await until(async () => (await editorText()).includes('second API change'), 'the reload from disk');
  });

  it("shows the session's network, edits its allowlist, and shows the change and refused connections in the feed", async () => {
    const { page } = e;
    const panel = page.locator('#network-panel');
    await page.getByRole('button', { name: 'network: none' }).click();
    await panel.waitFor();
    await e.shot('network-panel');
    await panel.getByLabel('Mode').selectOption('allowlist');
    // A refused entry: what to do, the API's words naming the entry, then the code on its own line.
    await panel.getByLabel('Allowed hosts').fill('localhost');
    await panel.getByRole('button', { name: 'Save' }).click();
    const refusal = panel.getByRole('alert');
    await refusal.getByText('An allowlist entry is not valid').waitFor();
    await refusal.getByText(/"localhost"/).waitFor();
    await refusal.getByText('Code: HOST_INVALID').waitFor();
    await e.shot('network-refused');
    expect((await e.client.sessions.get.query({ sessionId })).network).toEqual({ mode: 'none', allow: [] });

    await panel.getByLabel('Allowed hosts').fill('registry.npmjs.org\n*.PyPI.org, registry.npmjs.org');
    await panel.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('button', { name: 'network: allowlist · 2 hosts' }).waitFor();
    await panel.waitFor({ state: 'detached' });
    expect((await e.client.sessions.get.query({ sessionId })).network).toEqual({
      mode: 'allowlist',
      allow: ['registry.npmjs.org', '*.pypi.org'],
    });
    await page
      .locator('.activity-item', { hasText: 'set the network to allowlist: registry.npmjs.org, *.pypi.org' })
      .getByText('you', { exact: true })
      .waitFor();

    // A program's connection to a host not on the list goes through the proxy, is refused at once, and shows
    // up as the sandbox's.
    const run = await e.client.exec.run.mutate({
      sessionId,
      command: [
        'python3',
        '-c',
        "import urllib.request as u; u.urlopen('https://denied.example.org/', timeout=10)",
      ],
      timeoutMs: 20_000,
    });
    expect(run.exitCode).not.toBe(0);
    await page
      .locator('.activity-item.denied', { hasText: '→ denied.example.org:443 denied: not in the allowlist' })
      .getByText('the sandbox', { exact: true })
      .waitFor();
    await e.shot('network-feed');

    // A change made elsewhere (another tab, an agent) moves the badge too.
    await e.client.sessions.setNetwork.mutate({ sessionId, network: { mode: 'none' } });
    await page.getByRole('button', { name: 'network: none' }).waitFor();
    await page.locator('.activity-item', { hasText: 'set the network to none' }).first().waitFor();
  });

  it('takes control: an agent token gets HUMAN_HAS_CONTROL; after release its edits show live', async () => {
    const { page } = e;
    const { token } = await e.client.tokens.create.mutate({ name: 'e2e-agent', agent: true });
    const agent: StudioClient = createStudioClient({ url: e.apiUrl, token });
    await page.locator('.watchers').getByText('you (events)').waitFor();
    await page.getByRole('button', { name: 'Take control' }).click();
    await page.getByRole('button', { name: 'Release control' }).waitFor();
    await page.locator('.control').getByText('admin').waitFor();
    const refused = await agent.files.write
      .mutate({ sessionId, path: 'agent.txt', content: 'should not land' })
      .then(
        () => null,
        (error: unknown) => error,
      );
    expect(isStudioClientError(refused, 'HUMAN_HAS_CONTROL')).toBe(true);
    await page.locator('.activity-item', { hasText: 'took control' }).first().waitFor();
    await e.shot('control-taken');

    await page.getByRole('button', { name: 'Release control' }).click();
    await page.getByRole('button', { name: 'Take control' }).waitFor();
    await agent.files.write.mutate({ sessionId, path: 'agent.txt', content: 'the agent was here' });
    await page.locator('.activity-item', { hasText: 'wrote agent.txt' }).getByText('agent (admin)').waitFor();
    await page.locator('.tree-name', { hasText: 'agent.txt' }).waitFor();
    await e.shot('agent-edit-live');
  });

  it('reconnects the terminal and live events after the connection drops', async () => {
    const { page } = e;
    await e.restartWeb();
    // The server saw the old terminal leave and a new one (a fresh socket token) join.
    const terminals = page.locator('.activity-item', { hasText: 'started watching (terminal)' });
    await until(async () => (await terminals.count()) >= 2, 'the terminal to reconnect', 60_000);
    await page.getByText('Terminal: ready').waitFor();
    await page.locator('.terminal-host').click();
    await page.keyboard.type('echo reconnected-$((6*7))\n');
    await until(async () => (await terminalText()).includes('reconnected-42'), 'the reconnected terminal');
    await e.client.files.write.mutate({ sessionId, path: 'after-drop.txt', content: 'still live' });
    await page.locator('.tree-name', { hasText: 'after-drop.txt' }).waitFor({ timeout: 60_000 });
    await e.shot('reconnected');
  });

  it('renames, downloads, deletes and uploads files from the tree; guards binary files', async () => {
    const { page } = e;
    await page.locator('.tree-name', { hasText: 'agent.txt' }).click();
    await page.getByRole('button', { name: 'Rename agent.txt' }).click();
    await page.getByLabel('Rename to').fill('renamed.txt');
    await page.getByRole('button', { name: 'OK' }).click();
    await page.locator('.tree-name', { hasText: 'renamed.txt' }).waitFor();
    expect((await e.client.files.read.query({ sessionId, path: 'renamed.txt' })).content).toBe(
      'the agent was here',
    );

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download renamed.txt' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe('renamed.txt');
    expect(readFileSync(await download.path(), 'utf8')).toBe('the agent was here');

    await page.getByRole('button', { name: 'Delete renamed.txt' }).click();
    await page.getByRole('button', { name: 'Yes, delete' }).click();
    await page.locator('.tree-name', { hasText: 'renamed.txt' }).waitFor({ state: 'detached' });
    const gone = await e.client.files.read.query({ sessionId, path: 'renamed.txt' }).then(
      () => null,
      (error: unknown) => error,
    );
    expect(isStudioClientError(gone, 'NOT_FOUND')).toBe(true);

    const bytes = Buffer.from([0, 1, 2, 3, 255, 254, 0, 7]);
    await page
      .locator('input[type=file]')
      .setInputFiles({ name: 'blob.dat', mimeType: 'application/octet-stream', buffer: bytes });
    await page.locator('.tree-name', { hasText: 'blob.dat' }).waitFor();
    const uploaded = await e.client.files.read.query({ sessionId, path: 'blob.dat', encoding: 'base64' });
    expect(Buffer.from(uploaded.content, 'base64')).toEqual(bytes);
    await page.locator('.tree-name', { hasText: 'blob.dat' }).click();
    await page.getByText('blob.dat looks binary and is not opened in the editor.').waitFor();
    await e.shot('files-binary-guard');
  });

  it('adds a secret on its page (a refusal first), lists it without its value, and rotates it', async () => {
    const { page } = e;
    page.on('console', onConsole);
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Secrets' }).click();
    await page.waitForURL('**/secrets');
    await page.getByText('No secrets yet.').waitFor();
    expect(await page.getByLabel('Header', { exact: true }).inputValue()).toBe(
      'Authorization: Bearer {{value}}',
    );

    await page.getByLabel('Name', { exact: true }).fill('e2e_api_key');
    await page.getByLabel('Value', { exact: true }).fill(SECRET_VALUE);
    await page.getByLabel('Hosts', { exact: true }).fill('api.example.com\n*.Example.ORG');
    await page.getByRole('button', { name: 'Add secret' }).click();
    const refusal = page.getByRole('alert');
    await refusal.getByText('The secret is not valid').waitFor();
    await refusal.getByText(/^name: secret name "e2e_api_key"/).waitFor();
    await refusal.getByText(/Code: SECRET_INVALID/).waitFor();
    await e.shot('secret-refused');

    await page.getByLabel('Name', { exact: true }).fill('E2E_API_KEY');
    await page.getByRole('button', { name: 'Add secret' }).click();
    await page.getByRole('status').getByText('Saved E2E_API_KEY. Its value is not shown again.').waitFor();
    const row = page.getByRole('row', { name: /E2E_API_KEY/ });
    await row.getByText('*.example.org', { exact: true }).waitFor();
    await row.getByText('api.example.com', { exact: true }).waitFor();
    await row.getByText('Authorization: Bearer {{value}}').waitFor();
    // The form is empty again, and the value is nowhere: not in the text, the markup or a field.
    expect(await page.getByLabel('Value', { exact: true }).inputValue()).toBe('');
    expect(await page.getByLabel('Name', { exact: true }).inputValue()).toBe('');
    expect(await everythingShown()).not.toContain(SECRET_VALUE);
    const listed = await e.client.secrets.list.query();
    expect(listed).toEqual([
      {
        name: 'E2E_API_KEY',
        hosts: ['*.example.org', 'api.example.com'],
        header: 'Authorization: Bearer {{value}}',
        createdAt: expect.any(String),
        updatedAt: expect.any(String),
      },
    ]);
    expect(JSON.stringify(listed)).not.toContain(SECRET_VALUE);
    await e.shot('secret-added');

    await page.getByRole('button', { name: 'Rotate E2E_API_KEY' }).click();
    await page.getByLabel('New value for E2E_API_KEY').fill(ROTATED_VALUE);
    await page.getByRole('button', { name: 'Save' }).click();
    await page
      .getByRole('status')
      .getByText(/^Rotated E2E_API_KEY\./)
      .waitFor();
    await page.getByLabel('New value for E2E_API_KEY').waitFor({ state: 'detached' });
    const shown = await everythingShown();
    expect(shown).not.toContain(SECRET_VALUE);
    expect(shown).not.toContain(ROTATED_VALUE);
    const [rotated] = await e.client.secrets.list.query();
    expect(Date.parse(rotated?.updatedAt ?? '')).toBeGreaterThan(Date.parse(listed[0]?.updatedAt ?? ''));
    expect(cspViolations).toEqual([]);
    await e.shot('secret-rotated');
  });

  it('explains the session limit and destroys a session after confirmation', async () => {
    const { page } = e;
    await page.getByRole('link', { name: 'Claude Studio' }).click();
    await page.getByRole('link', { name: `Open session ${sessionId}` }).waitFor();
    // The second one with an allowlist, picked in the form.
    await page.getByLabel('Network').selectOption('allowlist');
    await page.getByLabel('Allowed hosts').fill('registry.npmjs.org, *.pypi.org');
    // ... and given the secret stored above, ticked in the form.
    await page.getByRole('group', { name: 'Secrets' }).getByRole('checkbox', { name: 'E2E_API_KEY' }).check();
    await page.getByRole('button', { name: 'Create session' }).click();
    await until(
      async () => (await page.getByRole('link', { name: /^Open session ses_/ }).count()) === 2,
      'a second session',
      120_000,
    );
    await page.getByRole('cell', { name: 'allowlist · 2 hosts' }).waitFor();
    const given = (await e.client.sessions.list.query()).find((s) => s.id !== sessionId);
    expect(given?.network).toEqual({
      mode: 'allowlist',
      allow: ['registry.npmjs.org', '*.pypi.org'],
    });
    expect(given?.secrets).toEqual(['E2E_API_KEY']);
    // The session view names its secrets (never their values); its programs hold only a placeholder.
    await page.getByRole('link', { name: `Open session ${given?.id}` }).click();
    await page.waitForURL(`**/s/${given?.id}`);
    await page.getByText('secrets: E2E_API_KEY', { exact: true }).waitFor();
    const env = await e.client.exec.run.mutate({
      sessionId: given?.id ?? '',
      command: ['sh', '-c', 'printf %s "$E2E_API_KEY"'],
    });
    expect(env.stdout).toMatch(/^studio-placeholder-/);
    expect(env.stdout).not.toContain(ROTATED_VALUE);
    expect(await everythingShown()).not.toContain(ROTATED_VALUE);
    await e.shot('session-with-secret');
    await page.getByRole('link', { name: 'Claude Studio' }).click();
    await page.getByRole('link', { name: `Open session ${sessionId}` }).waitFor();
    await page.getByRole('button', { name: 'Create session' }).click();
    await page.getByText('You have reached your limit of live sessions').waitFor();
    await e.shot('session-limit');

    const second = (await e.client.sessions.list.query()).find((s) => s.id !== sessionId);
    expect(second).toBeDefined();
    await page.getByRole('button', { name: `Destroy session ${second?.id}` }).click();
    await page.getByRole('button', { name: 'Yes, destroy' }).click();
    await until(
      async () => (await page.getByRole('link', { name: /^Open session ses_/ }).count()) === 1,
      'the destroy',
    );
    expect((await e.client.sessions.list.query()).map((s) => s.id)).toEqual([sessionId]);
    expect(e.dialogs).toEqual([]);
    await e.shot('destroyed');
  });

  it('deletes a secret after confirmation', async () => {
    const { page } = e;
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Secrets' }).click();
    await page.getByRole('button', { name: 'Delete secret E2E_API_KEY' }).click();
    await page
      .getByText('Delete E2E_API_KEY? Sessions given it then send its placeholder unchanged.')
      .waitFor();
    await page.getByRole('button', { name: 'Yes, delete' }).click();
    await page.getByText('No secrets yet.').waitFor();
    expect(await e.client.secrets.list.query()).toEqual([]);
    expect(cspViolations).toEqual([]);
    page.off('console', onConsole);
    await e.shot('secret-deleted');
  });
});
