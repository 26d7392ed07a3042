import { randomBytes } from 'node:crypto';
import { createStudioClient, type StudioClient } from '@studio/client';
import type { ConsoleMessage } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, type E2E, missingPrerequisite, startE2E, until } from './fixture.ts';

// Opening a session shows what happened before (issue 22): an agent (an API token made for one, driving
// @studio/client from this test) works in a session nobody has open; the person then opens it and finds the
// agent's command in the activity feed, by the agent's name, and its output in the console, read from the store;
// "Load older" pages back past the first page; live events carry on with nothing shown twice. The open editor
// tabs and the active one come back after a reload; a tab whose file was removed meanwhile stays closed,
// quietly. No page reports a CSP violation.

const skip = missingPrerequisite();
const IMAGE = 'studio-sandbox:latest';
const MARKER = `agent-marker-${randomBytes(4).toString('hex')}`;
const LIVE_MARKER = `live-marker-${randomBytes(4).toString('hex')}`;
// More than one page (100) of events before the person arrives, the oldest of them only behind "Load older".
const BULK = 110;

describe.skipIf(skip !== undefined)(`session history e2e${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let e: E2E;
  let agent: StudioClient;
  let sessionId = '';
  const cspViolations: string[] = [];
  const errorsShown: string[] = [];
  const onConsole = (message: ConsoleMessage) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  };

  const feed = () => e.page.getByRole('list', { name: 'Activity feed' });
  const consoleLog = () => e.page.getByRole('log', { name: 'Console output' });
  const tabs = () => e.page.getByRole('tablist', { name: 'Open files' }).getByRole('tab');
  const activeTab = () =>
    e.page.getByRole('tablist', { name: 'Open files' }).getByRole('tab', { selected: true });
  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator, not a DOM node
  const editorText = () => e.page.locator('.cm-content').innerText();

  async function openSession() {
    await e.page.goto(`${e.webUrl}/s/${sessionId}`);
    await feed().waitFor();
  }

  beforeAll(async () => {
    e = await startE2E();
    e.page.on('console', onConsole);
    const made = await e.client.tokens.create.mutate({ name: 'claude-agent', agent: true });
    agent = createStudioClient({ url: e.apiUrl, token: made.token });
    sessionId = (await e.client.sessions.create.mutate({ image: IMAGE })).id;
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail')
      await e?.shot(`FAILED-${ctx.task.name.slice(0, 40).replace(/\W+/g, '-')}`);
  });

  afterAll(async () => {
    e?.page.off('console', onConsole);
    await e?.close();
  });

  it('an agent works in the session before anyone opens it', async () => {
    for (let i = 0; i < BULK; i++) {
      await agent.files.write.mutate({
        sessionId,
        path: `bulk/f-${String(i).padStart(3, '0')}.txt`,
        content: `${i}`,
        createParents: true,
      });
    }
    const run = await agent.exec.run.mutate({
      sessionId,
      command: ['sh', '-c', `echo ${MARKER}; echo from-the-agent > made-by-exec.txt`],
    });
    expect(run.exitCode).toBe(0);
    for (const name of ['alpha', 'beta', 'gamma'])
      await agent.files.write.mutate({ sessionId, path: `${name}.txt`, content: `${name} content` });
  });

  it('opening the session shows what the agent did: the feed by its name, the console its output', async () => {
    const { page } = e;
    await page.goto(`${e.webUrl}/login`);
    await page.getByLabel('Username').fill('admin');
    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${e.webUrl}/`);
    await openSession();
    const ran = feed().locator('.activity-item', { hasText: `ran sh -c echo ${MARKER}` });
    await ran.waitFor();
    expect((await ran.textContent()) ?? '').toContain('agent (admin)');
    await feed()
      .locator('.activity-item', { hasText: 'wrote gamma.txt' })
      .getByText('agent (admin)')
      .waitFor();
    await feed().locator('.activity-item', { hasText: 'command finished (exit 0)' }).waitFor();

    await page.getByRole('tab', { name: /^Console/ }).click();
    await consoleLog().getByText(MARKER, { exact: true }).waitFor();
    const text = (await consoleLog().textContent()) ?? '';
    expect(text).toContain(`$ sh -c echo ${MARKER}; echo from-the-agent > made-by-exec.txt`);
    expect(text).toContain('[exit 0]');
    await e.shot('history-on-open');

    // Then live, from where the history ended: what the agent does now shows once, the earlier output once.
    await agent.exec.run.mutate({ sessionId, command: ['sh', '-c', `echo ${LIVE_MARKER}`] });
    await consoleLog().getByText(LIVE_MARKER, { exact: true }).waitFor();
    await new Promise((r) => setTimeout(r, 500));
    expect(await consoleLog().getByText(MARKER, { exact: true }).count()).toBe(1);
    expect(await consoleLog().getByText(LIVE_MARKER, { exact: true }).count()).toBe(1);
    expect(
      await feed()
        .locator('.activity-item', { hasText: `ran sh -c echo ${MARKER}` })
        .count(),
    ).toBe(1);
    await e.shot('history-then-live');
  });

  it('"Load older" brings the events before the first page', async () => {
    const { page } = e;
    const oldest = feed().locator('.activity-item', { hasText: 'wrote bulk/f-000.txt' });
    expect(await oldest.count()).toBe(0);
    const before = await feed().locator('.activity-item').count();
    await page.getByRole('button', { name: 'Load older' }).click();
    await oldest.waitFor();
    expect(await feed().locator('.activity-item').count()).toBeGreaterThan(before);
    // Every kept event is shown now: nothing older to load, and none of them twice.
    await page.getByRole('button', { name: 'Load older' }).waitFor({ state: 'detached' });
    for (const i of ['000', '050', '109'])
      expect(
        await feed()
          .locator('.activity-item', { hasText: `wrote bulk/f-${i}.txt` })
          .count(),
      ).toBe(1);
    await oldest.scrollIntoViewIfNeeded();
    await e.shot('history-load-older');
  });

  it('keeps the open tabs and the active one across a reload', async () => {
    const { page } = e;
    await page.locator('.tree-name', { hasText: 'alpha.txt' }).click();
    await until(async () => (await editorText()).includes('alpha content'), 'alpha.txt in the editor');
    await page.locator('.tree-name', { hasText: 'beta.txt' }).click();
    await until(async () => (await editorText()).includes('beta content'), 'beta.txt in the editor');
    // alpha.txt is the active one again.
    await tabs().filter({ hasText: 'alpha.txt' }).click();
    await until(async () => (await editorText()).includes('alpha content'), 'alpha.txt active');
    expect(await tabs().allTextContents()).toEqual(['alpha.txt', 'beta.txt']);

    await page.reload();
    await feed().waitFor();
    await until(async () => (await tabs().count()) === 2, 'both tabs to come back');
    expect(await tabs().allTextContents()).toEqual(['alpha.txt', 'beta.txt']);
    expect(await activeTab().textContent()).toBe('alpha.txt');
    await until(async () => (await editorText()).includes('alpha content'), 'alpha.txt in the editor again');
    await e.shot('tabs-after-reload');
  });

  it('a tab whose file was removed meanwhile stays closed, with no error', async () => {
    const { page } = e;
    await page.locator('.tree-name', { hasText: 'gamma.txt' }).click();
    await until(async () => (await activeTab().textContent()) === 'gamma.txt', 'gamma.txt open');
    await page.goto(`${e.webUrl}/`);
    await page.getByRole('link', { name: `Open session ${sessionId}` }).waitFor();
    await agent.files.remove.mutate({ sessionId, path: 'gamma.txt' });
    page.on('console', (m) => {
      if (m.type() === 'error') errorsShown.push(m.text());
    });
    await openSession();
    await until(async () => (await tabs().count()) === 2, 'the two remaining tabs');
    expect(await tabs().allTextContents()).toEqual(['alpha.txt', 'beta.txt']);
    // Its active tab is gone: the first kept one is active instead, and nothing says "not found".
    expect(await activeTab().textContent()).toBe('alpha.txt');
    await new Promise((r) => setTimeout(r, 500));
    const alerts = await page.getByRole('alert').allTextContents();
    expect(alerts.filter((a) => /gamma|not found|no such/i.test(a))).toEqual([]);
    await e.shot('tabs-removed-file');
  });

  it('reports no CSP violation', () => {
    expect(cspViolations).toEqual([]);
  });
});
