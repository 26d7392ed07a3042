import { randomBytes } from 'node:crypto';
import { inflateSync } from 'node:zlib';
import type { ConsoleMessage } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, type E2E, missingPrerequisite, startE2E, until } from './fixture.ts';

// The IDE's terminal as a person sees it (issue 22): drawn in the bundled monospace font (served by the IDE
// itself), in colour, with a visible cursor; its scrollback back after a reload (the same shell, reattached);
// several terminals, each its own shell; and not one CSP violation on the way. Pixels are read from screenshots.

const skip = missingPrerequisite();
const IMAGE = 'studio-sandbox:latest';
const BACKGROUND = [0x10, 0x12, 0x16];
const CURSOR = [0x6a, 0xa9, 0xff];

/** RGBA pixels of a PNG as chromium writes screenshots: 8-bit RGB or RGBA, not interlaced. */
function decodePng(png: Buffer): { width: number; height: number; rgba: Uint8Array } {
  let pos = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  while (pos < png.length) {
    const length = png.readUInt32BE(pos);
    const type = png.toString('ascii', pos + 4, pos + 8);
    const data = png.subarray(pos + 8, pos + 8 + length);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      if (data[8] !== 8 || data[12] !== 0 || (data[9] !== 2 && data[9] !== 6))
        throw new Error('expected an 8-bit RGB(A) PNG, not interlaced');
      channels = data[9] === 6 ? 4 : 3;
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    pos += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const rgba = new Uint8Array(width * height * 4);
  let prev = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const cur = new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? (cur[i - channels] ?? 0) : 0;
      const b = prev[i] ?? 0;
      const c = i >= channels ? (prev[i - channels] ?? 0) : 0;
      const x = line[i] ?? 0;
      let v = x;
      if (filter === 1) v = x + a;
      else if (filter === 2) v = x + b;
      else if (filter === 3) v = x + ((a + b) >> 1);
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        v = x + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
      }
      cur[i] = v & 0xff;
    }
    for (let px = 0; px < width; px++) {
      for (let k = 0; k < 3; k++) rgba[(y * width + px) * 4 + k] = cur[px * channels + k] ?? 0;
      rgba[(y * width + px) * 4 + 3] = channels === 4 ? (cur[px * channels + 3] ?? 0) : 255;
    }
    prev = cur;
  }
  return { width, height, rgba };
}

/** Of a screenshot: pixels that are not the terminal's background ("ink"), those that are red, those near `rgb`. */
function pixels(png: Buffer, near?: number[]): { ink: number; red: number; near: number; total: number } {
  const { width, height, rgba } = decodePng(png);
  let ink = 0;
  let red = 0;
  let close = 0;
  for (let i = 0; i < width * height * 4; i += 4) {
    const [r, g, b] = [rgba[i] ?? 0, rgba[i + 1] ?? 0, rgba[i + 2] ?? 0];
    if (
      Math.max(
        Math.abs(r - (BACKGROUND[0] ?? 0)),
        Math.abs(g - (BACKGROUND[1] ?? 0)),
        Math.abs(b - (BACKGROUND[2] ?? 0)),
      ) > 40
    )
      ink++;
    if (r > 150 && g < 90 && b < 90) red++;
    if (
      near &&
      Math.abs(r - (near[0] ?? 0)) < 40 &&
      Math.abs(g - (near[1] ?? 0)) < 40 &&
      Math.abs(b - (near[2] ?? 0)) < 40
    )
      close++;
  }
  return { ink, red, near: close, total: width * height };
}

describe.skipIf(skip !== undefined)(`terminal e2e${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let e: E2E;
  let sessionId = '';
  const cspViolations: string[] = [];
  const fontRequests: string[] = [];
  const onConsole = (message: ConsoleMessage) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  };

  // The terminal on screen (the others are mounted but hidden), its rows, and their text.
  const shownHost = () => e.page.locator('.terminal-host:visible');
  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator, not a DOM node
  const shownText = () => shownHost().locator('.xterm-rows').innerText();
  /** Types into the shown terminal and waits until its screen matches `expected`. */
  async function run(command: string, expected: RegExp): Promise<RegExpExecArray> {
    await shownHost().click();
    await e.page.keyboard.type(`${command}\n`);
    let match: RegExpExecArray | null = null;
    await until(async () => {
      match = expected.exec(await shownText());
      return match !== null;
    }, `${expected} in the terminal`);
    return match as unknown as RegExpExecArray;
  }
  /** The row of the shown terminal whose text is exactly `text` (output, not the command that printed it). */
  async function row(text: string) {
    const rows = shownHost().locator('.xterm-rows > div');
    const texts = await rows.allInnerTexts();
    const index = texts.findIndex((t) => t.replace(/\u00a0/g, ' ').trim() === text);
    expect(index, `a row reading ${text}`).toBeGreaterThanOrEqual(0);
    return rows.nth(index);
  }
  const ready = () => e.page.getByText('Terminal: ready').waitFor({ timeout: 60_000 });

  beforeAll(async () => {
    e = await startE2E();
    e.page.on('console', onConsole);
    // The CSP's own report, from every document this page loads (reloads included).
    await e.page.exposeFunction('__studioCspViolation', (what: string) => cspViolations.push(what));
    await e.page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (event) => {
        const report = (window as unknown as { __studioCspViolation: (s: string) => void })
          .__studioCspViolation;
        void report(
          `${event.violatedDirective} ${event.blockedURI} at ${event.sourceFile}:${event.lineNumber} ${event.sample}`,
        );
      });
    });
    e.page.on('request', (request) => {
      if (/\.woff2?(\?|$)/.test(request.url())) fontRequests.push(request.url());
    });
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail')
      await e?.shot(`FAILED-${ctx.task.name.slice(0, 40).replace(/\W+/g, '-')}`);
  });

  afterAll(async () => {
    await e?.close();
  });

  it('opens a session in the IDE with its terminal drawn in the bundled monospace font', async () => {
    const { page } = e;
    await page.goto(`${e.webUrl}/login`);
    await page.getByLabel('Username').fill('admin');
    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('No sessions yet').waitFor();
    sessionId = (await e.client.sessions.create.mutate({ image: IMAGE })).id;
    await page.goto(`${e.webUrl}/s/${sessionId}`);
    await ready();
    await run('echo "FONT-$((40+2))-OK"', /FONT-42-OK/);
    const font = await page.evaluate(() => ({
      family: getComputedStyle(document.querySelector('.terminal-host .xterm-rows') as Element).fontFamily,
      loaded: document.fonts.check('13px "JetBrains Mono"'),
    }));
    expect(font.family).toMatch(/^"?JetBrains Mono"?, monospace$/);
    expect(font.loaded).toBe(true);
    // The font files came from the IDE's own origin (font-src 'self'; no CDN).
    expect(fontRequests.length).toBeGreaterThan(0);
    for (const url of fontRequests) expect(new URL(url).origin).toBe(new URL(e.webUrl).origin);
    expect(fontRequests.some((u) => /jetbrains-mono/i.test(u) || /\/_next\/static\/media\//.test(u))).toBe(
      true,
    );
    await e.shot('terminal-font');
  });

  it('prints ANSI colours: a red line is red, a plain line is not', async () => {
    await run("printf '\\033[31mREDREDRED\\033[0m\\n'; echo PLAINPLAIN", /^PLAINPLAIN\s*$/m);
    const red = pixels(await (await row('REDREDRED')).screenshot());
    const plain = pixels(await (await row('PLAINPLAIN')).screenshot());
    await e.shot('terminal-colours');
    expect(red.ink).toBeGreaterThan(50);
    expect(red.red / red.ink).toBeGreaterThan(0.5);
    expect(plain.ink).toBeGreaterThan(50);
    expect(plain.red / plain.ink).toBeLessThan(0.05);
    // 24-bit colour too (xterm.js styles such cells itself: under the CSP, through the CSSOM).
    await run("printf '\\033[38;2;230;40;40mTRUERED\\033[0m\\n'", /^TRUERED\s*$/m);
    const trueRed = pixels(await (await row('TRUERED')).screenshot());
    expect(trueRed.red / trueRed.ink).toBeGreaterThan(0.5);
  });

  it('shows the cursor in its colour while focused', async () => {
    const { page } = e;
    await shownHost().click();
    await until(
      () =>
        page.evaluate(
          () => document.querySelector('.terminal-host .xterm')?.classList.contains('focus') === true,
        ),
      'the terminal to have focus',
    );
    const cursor = shownHost().locator('.xterm-rows .xterm-cursor');
    await cursor.waitFor();
    // It blinks: look for a moment it is on.
    let best = 0;
    await until(
      async () => {
        const box = await cursor.boundingBox();
        if (!box || box.width < 2 || box.height < 4) return false;
        const seen = pixels(await page.screenshot({ clip: box }), CURSOR);
        best = Math.max(best, seen.near / seen.total);
        return best > 0.6;
      },
      `the cursor drawn in ${CURSOR.join(',')} (best share ${best})`,
      10_000,
    );
    await e.shot('terminal-cursor');
  });

  it('copies with Ctrl+Shift+C, pastes with Ctrl+Shift+V, and Ctrl+C without a selection interrupts', async () => {
    const { page } = e;
    await e.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: e.webUrl });
    await run('echo "COPY-$((3*3))-ME"', /^COPY-9-ME\s*$/m);
    const copied = await row('COPY-9-ME');
    const box = await copied.boundingBox();
    expect(box).not.toBeNull();
    // On the word (the row is as wide as the terminal; its text starts at the left).
    if (box) await page.mouse.dblclick(box.x + 30, box.y + box.height / 2);
    await page.keyboard.press('Control+Shift+C');
    await until(
      async () => (await page.evaluate(() => navigator.clipboard.readText())) === 'COPY-9-ME',
      'the selection in the clipboard',
    );
    await page.keyboard.type('echo PASTED-');
    await page.keyboard.press('Control+Shift+V');
    // The clipboard is read asynchronously: the line is complete before Enter.
    await until(async () => /\$ echo PASTED-COPY-9-ME\s*$/m.test(await shownText()), 'the pasted text');
    await page.keyboard.press('Enter');
    await until(async () => /^PASTED-COPY-9-ME\s*$/m.test(await shownText()), 'the pasted text run');
    await run('sleep 100', /\$ sleep 100/);
    await page.keyboard.press('Control+C');
    await run('echo "AFTER-$((2+3))"', /^AFTER-5\s*$/m);
    await e.shot('terminal-copy-paste');
  });

  it('keeps the scrollback over a reload: the same shell, its output replayed without typing', async () => {
    const { page } = e;
    const mark = randomBytes(4).toString('hex');
    const [, pid] = await run(`echo "PID-$$-END"; echo "MARK-${mark}-$((6*7))"`, /PID-(\d+)-END/);
    await until(async () => (await shownText()).includes(`MARK-${mark}-42`), 'the marker');
    await page.reload();
    await ready();
    await until(async () => (await shownText()).includes(`MARK-${mark}-42`), 'the marker after the reload');
    await e.shot('terminal-reload');
    // Reattached to the same shell, not a new one.
    await run('echo "AGAIN-$$-END"', new RegExp(`AGAIN-${pid}-END`));
  });

  it('opens a second terminal with its own shell; the first keeps its output', async () => {
    const { page } = e;
    const [, first] = await run('echo "ONE-$$-END"', /ONE-(\d+)-END/);
    await page.getByRole('button', { name: 'New terminal' }).click();
    await page.getByRole('button', { name: 'Terminal 2', exact: true, pressed: true }).waitFor();
    await ready();
    expect(await page.locator('.terminal-host').count()).toBe(2);
    const [, second] = await run('echo "TWO-$$-END"', /TWO-(\d+)-END/);
    expect(second).not.toBe(first);
    await e.shot('terminal-second');
    await page.getByRole('button', { name: 'Terminal 1', exact: true }).click();
    await page.getByRole('button', { name: 'Terminal 1', exact: true, pressed: true }).waitFor();
    await until(async () => (await shownText()).includes(`ONE-${first}-END`), "the first terminal's output");
    expect(await shownText()).not.toContain(`TWO-${second}-END`);
    await e.shot('terminal-switch-back');

    // Both come back after a reload, the shown one still shown.
    await page.reload();
    await ready();
    await page.getByRole('button', { name: 'Terminal 1', exact: true, pressed: true }).waitFor();
    await until(async () => (await shownText()).includes(`ONE-${first}-END`), 'terminal 1 after the reload');
    await page.getByRole('button', { name: 'Terminal 2', exact: true }).click();
    await until(async () => (await shownText()).includes(`TWO-${second}-END`), 'terminal 2 after the reload');

    // × ends that shell (its socket closes normally), seen from the other one.
    await page.getByRole('button', { name: 'Close Terminal 2' }).click();
    await page.getByRole('button', { name: 'Terminal 1', exact: true, pressed: true }).waitFor();
    expect(await page.locator('.terminal-host').count()).toBe(1);
    await run(
      `sleep 1; kill -0 ${second} 2>/dev/null && echo "ALIVE-$((1+1))" || echo "GONE-$((1+1))"`,
      /(GONE|ALIVE)-2/,
    );
    expect(await shownText()).toContain('GONE-2');
    await e.shot('terminal-closed-second');
  });

  it('reported no CSP violation all along', () => {
    expect(cspViolations).toEqual([]);
  });
});
