import { afterAll, describe, expect } from 'vitest';
import { isIsolationError } from '../../errors.ts';
import type { Sandbox } from '../../types.ts';
import {
  containsText,
  describeError,
  describeRun,
  expectFailed,
  expectIsolationError,
  expectOk,
  nonce,
  run,
  settle,
  sh,
  text,
  waitFor,
} from '../fixtures.ts';
import type { ConformanceHarness } from '../harness.ts';

/** Where the planted links live, relative to /workspace. */
const ESC = 'esc';

/**
 * The planted scene, as sandbox code would leave it:
 * - /tmp/canary (a secret outside the workspace) and /tmp/outside/{secret,marker} for the race;
 * - esc/etc-link → /etc, esc/tmp-link → /tmp, esc/up → ../../ (the root), esc/canary-link → /tmp/canary,
 *   esc/dangling → /tmp/<name that does not exist yet>; esc/inside.txt is an ordinary file.
 */
interface Scene {
  sandbox: Sandbox;
  canary: string;
  outsideSecret: string;
  outsideMarker: string;
  dangling: string;
}

const PLANT = `
set -e
printf %s "$CANARY" > /tmp/canary
mkdir -p /tmp/outside /workspace/${ESC}/race
printf %s "$OUTSIDE_SECRET" > /tmp/outside/secret
printf %s "$OUTSIDE_MARKER" > /tmp/outside/marker
printf inside > /workspace/${ESC}/inside.txt
printf race-inside > /workspace/${ESC}/race/file
cd /workspace/${ESC}
ln -sfn /etc etc-link
ln -sfn /tmp tmp-link
ln -sfn ../../ up
ln -sfn /tmp/canary canary-link
ln -sfn /etc/passwd passwd-link
ln -sfn "/tmp/$DANGLING" dangling
`;

/** Reads a file inside the sandbox as its user; null when it does not exist. */
async function catInside(sandbox: Sandbox, path: string): Promise<string | null> {
  const r = await run(sandbox, ['cat', path]);
  return r.exitCode === 0 ? r.out : null;
}

async function existsInside(sandbox: Sandbox, path: string): Promise<boolean> {
  return (await run(sandbox, ['test', '-e', path])).exitCode === 0;
}

/**
 * SECURITY.md §2, the API side of CVE-2018-15664: sandbox code plants links, and every file method of the
 * handle must refuse to follow them out of /workspace, also while the code swaps a link in mid-operation.
 * One dedicated sandbox holds the scene for the whole group.
 */
export function filesEscapeCases(h: ConformanceHarness): void {
  describe('files-escape', () => {
    let scene: Promise<Scene> | undefined;
    const create = (): Promise<Scene> => {
      scene ??= h.create().then((sandbox) => ({
        sandbox,
        canary: nonce('canary'),
        outsideSecret: nonce('outside-secret'),
        outsideMarker: nonce('outside-marker'),
        dangling: nonce('api-created'),
      }));
      return scene;
    };
    /** The scene, (re-)planted before every case so that one case's failure cannot mask another's. */
    const setup = async (): Promise<Scene> => {
      const s = await create();
      const env = {
        CANARY: s.canary,
        OUTSIDE_SECRET: s.outsideSecret,
        OUTSIDE_MARKER: s.outsideMarker,
        DANGLING: s.dangling,
      };
      expectOk(await sh(s.sandbox, PLANT, { env }), 'plant the links');
      return s;
    };
    afterAll(async () => {
      const s = await scene?.catch(() => undefined);
      if (s !== undefined) await h.destroy(s.sandbox);
    });

    /** The canary must be intact after every case. */
    async function expectCanaryIntact(s: Scene): Promise<void> {
      expect(await catInside(s.sandbox, '/tmp/canary'), '/tmp/canary after the attack').toBe(s.canary);
    }

    h.case(
      'files-escape.path-traversal',
      '.., absolute, NUL, encoded and over-long paths never leave /workspace',
      async () => {
        const s = await setup();
        const sb = s.sandbox;
        expect(text(await sb.readFile(`${ESC}/inside.txt`)), 'control').toBe('inside');
        const escaping = [
          '../tmp/canary',
          '../../../../tmp/canary',
          '/tmp/canary',
          `${ESC}/../../tmp/canary`,
          './../tmp/canary',
          'a\0b',
        ];
        for (const p of escaping) {
          const r = await settle(sb.readFile(p));
          expect(
            r.ok && containsText(r.value, s.canary),
            `readFile(${JSON.stringify(p)}) returned the canary`,
          ).toBe(false);
          await expectIsolationError(
            sb.readFile(p),
            ['INVALID_INPUT', 'FORBIDDEN'],
            `readFile(${JSON.stringify(p)})`,
          );
          await expectIsolationError(
            sb.stat(p),
            ['INVALID_INPUT', 'FORBIDDEN'],
            `stat(${JSON.stringify(p)})`,
          );
          await expectIsolationError(
            sb.writeFile(p, 'pwned'),
            ['INVALID_INPUT', 'FORBIDDEN'],
            `writeFile(${JSON.stringify(p)})`,
          );
          await expectIsolationError(
            sb.remove(p),
            ['INVALID_INPUT', 'FORBIDDEN'],
            `remove(${JSON.stringify(p)})`,
          );
        }
        await expectIsolationError(sb.list('..'), ['INVALID_INPUT', 'FORBIDDEN'], "list('..')");
        await expectIsolationError(sb.list('/'), ['INVALID_INPUT', 'FORBIDDEN'], "list('/')");
        await expectIsolationError(sb.mkdir('../tmp/evil-dir'), ['INVALID_INPUT', 'FORBIDDEN'], 'mkdir(..)');
        await expectIsolationError(
          sb.rename(`${ESC}/inside.txt`, '../tmp/moved'),
          ['INVALID_INPUT', 'FORBIDDEN'],
          'rename to ..',
        );
        await expectIsolationError(
          sb.rename('../tmp/canary', `${ESC}/stolen`),
          ['INVALID_INPUT', 'FORBIDDEN'],
          'rename from ..',
        );
        // Encoded dots and Windows separators: refused, or taken literally as a name inside the workspace.
        for (const p of [
          '%2e%2e/tmp/canary',
          '..%2ftmp%2fcanary',
          '..\\tmp\\canary',
          '..\\..\\tmp\\canary',
        ]) {
          const r = await settle(sb.readFile(p));
          expect(
            r.ok && containsText(r.value, s.canary),
            `readFile(${JSON.stringify(p)}) returned the canary`,
          ).toBe(false);
          if (!r.ok) expect(isIsolationError(r.error), describeError(r.error)).toBe(true);
          await settle(sb.writeFile(p.replace('canary', 'encoded-write'), 'x'));
        }
        for (const p of [`x`.repeat(300), `${'a/'.repeat(3000)}b`]) {
          const r = await settle(sb.writeFile(p, 'x', { createParents: true }));
          expect(r.ok, `writeFile of a ${p.length}-character path`).toBe(false);
          if (!r.ok)
            expect(isIsolationError(r.error) && r.error.code !== 'INTERNAL', describeError(r.error)).toBe(
              true,
            );
        }
        await expectCanaryIntact(s);
        for (const leaked of ['/tmp/moved', '/tmp/evil-dir', '/tmp/encoded-write', '/workspace/esc/stolen']) {
          expect(await existsInside(sb, leaked), `${leaked} was created`).toBe(false);
        }
      },
    );

    h.case(
      'files-escape.symlink-read',
      'readFile/stat through a planted link to /tmp, /etc or / are FORBIDDEN',
      async () => {
        const s = await setup();
        const sb = s.sandbox;
        for (const p of [
          `${ESC}/tmp-link/canary`,
          `${ESC}/up/tmp/canary`,
          `${ESC}/etc-link/passwd`,
          `${ESC}/up/etc/passwd`,
        ]) {
          const r = await settle(sb.readFile(p));
          if (r.ok) {
            expect(
              containsText(r.value, s.canary) || containsText(r.value, 'root:x:0:0'),
              `readFile(${p}) leaked`,
            ).toBe(false);
          }
          await expectIsolationError(sb.readFile(p), ['FORBIDDEN'], `readFile(${p})`);
          await expectIsolationError(sb.stat(p), ['FORBIDDEN'], `stat(${p})`);
        }
      },
    );

    h.case(
      'files-escape.symlink-write',
      'writeFile through a planted link is FORBIDDEN and changes nothing outside',
      async () => {
        const s = await setup();
        const sb = s.sandbox;
        const created = nonce('through-link');
        await expectIsolationError(
          sb.writeFile(`${ESC}/tmp-link/canary`, 'pwned'),
          ['FORBIDDEN'],
          'overwrite via link',
        );
        await expectIsolationError(
          sb.writeFile(`${ESC}/tmp-link/${created}`, 'pwned'),
          ['FORBIDDEN'],
          'create via link',
        );
        await expectIsolationError(
          sb.writeFile(`${ESC}/up/tmp/${created}`, 'pwned'),
          ['FORBIDDEN'],
          'create via ../../',
        );
        await expectIsolationError(
          sb.writeFile(`${ESC}/tmp-link/${created}-dir/f`, 'pwned', { createParents: true }),
          ['FORBIDDEN'],
          'createParents via link',
        );
        await expectCanaryIntact(s);
        for (const p of [`/tmp/${created}`, `/tmp/${created}-dir`])
          expect(await existsInside(sb, p), p).toBe(false);
      },
    );

    h.case(
      'files-escape.symlink-dangling-write',
      'writeFile to a link pointing at a missing file outside never creates it',
      async () => {
        const s = await setup();
        const sb = s.sandbox;
        const direct = await settle(sb.writeFile(`${ESC}/dangling`, 'pwned'));
        const viaCanaryLink = await settle(sb.writeFile(`${ESC}/canary-link`, 'pwned'));
        expect(
          await existsInside(sb, `/tmp/${s.dangling}`),
          'a file was created through the dangling link',
        ).toBe(false);
        await expectCanaryIntact(s);
        // Refusing is right; so is replacing the link itself with a regular file inside the workspace.
        for (const [name, outcome] of [
          ['dangling', direct],
          ['canary-link', viaCanaryLink],
        ] as const) {
          if (outcome.ok) {
            const kind = await run(sb, ['stat', '-c', '%F', `/workspace/${ESC}/${name}`]);
            expect(kind.out.trim(), `${name} after a successful write`).toBe('regular file');
          } else {
            expect(isIsolationError(outcome.error, 'FORBIDDEN'), describeError(outcome.error)).toBe(true);
          }
        }
        expectOk(
          await sh(
            sb,
            `cd /workspace/${ESC} && ln -sfn /tmp/canary canary-link && ln -sfn "/tmp/${s.dangling}" dangling`,
          ),
          're-plant',
        );
      },
    );

    h.case('files-escape.symlink-list', 'list() through or of a planted link is FORBIDDEN', async () => {
      const s = await setup();
      const sb = s.sandbox;
      const entries = await sb.list(ESC);
      expect(entries.find((e) => e.name === 'tmp-link')?.type, 'control: links are listed as links').toBe(
        'symlink',
      );
      for (const p of [`${ESC}/tmp-link`, `${ESC}/etc-link`, `${ESC}/up`, `${ESC}/up/tmp`]) {
        const r = await settle(sb.list(p));
        if (r.ok)
          expect(
            r.value.map((e) => e.name),
            `list(${p}) leaked`,
          ).not.toContain('canary');
        await expectIsolationError(sb.list(p), ['FORBIDDEN'], `list(${p})`);
      }
    });

    h.case(
      'files-escape.symlink-mkdir-rename',
      'mkdir and rename through a planted link are FORBIDDEN',
      async () => {
        const s = await setup();
        const sb = s.sandbox;
        const name = nonce('via-link');
        await expectIsolationError(sb.mkdir(`${ESC}/tmp-link/${name}`), ['FORBIDDEN'], 'mkdir via link');
        await expectIsolationError(
          sb.mkdir(`${ESC}/up/tmp/${name}/a/b`, { recursive: true }),
          ['FORBIDDEN'],
          'mkdir -p via ../../',
        );
        await expectIsolationError(
          sb.rename(`${ESC}/tmp-link/canary`, `${ESC}/stolen`),
          ['FORBIDDEN'],
          'rename out of /tmp',
        );
        await expectIsolationError(
          sb.rename(`${ESC}/inside.txt`, `${ESC}/tmp-link/${name}`),
          ['FORBIDDEN'],
          'rename into /tmp',
        );
        await expectCanaryIntact(s);
        expect(await existsInside(sb, `/tmp/${name}`), `/tmp/${name}`).toBe(false);
        expect(await existsInside(sb, `/workspace/${ESC}/stolen`), 'stolen canary').toBe(false);
        expect(await catInside(sb, `/workspace/${ESC}/inside.txt`)).toBe('inside');
      },
    );

    h.case(
      'files-escape.symlink-remove',
      'remove through a planted link is FORBIDDEN; removing the link spares its target',
      async () => {
        const s = await setup();
        const sb = s.sandbox;
        await expectIsolationError(sb.remove(`${ESC}/tmp-link/canary`), ['FORBIDDEN'], 'remove via link');
        await expectIsolationError(sb.remove(`${ESC}/up/tmp/canary`), ['FORBIDDEN'], 'remove via ../../');
        await expectIsolationError(
          sb.remove(`${ESC}/up/tmp`, { recursive: true }),
          ['FORBIDDEN'],
          'rm -r via ../../',
        );
        await expectCanaryIntact(s);
        // Removing the link itself is allowed (it lives in the workspace) but must not recurse into /tmp.
        const r = await settle(sb.remove(`${ESC}/tmp-link`, { recursive: true }));
        if (!r.ok) expect(isIsolationError(r.error), describeError(r.error)).toBe(true);
        await expectCanaryIntact(s);
        expect(await catInside(sb, '/tmp/outside/secret')).toBe(s.outsideSecret);
        expectOk(await sh(sb, `ln -sfn /tmp /workspace/${ESC}/tmp-link`), 're-plant tmp-link');
      },
    );

    h.case('files-escape.symlink-itself', 'reading a link that points outside is FORBIDDEN', async () => {
      const s = await setup();
      const sb = s.sandbox;
      for (const p of [`${ESC}/etc-link`, `${ESC}/canary-link`, `${ESC}/passwd-link`]) {
        const r = await settle(sb.readFile(p));
        if (r.ok) {
          expect(
            containsText(r.value, s.canary) || containsText(r.value, 'root:x:0:0'),
            `readFile(${p}) leaked`,
          ).toBe(false);
        }
        await expectIsolationError(sb.readFile(p), ['FORBIDDEN'], `readFile(${p})`);
      }
      // stat() may describe the link itself, but never its target outside.
      const st = await settle(sb.stat(`${ESC}/canary-link`));
      if (st.ok) expect(st.value.type).toBe('symlink');
      else expect(isIsolationError(st.error, 'FORBIDDEN'), describeError(st.error)).toBe(true);
    });

    h.case(
      'files-escape.hardlink',
      'a hard link to a file outside /workspace cannot be made (EXDEV)',
      async () => {
        const s = await setup();
        const sb = s.sandbox;
        const control = await sh(sb, `ln /workspace/${ESC}/inside.txt /workspace/${ESC}/hl-control`);
        expectOk(control, 'control: a hard link inside the workspace');
        for (const target of ['/tmp/canary', '/etc/passwd']) {
          const r = await run(sb, ['ln', target, `/workspace/${ESC}/hl-${target.split('/').at(-1)}`]);
          expectFailed(r, `ln ${target}`);
          expect(r.err, describeRun(r)).toMatch(/Invalid cross-device link|Operation not permitted/);
        }
        await expectCanaryIntact(s);
      },
    );

    h.case(
      'files-escape.symlink-race',
      'file calls during a dir⇄link swap race never touch /tmp/outside (CVE-2018-15664)',
      async (ctx) => {
        const s = await setup();
        const sb = s.sandbox;
        const before = await run(sb, ['ls', '-A', '/tmp']);
        const swapper = new AbortController();
        let progress = '';
        const racing = settle(
          sb.exec(['python3', '-c', SWAPPER, `/workspace/${ESC}`], {
            timeoutMs: 110_000,
            maxOutputBytes: 1 << 20,
            signal: swapper.signal,
            onStdout: (chunk) => {
              progress += text(chunk);
            },
          }),
        );
        const stats = { calls: 0, ok: 0, rejected: 0, notIsolationError: [] as string[] };
        const leaks: string[] = [];
        try {
          await waitFor('the swapper to start', async () => (/swaps \d+/.test(progress) ? true : undefined));
          const ops: Array<() => Promise<unknown>> = [
            () => sb.readFile(`${ESC}/race/secret`),
            () => sb.readFile(`${ESC}/race/marker`),
            () => sb.readFile(`${ESC}/race/file`),
            () => sb.writeFile(`${ESC}/race/secret`, 'pwned'),
            () => sb.writeFile(`${ESC}/race/file`, 'api-write'),
            () => sb.list(`${ESC}/race`),
            () => sb.stat(`${ESC}/race/secret`),
            () => sb.remove(`${ESC}/race/secret`),
            () => sb.remove(`${ESC}/race/marker`),
            () => sb.mkdir(`${ESC}/race/api-dir`, { recursive: true }),
          ];
          // At least 300 calls and at least 5 s of racing, whichever is longer (bounded at 60 s).
          const started = Date.now();
          const elapsed = () => Date.now() - started;
          while ((stats.calls < 300 || elapsed() < 5_000) && elapsed() < 60_000) {
            await Promise.all(
              ops.map(async (op) => {
                stats.calls++;
                const r = await settle(op());
                if (!r.ok) {
                  stats.rejected++;
                  if (!isIsolationError(r.error)) stats.notIsolationError.push(describeError(r.error));
                  return;
                }
                stats.ok++;
                const v = r.value;
                if (v instanceof Uint8Array) {
                  if (containsText(v, s.outsideSecret) || containsText(v, s.outsideMarker))
                    leaks.push('readFile returned outside data');
                } else if (Array.isArray(v)) {
                  if (v.some((e: { name?: string }) => e.name === 'marker'))
                    leaks.push('list showed /tmp/outside');
                } else if (
                  v !== null &&
                  typeof v === 'object' &&
                  'size' in v &&
                  v.size === s.outsideSecret.length
                ) {
                  leaks.push('stat described /tmp/outside/secret');
                }
              }),
            );
          }
        } finally {
          swapper.abort();
        }
        const swapperOutcome = await racing;
        expect(
          swapperOutcome.ok ? 'resolved' : describeError(swapperOutcome.error),
          'the swapper ends by cancellation',
        ).toMatch(/^IsolationError CANCELLED/);
        const swaps = Math.max(0, ...[...progress.matchAll(/swaps (\d+)/g)].map((m) => Number(m[1])));
        await ctx.annotate(
          `${stats.calls} calls (${stats.ok} ok, ${stats.rejected} rejected) during ${swaps} swaps`,
        );
        expect(stats.calls).toBeGreaterThanOrEqual(300);
        expect(swaps, 'the swapper really raced').toBeGreaterThanOrEqual(100);
        expect(leaks).toEqual([]);
        expect(stats.notIsolationError, 'rejections that are not IsolationErrors').toEqual([]);
        expect(await catInside(sb, '/tmp/outside/secret')).toBe(s.outsideSecret);
        expect(await catInside(sb, '/tmp/outside/marker')).toBe(s.outsideMarker);
        expect((await run(sb, ['ls', '-A', '/tmp/outside'])).out.split('\n').filter(Boolean).sort()).toEqual([
          'marker',
          'secret',
        ]);
        expect((await run(sb, ['ls', '-A', '/tmp'])).out, 'new entries in /tmp').toBe(before.out);
        await expectCanaryIntact(s);
      },
      240_000,
    );
  });
}

/**
 * Swaps `race` between a real directory and a link to /tmp/outside as fast as python can, printing progress
 * so the case can prove the race was live. An API call that recreates `race` in the gap is dropped.
 */
const SWAPPER = `
import os, shutil, sys, time
os.chdir(sys.argv[1])
swaps, last = 0, 0.0
print('swaps 0', flush=True)
while True:
    if os.path.isdir('race-dir-tmp') and not os.path.islink('race'):
        shutil.rmtree('race', ignore_errors=True)
        try:
            os.rename('race-dir-tmp', 'race')
        except OSError:
            pass
    try:
        os.rename('race', 'race-dir-tmp')
    except OSError:
        continue
    try:
        os.symlink('/tmp/outside', 'race')
        swaps += 1
    except OSError:
        pass
    try:
        if os.path.islink('race'):
            os.unlink('race')
    except OSError:
        pass
    try:
        os.rename('race-dir-tmp', 'race')
    except OSError:
        pass
    if time.time() - last > 0.05:
        last = time.time()
        print('swaps %d' % swaps, flush=True)
`;
