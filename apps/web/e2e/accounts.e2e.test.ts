import { randomBytes } from 'node:crypto';
import { createStudioClient, isStudioClientError, loginStudioClient } from '@studio/client';
import type { ConsoleMessage } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, type E2E, missingPrerequisite, startE2E } from './fixture.ts';

// Accounts in the IDE end to end (issue 22): an administrator creates a user on the Users page and an API token
// on the Account page (read off the screen, where it is shown once), the token works with @studio/client, the
// administrator resets the user's password, the user signs in, is held on the change-password screen until they
// choose their own, then reaches the dashboard; revoking the token makes it fail. No page reports a CSP violation.

const skip = missingPrerequisite();
const USER = `frank-${randomBytes(3).toString('hex')}`;
const FIRST_PASSWORD = 'frank-first-password';
const RESET_PASSWORD = 'frank-reset-password';
const OWN_PASSWORD = 'frank-own-chosen-password';
const TOKEN_NAME = 'e2e-laptop';

describe.skipIf(skip !== undefined)(`accounts e2e${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let e: E2E;
  let token = '';
  const visited = new Set<string>();
  const cspViolations: string[] = [];
  const onConsole = (message: ConsoleMessage) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  };

  /** Waits for the page to be at `path`, and counts it as visited for the CSP check. */
  async function at(path: string) {
    await e.page.waitForURL(`**${path}`);
    visited.add(new URL(e.page.url()).pathname);
  }

  async function signIn(username: string, password: string) {
    const { page } = e;
    await page.goto(`${e.webUrl}/login`);
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  async function signOut() {
    await e.page.getByRole('button', { name: 'Sign out' }).click();
    await at('/login');
  }

  beforeAll(async () => {
    e = await startE2E();
    e.page.on('console', onConsole);
    // Every page load, client-side navigations included (the CSP applies to all of them).
    e.page.on('framenavigated', (frame) => {
      if (frame === e.page.mainFrame()) visited.add(new URL(frame.url()).pathname);
    });
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail')
      await e?.shot(`FAILED-${ctx.task.name.slice(0, 40).replace(/\W+/g, '-')}`);
  });

  afterAll(async () => {
    await e?.close();
  });

  it('an administrator creates a user on the Users page', async () => {
    const { page } = e;
    await signIn('admin', ADMIN_PASSWORD);
    await page.getByText('No sessions yet').waitFor();
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Users' }).click();
    await at('/admin/users');
    await page.getByRole('heading', { name: 'Users', level: 1 }).waitFor();
    const form = page.getByRole('form', { name: 'Create a user' });
    await form.getByLabel('Username').fill(USER);
    await form.getByLabel('Password').fill(FIRST_PASSWORD);
    await form.getByRole('button', { name: 'Create user' }).click();
    await page
      .getByRole('status')
      .filter({ hasText: `Created ${USER}.` })
      .waitFor();
    const row = page.getByRole('row').filter({ hasText: USER });
    await row.getByText('active').waitFor();
    expect((await row.getByRole('cell').nth(1).textContent()) ?? '').toBe('user');
    const admin = page.getByRole('row').filter({ hasText: '(you)' });
    expect((await admin.textContent()) ?? '').toContain('administrator');
    // Nothing to do to yourself here: your own password is on the Account page.
    expect(await admin.getByRole('button').count()).toBe(0);
    await e.shot('users-page');
  });

  it('creates an API token on the Account page, shown once, and it works with @studio/client', async () => {
    const { page } = e;
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Account' }).click();
    await at('/account');
    await page.getByText('No API tokens yet.').waitFor();
    const form = page.getByRole('form', { name: 'Create an API token' });
    await form.getByLabel('Name').fill(TOKEN_NAME);
    await form.getByLabel('Expires after (days)').fill('7');
    await form.getByRole('button', { name: 'Create token' }).click();
    const shown = page.getByRole('region', { name: 'New API token' });
    await shown.getByText(`Copy the token ${TOKEN_NAME} now.`).waitFor();
    expect((await shown.textContent()) ?? '').toContain('shown only this once');
    token = ((await shown.getByTestId('new-token').textContent()) ?? '').trim();
    expect(token).toMatch(/^sst_[A-Za-z0-9_-]{43}$/);
    await shown.getByRole('button', { name: 'Copy' }).waitFor();
    const row = page.getByRole('row').filter({ hasText: TOKEN_NAME });
    await row.getByText('active').waitFor();
    expect((await row.textContent()) ?? '').toMatch(/in [67] d/);
    await shown.scrollIntoViewIfNeeded();
    await e.shot('account-new-token');

    const viaToken = createStudioClient({ url: e.apiUrl, token });
    expect(await viaToken.auth.me.query()).toMatchObject({ username: 'admin', via: 'api-token' });

    // Dismissed, it is gone from the page for good: the list never holds a secret.
    await shown.getByRole('button', { name: 'I have stored it' }).click();
    await shown.waitFor({ state: 'detached' });
    expect((await page.locator('body').textContent()) ?? '').not.toContain(token);
  });

  it("resets the user's password on the Users page", async () => {
    const { page } = e;
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Users' }).click();
    await at('/admin/users');
    const row = page.getByRole('row').filter({ hasText: USER });
    await row.getByRole('button', { name: `Reset the password of ${USER}` }).click();
    await row.getByLabel(`New password for ${USER}`).fill(RESET_PASSWORD);
    await row.getByRole('button', { name: 'Set password' }).click();
    await page
      .getByRole('status')
      .filter({ hasText: `Reset the password of ${USER}.` })
      .waitFor();
    await row.getByText('must change password').waitFor();
    await signOut();
  });

  it('the user signs in, is held on the change-password screen, chooses a password, reaches the dashboard', async () => {
    const { page } = e;
    // The password from before the reset no longer works.
    await signIn(USER, FIRST_PASSWORD);
    await page.getByRole('alert').filter({ hasText: 'Wrong username or password.' }).waitFor();

    await signIn(USER, RESET_PASSWORD);
    await at('/change-password');
    await page.getByRole('heading', { name: 'Choose a new password' }).waitFor();
    await page.getByRole('status').filter({ hasText: 'has a password someone else set' }).waitFor();
    await e.shot('change-password-required');

    // The rest of the IDE sends the user back here; the API refuses it with its code.
    await page.goto(e.webUrl);
    await at('/change-password');
    await page.getByRole('heading', { name: 'Choose a new password' }).waitFor();
    const { token: userLogin } = await loginStudioClient({
      url: e.apiUrl,
      username: USER,
      password: RESET_PASSWORD,
    });
    const refused = await createStudioClient({ url: e.apiUrl, token: userLogin })
      .sessions.list.query()
      .catch((error: unknown) => error);
    expect(isStudioClientError(refused, 'PASSWORD_CHANGE_REQUIRED')).toBe(true);

    // A mistake is explained before anything is sent; a wrong current password is refused by the server.
    await page.getByLabel('Current password').fill(RESET_PASSWORD);
    await page.getByLabel('New password', { exact: true }).fill(OWN_PASSWORD);
    await page.getByLabel('New password, again').fill(`${OWN_PASSWORD}x`);
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.getByRole('alert').filter({ hasText: 'The two new passwords are not the same' }).waitFor();
    await page.getByLabel('Current password').fill('not-the-password');
    await page.getByLabel('New password, again').fill(OWN_PASSWORD);
    await page.getByRole('button', { name: 'Change password' }).click();
    const wrong = page.getByRole('alert').filter({ hasText: 'The current password is wrong.' });
    await wrong.waitFor();
    expect((await wrong.textContent()) ?? '').toContain('INVALID_CREDENTIALS');

    await page.getByLabel('Current password').fill(RESET_PASSWORD);
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.waitForURL(`${e.webUrl}/`);
    visited.add('/');
    await page.getByText('No sessions yet').waitFor();
    await page.getByRole('banner').getByText(USER).waitFor();
    // An ordinary user is not shown the administrators' page.
    expect(
      await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Users' }).count(),
    ).toBe(0);
    await e.shot('user-dashboard');
    await signOut();

    // Their own password works from now on; the reset one does not.
    await loginStudioClient({ url: e.apiUrl, username: USER, password: OWN_PASSWORD });
    const old = await loginStudioClient({ url: e.apiUrl, username: USER, password: RESET_PASSWORD }).catch(
      (error: unknown) => error,
    );
    expect(isStudioClientError(old, 'INVALID_CREDENTIALS')).toBe(true);
  });

  it('revoking the token on the Account page makes it fail', async () => {
    const { page } = e;
    await signIn('admin', ADMIN_PASSWORD);
    await page.getByText('No sessions yet').waitFor();
    await page.goto(`${e.webUrl}/account`);
    const row = page.getByRole('row').filter({ hasText: TOKEN_NAME });
    await row.getByRole('button', { name: `Revoke API token ${TOKEN_NAME}` }).click();
    await row.getByRole('button', { name: 'Yes, revoke' }).click();
    await page
      .getByRole('status')
      .filter({ hasText: `Revoked ${TOKEN_NAME}.` })
      .waitFor();
    await row.getByText('revoked').waitFor();
    await row.scrollIntoViewIfNeeded();
    const refused = await createStudioClient({ url: e.apiUrl, token })
      .auth.me.query()
      .catch((error: unknown) => error);
    expect(isStudioClientError(refused, 'TOKEN_REVOKED')).toBe(true);
    await e.shot('account-token-revoked');
  });

  it('reports no CSP violation on any page visited', () => {
    expect([...visited]).toEqual(
      expect.arrayContaining(['/login', '/', '/admin/users', '/account', '/change-password']),
    );
    expect(cspViolations).toEqual([]);
  });
});
