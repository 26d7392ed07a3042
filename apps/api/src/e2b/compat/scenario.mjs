// Issue 21's scenario: the unmodified `e2b` SDK against a self-hosted Studio. Run from the folder the SDK was
// installed into (harness.ts copies this file there, so `import 'e2b'` resolves to that install, never the
// repository's): `node -r dns-patch.cjs scenario.mjs <case>`. Prints one JSON line `{case, ok, error?, notes?}`.
// A step only a person in the IDE can take is asked of the test: a line `{ask, sandboxId}` on stdout, answered by
// a JSON line on stdin.
//
// Environment: E2B_API_URL, E2B_API_KEY and (header routing) E2B_SANDBOX_URL, as a user sets them; and from the
// test E2B_COMPAT_DOMAIN (the domain Studio answers creates with), E2B_COMPAT_OTHER_KEY (another user's key),
// E2B_COMPAT_MEMORY (1: the backend keeps a paused sandbox's memory), E2B_COMPAT_ROUTING (header | host),
// E2B_COMPAT_VERSION (the SDK version the test installed).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as e2b from 'e2b';

const { Sandbox, CommandExitError, TimeoutError, NotFoundError, SandboxError, AuthenticationError } = e2b;
const require = createRequire(import.meta.url);
const VERSION = require('e2b/package.json').version;
const [MAJOR = 0, MINOR = 0] = VERSION.split('.').map(Number);
/** 2.51 and later: `pause()`, `closeStdin`, `SandboxNotFoundError`; 2.10: `betaPause()`, neither of the others. */
const MODERN = MAJOR > 2 || (MAJOR === 2 && MINOR >= 51);
// 2.10 has no SandboxNotFoundError: its sandbox 404s are NotFoundError.
const SandboxMissing = e2b.SandboxNotFoundError ?? NotFoundError;
const DOMAIN = process.env.E2B_COMPAT_DOMAIN ?? '';
const OTHER_KEY = process.env.E2B_COMPAT_OTHER_KEY ?? '';
const MEMORY = process.env.E2B_COMPAT_MEMORY === '1';
const ROUTING = process.env.E2B_COMPAT_ROUTING ?? 'header';
const ID = /^[0-9a-f]{32}$/;

const notes = [];
const note = (text) => notes.push(text);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const enc = new TextEncoder();

/** Polls `check` until it returns a truthy value; throws naming `what` after `timeoutMs`. */
async function until(what, check, timeoutMs = 30_000, everyMs = 250) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (error) {
      last = error;
    }
    if (Date.now() > end)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`,
      );
    await sleep(everyMs);
  }
}

/** Awaits `p` and returns what it rejected with; fails when it resolves. */
async function rejection(p, what) {
  try {
    const value = await p;
    assert.fail(`${what}: expected an error, got ${JSON.stringify(value)}`);
  } catch (error) {
    if (error instanceof assert.AssertionError) throw error;
    return error;
  }
}

const describeError = (e) => `${e?.constructor?.name ?? typeof e}: ${e?.message ?? String(e)}`;

/** Asserts `e` is an instance of `cls`, saying what it was instead. */
function assertClass(e, cls, what) {
  assert.ok(e instanceof cls, `${what}: expected ${cls.name}, got ${describeError(e)}`);
}

// Answers from the test, one JSON line each.
const answers = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(question, data) {
  process.stdout.write(`${JSON.stringify({ ask: question, ...data })}\n`);
  const { value, done } = await answers.next();
  if (done) throw new Error(`the test did not answer ${question}`);
  const reply = JSON.parse(value);
  if (reply.error) throw new Error(`${question}: ${reply.error}`);
  return reply;
}

// A case's checks are steps: a failed step is recorded and the case goes on to the next, so one incompatibility
// does not hide the others; the case fails listing every failed step (with its line in this file).
const failures = [];
async function step(label, fn) {
  try {
    return await fn();
  } catch (error) {
    const at = /scenario\.mjs:(\d+)/.exec(error?.stack ?? '')?.[1];
    failures.push(`${label}${at ? ` (scenario.mjs:${at})` : ''}: ${describeError(error)}`);
    return undefined;
  }
}

// Every sandbox a case makes is killed when it ends (the test also destroys what its run labelled).
const made = [];
async function create(...args) {
  const sbx = await Sandbox.create(...args);
  made.push(sbx.sandboxId);
  return sbx;
}

const pause = (sbx) => (MODERN ? sbx.pause() : sbx.betaPause());

/** Lists every page of `Sandbox.list(opts)`. */
async function listAll(opts) {
  const pages = Sandbox.list(opts);
  const out = [];
  while (pages.hasNext) out.push(...(await pages.nextItems()));
  return out;
}

const cases = {
  /** The SDK is the one installed in this folder (not the repository's), at the version the test asked for. */
  async install() {
    const here = dirname(fileURLToPath(import.meta.url));
    const resolved = require.resolve('e2b');
    assert.ok(
      resolved.startsWith(`${here}/node_modules/e2b/`),
      `e2b resolved to ${resolved}, not under ${here}`,
    );
    assert.equal(VERSION, process.env.E2B_COMPAT_VERSION);
    assert.equal(typeof Sandbox.create, 'function');
  },

  /** create (with and without a template), getInfo, connect, list (filters, paging), timeouts, kill. */
  async lifecycle() {
    const tag = randomUUID();
    const metadata = { suite: 'e2b-compat', tag };
    const sbx = await create('base', { timeoutMs: 120_000, metadata });
    await step('create: id and domain', () => {
      assert.match(sbx.sandboxId, ID);
      assert.equal(
        sbx.sandboxDomain,
        DOMAIN,
        'the create response names the domain sandboxes are reached on',
      );
    });

    const info = await step('getInfo', async () => {
      const i = await sbx.getInfo();
      assert.equal(i.sandboxId, sbx.sandboxId);
      assert.deepEqual(i.metadata, metadata);
      assert.equal(i.state, 'running');
      assert.equal(typeof i.templateId, 'string');
      assert.ok(i.templateId.length > 0, 'templateId is set');
      assert.ok(i.startedAt instanceof Date && !Number.isNaN(i.startedAt.getTime()), 'startedAt is a date');
      assert.ok(i.endAt instanceof Date && !Number.isNaN(i.endAt.getTime()), 'endAt is a date');
      // endAt is startedAt + the timeout asked for (120 s).
      const lifetime = i.endAt.getTime() - i.startedAt.getTime();
      assert.ok(
        lifetime > 100_000 && lifetime <= 125_000,
        `endAt - startedAt is ${lifetime} ms, not about 120 s`,
      );
      return i;
    });

    await step('Sandbox.connect(id) of a running sandbox', async () => {
      const same = await Sandbox.connect(sbx.sandboxId);
      assert.equal(same.sandboxId, sbx.sandboxId);
      assert.equal((await same.commands.run('echo connected')).stdout, 'connected\n');
    });

    // Without a template: `base`. Two more with the same tag, to page through.
    const second = await create({ timeoutMs: 120_000, metadata });
    const third = await create('base', { timeoutMs: 120_000, metadata });
    const ids = new Set([sbx.sandboxId, second.sandboxId, third.sandboxId]);
    assert.equal(ids.size, 3, 'three distinct sandbox ids');

    await step('list: metadata and state filters', async () => {
      const matching = await listAll({ query: { metadata: { tag }, state: ['running'] } });
      assert.deepEqual(new Set(matching.map((s) => s.sandboxId)), ids);
      for (const s of matching) {
        assert.deepEqual(s.metadata, metadata);
        assert.equal(s.state, 'running');
      }
      const byBoth = await listAll({ query: { metadata: { tag, suite: 'e2b-compat' } } });
      assert.equal(byBoth.length, 3, 'metadata filters combine with AND');
      assert.deepEqual(await listAll({ query: { metadata: { tag: `not-${tag}` }, state: ['running'] } }), []);
      assert.deepEqual(await listAll({ query: { metadata: { tag }, state: ['paused'] } }), []);
    });

    await step('list: paging with limit 2', async () => {
      const pages = Sandbox.list({ query: { metadata: { tag } }, limit: 2 });
      assert.equal(pages.hasNext, true);
      const first = await pages.nextItems();
      assert.equal(first.length, 2, 'the first page holds `limit` sandboxes');
      assert.equal(pages.hasNext, true, 'a next page is announced (x-next-token)');
      const rest = await pages.nextItems();
      assert.equal(rest.length, 1);
      assert.equal(pages.hasNext, false);
      assert.deepEqual(new Set([...first, ...rest].map((s) => s.sandboxId)), ids);
    });

    await step('setTimeout moves endAt', async () => {
      await sbx.setTimeout(300_000);
      const later = await sbx.getInfo();
      const before = info?.endAt.getTime() ?? 0;
      assert.ok(
        later.endAt.getTime() > before + 60_000,
        `setTimeout(300 s) moved endAt from ${info?.endAt.toISOString()} to ${later.endAt.toISOString()}`,
      );
    });

    await step('a short timeout: the sandbox goes away on its own', async () => {
      await Sandbox.setTimeout(second.sandboxId, 3_000);
      await until(
        'the sandbox whose timeout ran out to be gone',
        async () => {
          const e = await rejection(Sandbox.getInfo(second.sandboxId), 'getInfo of a timed-out sandbox');
          assertClass(e, SandboxMissing, 'getInfo of a timed-out sandbox');
          return true;
        },
        120_000,
        1_000,
      );
      const after = await listAll({ query: { metadata: { tag } } });
      assert.ok(!after.some((s) => s.sandboxId === second.sandboxId), 'a timed-out sandbox is not listed');
    });

    await step('kill(): then isRunning() is false and getInfo a NotFound', async () => {
      const killed = await sbx.kill();
      if (MODERN) assert.equal(killed, true);
      assert.equal(await sbx.isRunning(), false, 'isRunning() right after kill()');
      assertClass(
        await rejection(Sandbox.getInfo(sbx.sandboxId), 'getInfo'),
        SandboxMissing,
        'getInfo after kill',
      );
    });

    await step('Sandbox.kill(id): true, then false', async () => {
      assert.equal(await Sandbox.kill(third.sandboxId), true);
      assert.equal(await Sandbox.kill(third.sandboxId), false);
    });
    await step('none of them is listed any more', async () => {
      assert.deepEqual(await listAll({ query: { metadata: { tag } } }), []);
    });
  },

  /** run, exit codes, cwd, envs, streaming, background, stdin, kill, list, connect, timeouts. */
  async commands() {
    const sbx = await create({
      timeoutMs: 300_000,
      envs: { FROM_CREATE: 'sandbox-level', SHADOWED: 'create' },
    });
    const c = sbx.commands;

    await step('run: stdout, stderr, exitCode', async () => {
      const hi = await c.run('echo hi');
      assert.equal(hi.stdout, 'hi\n');
      assert.equal(hi.stderr, '');
      assert.equal(hi.exitCode, 0);
    });

    await step('a non-zero exit throws CommandExitError', async () => {
      const failed = await rejection(c.run('echo oops >&2; exit 3'), 'a failing command');
      assertClass(failed, CommandExitError, 'a non-zero exit');
      assert.equal(failed.exitCode, 3);
      assert.equal(failed.stderr, 'oops\n');
    });

    await step('the default cwd is the home folder (/workspace), where relative file paths go', async () => {
      assert.equal((await c.run('pwd')).stdout, '/workspace\n');
      await sbx.files.write('relative.txt', 'same place');
      assert.equal((await c.run('cat relative.txt')).stdout, 'same place');
    });
    await step('cwd: /home/user is /workspace', async () => {
      assert.equal((await c.run('pwd', { cwd: '/home/user' })).stdout, '/workspace\n');
    });
    // Studio's rule (issue 21: paths keep the workspace rules), documented in docs/e2b.md: a cwd outside the
    // workspace is refused with a message that says so, where E2B would run there.
    await step('cwd: /tmp is refused, naming the workspace rule', async () => {
      const refused = await c.run('pwd', { cwd: '/tmp' }).catch((e) => e);
      assert.ok(refused instanceof SandboxError, `refused with a SandboxError (got ${refused})`);
      assert.match(String(refused.message), /outside the workspace/);
    });

    await step('envs: sandbox-level (create) and per command', async () => {
      assert.equal((await c.run('echo $FROM_CREATE')).stdout, 'sandbox-level\n');
      assert.equal((await c.run('echo $PER', { envs: { PER: 'per-command' } })).stdout, 'per-command\n');
      assert.equal((await c.run('echo $SHADOWED', { envs: { SHADOWED: 'command' } })).stdout, 'command\n');
    });

    await step('streaming onStdout / onStderr', async () => {
      const out = [];
      const err = [];
      const streamed = await c.run('echo out1; echo err1 >&2; sleep 0.3; echo out2', {
        onStdout: (d) => out.push(d),
        onStderr: (d) => err.push(d),
      });
      assert.equal(out.join(''), 'out1\nout2\n');
      assert.equal(err.join(''), 'err1\n');
      assert.equal(streamed.stdout, 'out1\nout2\n');
    });

    await step('background: true, then wait()', async () => {
      const bg = await c.run('sleep 0.5; echo done', { background: true });
      assert.ok(Number.isInteger(bg.pid) && bg.pid > 0, `a pid: ${bg.pid}`);
      const waited = await bg.wait();
      assert.equal(waited.stdout, 'done\n');
      assert.equal(waited.exitCode, 0);
    });

    await step('stdin: sendStdin', async () => {
      const reader = await c.run('head -n 1', { background: true, stdin: true });
      await c.sendStdin(reader.pid, 'typed line\n');
      assert.equal((await reader.wait()).stdout, 'typed line\n');
    });
    if (MODERN) {
      await step('stdin: closeStdin ends the input', async () => {
        const cat = await c.run('cat', { background: true, stdin: true });
        await c.sendStdin(cat.pid, 'one\n');
        await cat.sendStdin('two\n');
        await c.closeStdin(cat.pid);
        assert.equal((await cat.wait()).stdout, 'one\ntwo\n');
      });
    } else {
      note(`closeStdin: not in e2b ${VERSION} (added later); stdin checked with head -n 1 only`);
    }

    await step('list() shows a running command; handle.kill() ends it', async () => {
      const sleeper = await c.run('sleep 120', { background: true });
      const listed = await c.list();
      const entry = listed.find((p) => p.pid === sleeper.pid);
      assert.ok(entry, `commands.list() shows pid ${sleeper.pid}: ${JSON.stringify(listed)}`);
      assert.match([entry.cmd, ...entry.args].join(' '), /sleep 120/);
      assert.equal(await sleeper.kill(), true);
      assertClass(
        await rejection(sleeper.wait(), 'wait on a killed command'),
        CommandExitError,
        'a killed command',
      );
      await until(
        'the killed command to leave commands.list()',
        async () => !(await c.list()).some((p) => p.pid === sleeper.pid),
      );
    });
    await step('commands.kill(pid)', async () => {
      const other = await c.run('sleep 120', { background: true });
      assert.equal(await c.kill(other.pid), true);
      await until(
        'commands.kill(pid) to end it',
        async () => !(await c.list()).some((p) => p.pid === other.pid),
      );
      assert.equal(await c.kill(999_999), false, 'killing a pid that is not running');
    });

    await step('connect(pid) to a running command gets its later output', async () => {
      const ticker = await c.run('for i in 1 2 3 4; do echo tick$i; sleep 0.5; done', { background: true });
      await ticker.disconnect();
      const seen = [];
      const again = await c.connect(ticker.pid, { onStdout: (d) => seen.push(d) });
      const ended = await again.wait();
      assert.match(seen.join(''), /tick4\n/);
      assert.equal(ended.exitCode, 0);
    });

    await step('timeoutMs: TimeoutError', async () => {
      const slow = await rejection(c.run('sleep 30', { timeoutMs: 1_000 }), 'a command past its timeoutMs');
      assertClass(slow, TimeoutError, 'a command past its timeoutMs');
    });
  },

  /** read/write (text, bytes), list, makeDir, rename, remove, exists, getInfo, watchDir, signed URLs, paths. */
  async files() {
    const sbx = await create({ timeoutMs: 300_000 });
    const f = sbx.files;

    await step('write and read text; /home/user and relative paths are /workspace', async () => {
      const written = await f.write('/home/user/notes/hello.txt', 'hello from the sdk');
      assert.equal(written.name, 'hello.txt');
      assert.equal(await f.read('/home/user/notes/hello.txt'), 'hello from the sdk');
      assert.equal(await f.read('notes/hello.txt'), 'hello from the sdk');
      assert.equal(await f.read('/workspace/notes/hello.txt'), 'hello from the sdk');
      assert.equal((await sbx.commands.run('cat /workspace/notes/hello.txt')).stdout, 'hello from the sdk');
    });

    // Studio's rule, as for cwd: the files API serves the workspace only (commands may still use /tmp).
    await step('a path outside the workspace (/tmp) is refused, naming the rule', async () => {
      const refused = await f.write('/tmp/outside.txt', 'in tmp').catch((e) => e);
      assert.ok(refused instanceof SandboxError, `refused with a SandboxError (got ${refused})`);
      assert.match(String(refused.message), /outside the workspace/);
      assert.equal((await sbx.commands.run('echo in tmp > /tmp/t && cat /tmp/t')).stdout, 'in tmp\n');
    });

    await step('write bytes, read format: bytes', async () => {
      const bytes = new Uint8Array(256).map((_, i) => i);
      await f.write('bin/all-bytes.bin', bytes.buffer.slice(0));
      const back = await f.read('bin/all-bytes.bin', { format: 'bytes' });
      assert.ok(back instanceof Uint8Array, 'format: bytes gives a Uint8Array');
      assert.deepEqual(Array.from(back), Array.from(bytes));
    });

    await step('makeDir, list (depth 1 and 2), getInfo', async () => {
      assert.equal(await f.makeDir('tree/a/b'), true);
      assert.equal(await f.makeDir('tree/a/b'), false, 'makeDir of an existing folder');
      await f.write('tree/top.txt', 'top');
      await f.write('tree/a/mid.txt', 'mid');
      await f.write('tree/a/b/deep.txt', 'deep');
      const shallow = await f.list('tree');
      assert.deepEqual(shallow.map((e) => e.name).sort(), ['a', 'top.txt']);
      const two = await f.list('/home/user/tree', { depth: 2 });
      assert.deepEqual(two.map((e) => e.name).sort(), ['a', 'b', 'mid.txt', 'top.txt']);
      assert.equal(two.find((e) => e.name === 'a')?.type, 'dir');
      assert.equal(two.find((e) => e.name === 'top.txt')?.type, 'file');
      const info = await f.getInfo('tree/top.txt');
      assert.equal(info.name, 'top.txt');
      assert.equal(info.type, 'file');
      assert.equal(info.size, 3);
      assert.match(info.path, /\/tree\/top\.txt$/);
    });

    await step('rename, exists, remove; reading a removed file is a NotFoundError', async () => {
      await f.write('moving/from.txt', 'moving');
      const moved = await f.rename('moving/from.txt', 'moving/to.txt');
      assert.equal(moved.name, 'to.txt');
      assert.equal(await f.exists('moving/from.txt'), false);
      assert.equal(await f.exists('moving/to.txt'), true);
      assert.equal(await f.read('moving/to.txt'), 'moving');
      await f.remove('moving/to.txt');
      assert.equal(await f.exists('moving/to.txt'), false);
      assertClass(await rejection(f.read('moving/to.txt'), 'read'), NotFoundError, 'reading a removed file');
    });

    await step('watchDir (recursive) sees a file made in a subfolder', async () => {
      await f.makeDir('watched/sub');
      const events = [];
      const watcher = await f.watchDir('watched', (e) => events.push(e), { recursive: true });
      try {
        await f.write('watched/sub/new.txt', 'seen');
        await until('a watch event for watched/sub/new.txt', () =>
          events.some((e) => e.name.endsWith('new.txt') && ['create', 'write'].includes(e.type)),
        );
      } finally {
        await watcher.stop();
      }
    });

    // Signed URLs: POST multipart to upload, GET to download, with no other credential. With E2B_SANDBOX_URL the
    // SDK makes them `new URL('/files', E2B_SANDBOX_URL)`: the API's root, naming no sandbox (its signature does);
    // by host name they are on the sandbox's envd host.
    await step('uploadUrl / downloadUrl', async () => {
      await f.write('notes/hello.txt', 'hello from the sdk');
      const up = await sbx.uploadUrl('uploaded/by-url.txt');
      if (ROUTING === 'host') assert.match(new URL(up).hostname, new RegExp(`^49983-${sbx.sandboxId}\\.`));
      else assert.equal(new URL(up).origin, new URL(process.env.E2B_SANDBOX_URL).origin);
      const form = new FormData();
      form.append('file', new Blob(['uploaded through a signed url']), 'by-url.txt');
      const put = await fetch(up, { method: 'POST', body: form });
      assert.ok(put.ok, `upload URL answered ${put.status}: ${await put.text()}`);
      assert.equal(await f.read('uploaded/by-url.txt'), 'uploaded through a signed url');
      const down = await sbx.downloadUrl('notes/hello.txt');
      const got = await fetch(down);
      assert.equal(got.status, 200);
      assert.equal(await got.text(), 'hello from the sdk');
      // A download URL is for its own path: another path with its signature is refused.
      const forged = new URL(down);
      forged.searchParams.set('path', 'bin/all-bytes.bin');
      const refused = await fetch(forged);
      assert.ok(refused.status === 401 || refused.status === 403, `a forged path answered ${refused.status}`);
    });
  },

  /** A terminal: create, input and its output, resize (stty size), kill. */
  async pty() {
    const sbx = await create({ timeoutMs: 300_000 });
    const dec = new TextDecoder();
    let screen = '';
    const term = await sbx.pty.create({
      cols: 80,
      rows: 24,
      onData: (d) => {
        screen += dec.decode(d, { stream: true });
      },
    });
    assert.ok(term.pid > 0);
    await step('input and its output; stty size is the size asked for', async () => {
      await sbx.pty.sendInput(term.pid, enc.encode('stty size; echo pty-$((6*7))\n'));
      await until('the terminal to echo pty-42', () => screen.includes('pty-42'), 20_000);
      assert.match(screen, /24 80/);
    });
    await step('resize', async () => {
      await sbx.pty.resize(term.pid, { cols: 100, rows: 30 });
      await sbx.pty.sendInput(term.pid, enc.encode('stty size\n'));
      await until('stty size to say 30 100 after resize', () => screen.includes('30 100'), 20_000);
    });
    await step('kill', async () => {
      assert.equal(await sbx.pty.kill(term.pid), true);
      await until(
        'the killed terminal to leave commands.list()',
        async () => !(await sbx.commands.list()).some((p) => p.pid === term.pid),
      );
    });
  },

  /** pause → state paused → connect resumes; the workspace (and on gVisor a process's memory) survives. */
  async pause() {
    const sbx = await create({ timeoutMs: 300_000 });
    await sbx.files.write('before-pause.txt', 'kept across the pause');
    let counted = 0;
    if (MEMORY) {
      // A process whose state lives only in memory: a counter in a shell variable, written out every 0.1 s.
      await sbx.commands.run(
        "setsid sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done' >/dev/null 2>&1 </dev/null &",
      );
      counted = await until('the counter to pass 5', async () => {
        const n = Number((await sbx.commands.run('cat /tmp/count')).stdout);
        return n > 5 ? n : 0;
      });
    }
    assert.equal(await pause(sbx), true, `${MODERN ? 'pause' : 'betaPause'}() of a running sandbox`);
    await step('getInfo and list say paused', async () => {
      assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused');
      const listed = await listAll({ query: { state: ['paused'] } });
      assert.ok(
        listed.some((s) => s.sandboxId === sbx.sandboxId),
        'the paused sandbox is listed as paused',
      );
    });

    const resumed = await Sandbox.connect(sbx.sandboxId);
    assert.equal(resumed.sandboxId, sbx.sandboxId);
    await step('connect resumed it: running, the workspace kept', async () => {
      assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'running');
      assert.equal(await resumed.files.read('before-pause.txt'), 'kept across the pause');
    });
    if (MEMORY) {
      await step("a background process's memory survived", async () => {
        // It carried on from its memory: a fresh counter would start again from 1.
        const count = async () => Number((await resumed.commands.run('cat /tmp/count')).stdout);
        const c1 = await count();
        assert.ok(c1 >= counted, `the counter went from ${counted} to ${c1}`);
        await until('the counter to go on counting', async () => (await count()) > c1);
      });
    } else {
      note('the backend keeps no memory across a pause (Docker): only the workspace is asserted');
    }
  },

  /** getHost(port): a server in the sandbox, reached over https on its host name. */
  async gethost() {
    const sbx = await create({ timeoutMs: 300_000 });
    await sbx.files.write('/home/user/site/file', 'served from the sandbox');
    const server = await sbx.commands.run('python3 -m http.server 8000', {
      background: true,
      cwd: '/workspace/site',
    });
    try {
      const host = sbx.getHost(8000);
      assert.equal(host, `8000-${sbx.sandboxId}.${DOMAIN}`);
      const body = await until(
        `https://${host}/file to answer`,
        async () => {
          const res = await fetch(`https://${host}/file`);
          if (res.status !== 200) throw new Error(`${res.status}: ${(await res.text()).slice(0, 200)}`);
          return res.text();
        },
        30_000,
        500,
      );
      assert.equal(body, 'served from the sandbox');
    } finally {
      await server.kill().catch(() => undefined);
    }
  },

  /** The SDK's error classes for Studio's refusals. */
  async errors() {
    const badKey = 'sst_not-a-real-token-0000000000000000000000';
    await step('a bad API key: AuthenticationError', async () => {
      assertClass(
        await rejection(Sandbox.create({ apiKey: badKey }), 'create'),
        AuthenticationError,
        'create',
      );
      assertClass(
        await rejection(Sandbox.list({ apiKey: badKey }).nextItems(), 'list'),
        AuthenticationError,
        'list',
      );
    });

    const nobody = '0'.repeat(32);
    await step(`an unknown sandbox: ${SandboxMissing.name}`, async () => {
      assertClass(await rejection(Sandbox.connect(nobody), 'connect'), SandboxMissing, 'connect');
      assertClass(await rejection(Sandbox.getInfo(nobody), 'getInfo'), SandboxMissing, 'getInfo');
      assertClass(
        await rejection(Sandbox.setTimeout(nobody, 60_000), 'setTimeout'),
        SandboxMissing,
        'setTimeout',
      );
      assert.equal(await Sandbox.kill(nobody), false, 'kill of an unknown sandbox');
    });

    // E2B answers an unknown template 404 {code: 404, message: "template '…' not found"}; the SDK's create maps
    // it to its base SandboxError, "404: <message>".
    await step('an unknown template', async () => {
      const template = await rejection(Sandbox.create('no-such-template'), 'create from an unknown template');
      assertClass(template, SandboxError, 'create from an unknown template');
      assert.match(template.message, /^404: .*no-such-template/);
      if (MODERN) assert.equal(template.statusCode, 404);
    });
  },

  /** Another user's key sees none of this user's sandboxes; envd wants the sandbox's own access token. */
  async isolation() {
    const tag = randomUUID();
    const sbx = await create({ timeoutMs: 300_000, metadata: { tag } });
    const theirs = { apiKey: OTHER_KEY };
    await step("another user's key does not see the sandbox", async () => {
      assert.deepEqual(await listAll({ ...theirs, query: { metadata: { tag } } }), []);
      assertClass(
        await rejection(Sandbox.connect(sbx.sandboxId, theirs), 'connect'),
        SandboxMissing,
        'connect',
      );
      assertClass(
        await rejection(Sandbox.getInfo(sbx.sandboxId, theirs), 'getInfo'),
        SandboxMissing,
        'getInfo',
      );
      assert.equal(await Sandbox.kill(sbx.sandboxId, theirs), false, "kill of another user's sandbox");
      assert.equal((await sbx.getInfo()).state, 'running');
    });

    await step("envd refuses no access token, a wrong one, and another sandbox's", async () => {
      const envd =
        ROUTING === 'header'
          ? process.env.E2B_SANDBOX_URL
          : `https://49983-${sbx.sandboxId}.${sbx.sandboxDomain}`;
      const other = await create({ timeoutMs: 300_000 });
      const otherToken = other.envdAccessToken;
      assert.ok(
        typeof otherToken === 'string' && otherToken.length >= 16,
        'create returns an envdAccessToken',
      );
      for (const [what, token] of [
        ['no access token', undefined],
        ['a wrong access token', 'x'.repeat(32)],
        ["another sandbox's access token", otherToken],
      ]) {
        const res = await fetch(`${envd}/files?path=${encodeURIComponent('/workspace/x')}`, {
          headers: {
            'E2b-Sandbox-Id': sbx.sandboxId,
            'E2b-Sandbox-Port': '49983',
            ...(token ? { 'X-Access-Token': token } : {}),
          },
        });
        assert.equal(res.status, 401, `envd with ${what} answered ${res.status}`);
      }
    });

    // The user `root` is refused before anything runs: Studio sandboxes have one user.
    const refusedAsRoot = (e, what) => {
      assert.ok(!(e instanceof CommandExitError), `${what} ran: ${describeError(e)}`);
      assert.ok(
        e instanceof SandboxError || e instanceof AuthenticationError,
        `${what}: ${describeError(e)}`,
      );
    };
    await step('user root is refused (commands)', async () => {
      refusedAsRoot(
        await rejection(sbx.commands.run('id -u', { user: 'root' }), 'a command as root'),
        'a command',
      );
    });
    await step('user root is refused (files)', async () => {
      refusedAsRoot(
        await rejection(sbx.files.write('/workspace/as-root.txt', 'x', { user: 'root' }), 'a write as root'),
        'a write',
      );
    });
  },

  /** A person takes control in the IDE: the SDK's changes fail with Studio's message until released. */
  async takeover() {
    const sbx = await create({ timeoutMs: 300_000 });
    await sbx.files.write('owned.txt', 'written by the sdk');
    await ask('take-control', { sandboxId: sbx.sandboxId });
    try {
      await step('files.write fails with the take-control message', async () => {
        const write = await rejection(sbx.files.write('owned.txt', 'blocked'), 'files.write under take-over');
        assert.match(write.message, /has taken control/);
      });
      await step('commands.run fails with the take-control message', async () => {
        const cmd = await rejection(sbx.commands.run('echo blocked'), 'commands.run under take-over');
        assert.match(cmd.message, /has taken control/);
      });
      await step('reads stay allowed', async () => {
        assert.equal(await sbx.files.read('owned.txt'), 'written by the sdk');
      });
    } finally {
      await ask('release-control', { sandboxId: sbx.sandboxId });
    }
    await step('released: changes work again', async () => {
      await sbx.files.write('owned.txt', 'written again');
      assert.equal(await sbx.files.read('owned.txt'), 'written again');
      assert.equal((await sbx.commands.run('cat owned.txt')).stdout, 'written again');
    });
  },
};

const name = process.argv[2] ?? '';
const fn = cases[name];
let result;
if (!fn) {
  result = { case: name, ok: false, error: `no case ${name}; cases: ${Object.keys(cases).join(', ')}` };
} else {
  try {
    await fn();
    result =
      failures.length === 0
        ? { case: name, ok: true }
        : { case: name, ok: false, error: `${failures.length} step(s) failed:\n- ${failures.join('\n- ')}` };
  } catch (error) {
    const steps = failures.length > 0 ? `\nearlier failed steps:\n- ${failures.join('\n- ')}` : '';
    result = { case: name, ok: false, error: `${error?.stack ?? describeError(error)}${steps}` };
  } finally {
    for (const id of made) await Sandbox.kill(id).catch(() => undefined);
  }
}
if (notes.length > 0) result.notes = notes;
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
