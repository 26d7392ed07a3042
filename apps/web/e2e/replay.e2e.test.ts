import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createStudioClient } from '@studio/client';
import type { ConsoleMessage } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, type E2E, missingPrerequisite, startE2E, until } from './fixture.ts';

// Session recording end to end (issue 22): a command typed in the IDE's terminal and an exec run with an API
// token are recorded; /s/<id>/replay plays the terminal back (the command's output appears in the replay
// terminal), lists the token's exec on the timeline under the token's name, and downloads a valid asciicast v2
// file. No page reports a CSP violation.

const skip = missingPrerequisite();
const MARK = randomBytes(4).toString('hex');
const TOKEN_NAME = 'replay-e2e-token';

describe.skipIf(skip !== undefined)(`session replay e2e${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let e: E2E;
  let sessionId = '';
  const cspViolations: string[] = [];
  const onConsole = (message: ConsoleMessage) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  };

  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator, not a DOM node
  const textOf = (selector: string) => e.page.locator(selector).innerText();

  beforeAll(async () => {
    e = await startE2E();
    e.page.on('console', onConsole);
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail')
      await e?.shot(`FAILED-replay-${ctx.task.name.slice(0, 40).replace(/\W+/g, '-')}`);
  });

  afterAll(async () => {
    if (sessionId) await e?.client.sessions.destroy.mutate({ sessionId }).catch(() => undefined);
    await e?.close();
  });

  it('records a command typed in the IDE terminal and an exec run with an API token', async () => {
    const { page } = e;
    await page.goto(`${e.webUrl}/login`);
    await page.getByLabel('Username').fill('admin');
    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('No sessions yet').waitFor();
    sessionId = (await e.client.sessions.create.mutate({ image: 'studio-sandbox:latest' })).id;
    await page.goto(`${e.webUrl}/s/${sessionId}`);
    await page.getByText('Terminal: ready').waitFor({ timeout: 60_000 });
    await page.locator('.terminal-host').click();
    // The output (REPLAY-<mark>-42) differs from what was typed, so seeing it means the command's output played.
    await page.keyboard.type(`echo REPLAY-${MARK}-$((40+2))\n`);
    await until(
      async () => (await textOf('.terminal-host .xterm-rows')).includes(`REPLAY-${MARK}-42`),
      'the marker in the IDE terminal',
    );
    const { token } = await e.client.tokens.create.mutate({ name: TOKEN_NAME });
    const byToken = createStudioClient({ url: e.apiUrl, token });
    const run = await byToken.exec.run.mutate({ sessionId, command: ['echo', `exec-${MARK}`] });
    expect(run.stdout).toBe(`exec-${MARK}\n`);
    await e.shot('replay-recorded');
  });

  it('replays the terminal, shows the timeline of who did what, and downloads asciicast v2', async () => {
    const { page } = e;
    await page.goto(`${e.webUrl}/s/${sessionId}/replay`);
    await page.getByRole('heading', { name: 'Replay', level: 1 }).waitFor();
    await page.getByText('Recording is on').waitFor();
    await page.getByRole('button', { name: /^Terminal 1/ }).waitFor();
    const player = page.getByRole('region', { name: 'Replay of Terminal 1' });
    await player.waitFor();
    await player.getByRole('button', { name: '4×' }).click();
    await player.getByRole('button', { name: 'Play' }).click();
    await until(
      async () => (await textOf('.replay-terminal .xterm-rows')).includes(`REPLAY-${MARK}-42`),
      'the marker in the replay terminal',
      60_000,
    );
    await e.shot('replay-played');

    // The timeline: the token's exec under the token's name, with its exit; the terminal opened by admin.
    const timeline = page.getByRole('region', { name: 'Timeline' });
    const exec = timeline.getByRole('listitem').filter({ hasText: `ran \`echo exec-${MARK}\` (exit 0)` });
    await exec.waitFor();
    expect(await exec.textContent()).toContain(`admin · ${TOKEN_NAME}`);
    expect(await exec.textContent()).toContain('token');
    await timeline.getByRole('listitem').filter({ hasText: 'opened terminal 1' }).waitFor();
    // Clicking the terminal's opening seeks the player to its start.
    await timeline.getByRole('listitem').filter({ hasText: 'opened terminal 1' }).getByRole('button').click();
    await until(async () => (await player.getByText(/^0:00 \//).count()) === 1, 'the player at 0:00');

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download terminal-1.cast' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe(`${sessionId}-terminal-1.cast`);
    const text = readFileSync((await download.path()) ?? '', 'utf8');
    const [first, ...rest] = text.trim().split('\n');
    expect(JSON.parse(first ?? '')).toMatchObject({ version: 2, width: expect.any(Number) });
    expect(rest.some((l) => l.includes(`REPLAY-${MARK}-42`))).toBe(true);
    await e.shot('replay-downloaded');
    expect(cspViolations).toEqual([]);
  });
});
