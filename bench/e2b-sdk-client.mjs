// The e2b bench's SDK side, in its own process, run from the folder the `e2b` package was installed into (the
// bench copies this file there, so `import 'e2b'` is that install, as a user's would be). Reads E2B_API_URL,
// E2B_SANDBOX_URL and E2B_API_KEY from its environment, as the SDK does. Line protocol on stdin/stdout: it prints
// {"ready":true} once loaded; each {"op":"sample"} is answered with {"ms":…} (Sandbox.create → the output of its
// first commands.run, timed here; the kill runs after the clock); {"op":"exit"} ends it.
import { createInterface } from 'node:readline';
import { Sandbox } from 'e2b';

const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
out({ ready: true });
for await (const line of createInterface({ input: process.stdin })) {
  const { op } = JSON.parse(line);
  if (op === 'exit') break;
  try {
    const t = performance.now();
    const sbx = await Sandbox.create({ timeoutMs: 300_000 });
    const r = await sbx.commands.run('echo ok');
    const ms = performance.now() - t;
    await sbx.kill();
    if (r.stdout !== 'ok\n') throw new Error(`unexpected output ${JSON.stringify(r.stdout)}`);
    out({ ms });
  } catch (error) {
    out({ error: String(error?.stack ?? error) });
  }
}
process.exit(0);
