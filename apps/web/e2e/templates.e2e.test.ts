import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { ConsoleMessage } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, type E2E, missingPrerequisite, startE2E, until } from './fixture.ts';

// Templates in the IDE end to end (issue 19): a recipe typed into the Templates page is built by the real API
// (in gVisor, as root), its log streams onto the page until it is ready, and a session made from it holds what
// the recipe put there. The build needs no network: one file and one command. Sessions are destroyed and the
// template deleted (its image with it) afterwards.

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const inCi = process.env.CI === 'true' || process.env.CI === '1';

/** Why template builds cannot run here (undefined: they can). In CI a missing runtime throws instead. */
function missingBuilder(): string | undefined {
  let reason: string | undefined;
  if (process.getuid?.() !== 0)
    reason = 'template builds run in gVisor, which needs root: run the tests as root';
  else {
    try {
      execFileSync('runsc', ['--version'], { stdio: 'ignore', timeout: 20_000 });
    } catch {
      reason = 'runsc not found: template builds run in gVisor (bash infra/setup-runtimes.sh)';
    }
  }
  if (!reason) {
    try {
      // Exits 1 (naming the path) while the operator's rootfs, which builds start from, is not built.
      execFileSync('bash', [`${REPO_ROOT}infra/image/build.sh`, '--print-rootfs'], {
        stdio: 'ignore',
        timeout: 30_000,
      });
    } catch {
      reason = 'the sandbox rootfs builds start from is not built (bash infra/image/build.sh)';
    }
  }
  if (reason && inCi) throw new Error(`template builds are required in CI: ${reason}`);
  return reason;
}

const skip = missingPrerequisite() ?? missingBuilder();
const NAME = 'hello-e2e';
// What the template's file holds: unique per run, so the session cannot show it by chance.
const GREETING = `greetings-from-a-template-${randomBytes(6).toString('hex')}`;

describe.skipIf(skip !== undefined)(`templates e2e${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let e: E2E;
  const cspViolations: string[] = [];
  const onConsole = (message: ConsoleMessage) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  };
  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator, not a DOM node
  const terminalText = () => e.page.locator('.xterm-rows').innerText();
  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator, not a DOM node
  const logText = () => e.page.getByRole('log', { name: /^Build log/ }).innerText();

  beforeAll(async () => {
    e = await startE2E();
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail')
      await e?.shot(`FAILED-${ctx.task.name.slice(0, 40).replace(/\W+/g, '-')}`);
  });

  afterAll(async () => {
    if (!e) return;
    // A template is refused deletion while a live session runs it: sessions first, then the template (and its
    // image, in Docker too).
    for (const s of await e.client.sessions.list.query().catch(() => []))
      await e.client.sessions.destroy.mutate({ sessionId: s.id }).catch(() => undefined);
    for (const t of await e.client.templates.list.query().catch(() => []))
      await e.client.templates.delete.mutate({ template: t.id }).catch(() => undefined);
    await e.close();
  });

  it('signs in and opens the Templates page from the top bar', async () => {
    const { page } = e;
    await page.goto(e.webUrl);
    await page.waitForURL('**/login');
    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('No sessions yet').waitFor();
    page.on('console', onConsole);
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Templates' }).click();
    await page.waitForURL('**/templates');
    // The server's image is listed first, as a shared template that is always ready.
    await page
      .getByRole('row', { name: /default/ })
      .getByText('shared')
      .waitFor();
    await page.getByText('None of your own yet').waitFor();
  });

  it('builds a recipe typed into the form, showing its log live until it is ready', async () => {
    const { page } = e;
    await page.getByRole('button', { name: 'New template' }).click();
    const form = page.getByRole('form', { name: 'New template' });
    await form.getByLabel('Name', { exact: true }).fill(NAME);
    await form.getByLabel('Description').fill('a greeting and a build mark');
    await form.getByRole('button', { name: 'Add file' }).click();
    // A refusal first: the workspace is mounted over at run time. What to do, then the code and the API's words.
    await form.getByLabel('File 1 path').fill('/workspace/greeting.txt');
    await form.getByRole('button', { name: 'Create template' }).click();
    const refusal = form.getByRole('alert');
    await refusal.getByText('The template is not valid').waitFor();
    await refusal.getByText(/\/workspace.*Code: TEMPLATE_INVALID/).waitFor();
    await e.shot('template-refused');
    await form.getByLabel('File 1 path').fill('/opt/hello/greeting.txt');
    await form.getByLabel('File 1 content').fill(`${GREETING}\n`);
    await form.getByLabel('Build commands').fill('echo built > /opt/hello/built.txt');
    await e.shot('template-form');
    await form.getByRole('button', { name: 'Create template' }).click();

    // The detail view follows the build: each step's line, then the end, and the badge turns ready.
    const detail = page.getByRole('region', { name: NAME });
    await detail.waitFor({ timeout: 30_000 });
    await until(
      async () => (await logText()).includes('file /opt/hello/greeting.txt'),
      'the file step',
      300_000,
    );
    await detail.locator('.badge', { hasText: /^ready$/ }).waitFor({ timeout: 300_000 });
    const log = await logText();
    expect(log).toContain('run 1: echo built > /opt/hello/built.txt');
    expect(log).toMatch(/# ready in [\d.]+ s/);
    // The list's badge moved too, and the template is usable through the API.
    await page
      .getByRole('row', { name: new RegExp(NAME) })
      .locator('.badge', { hasText: /^ready$/ })
      .waitFor();
    const built = await e.client.templates.get.query({ template: NAME });
    expect(built).toMatchObject({ state: 'ready', usable: true, owner: 'you' });
    expect(built.image).toMatch(/^studio-template:[0-9a-f]{20}$/);
    await page.screenshot({ path: '/tmp/templates-page.png', fullPage: true });
    await e.shot('template-built');

    // Rebuilt unchanged: the log starts again and says so, and the template stays ready.
    await detail.getByRole('button', { name: 'Rebuild' }).click();
    await until(
      async () => (await logText()).includes('unchanged since its last build'),
      'the rebuild',
      60_000,
    );
    await detail.locator('.badge', { hasText: /^ready$/ }).waitFor({ timeout: 60_000 });
    expect((await e.client.templates.get.query({ template: NAME })).image).toBe(built.image);
    expect(cspViolations).toEqual([]);
  });

  it('makes a session from the template that holds what its recipe put there', async () => {
    const { page } = e;
    await page.getByRole('button', { name: 'New session' }).click();
    await page.waitForURL(/\/s\/ses_/, { timeout: 120_000 });
    await page.getByText('Terminal: ready').waitFor({ timeout: 60_000 });
    await page.locator('.terminal-host').click();
    await page.keyboard.type('cat /opt/hello/greeting.txt /opt/hello/built.txt\n');
    await until(async () => {
      const text = await terminalText();
      return text.includes(GREETING) && /^built$/m.test(text);
    }, 'the template files in the terminal');
    await e.shot('template-session');
    expect(cspViolations).toEqual([]);
  });

  it("offers the template in the dashboard's create form and names it in the sessions table", async () => {
    const { page } = e;
    await page.getByRole('link', { name: 'Claude Studio' }).click();
    const select = page.getByLabel('Template');
    await select.locator('option', { hasText: NAME }).waitFor({ state: 'attached' });
    expect(await select.inputValue()).toBe('default');
    await page.getByRole('cell', { name: NAME }).waitFor();
    page.off('console', onConsole);
    expect(cspViolations).toEqual([]);
    expect(e.dialogs).toEqual([]);
  });
});
