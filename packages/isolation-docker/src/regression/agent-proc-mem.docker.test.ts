import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runtimePaths, sandboxTest } from '@studio/isolation/testing';
import { describe, expect } from 'vitest';
import { DockerBackend } from '../index.ts';

// Regression: sandbox code (uid 1000) could open /proc/<pid>/mem of init and of the agent, which run
// as the same uid, and rewrite the agent that enforces timeouts, output caps and path checks. Fixed first
// by execute-only binaries (non-dumpable); now the agent is init (PID 1) and sets PR_SET_DUMPABLE 0 itself.
const dataDir = fileURLToPath(new URL('../../../../.cache/test-data/docker-regression', import.meta.url));
mkdirSync(dataDir, { recursive: true });

const test = sandboxTest({
  createBackend: () =>
    new DockerBackend({ dataDir, instanceId: 'regression', seccompProfile: runtimePaths().seccompProfile }),
  image: process.env.STUDIO_SANDBOX_IMAGE ?? 'studio-sandbox:latest',
  labels: { 'studio.test': 'agent-proc-mem' },
  requireRuntime: process.env.CI === 'true',
});

const probe = `
import os, sys
me = os.getpid()
results = []
for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
    pid = int(pid)
    if pid == me:
        continue
    try:
        cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()
    except OSError:
        continue
    if 'studio-agent' not in cmd:
        continue
    try:
        with open(f'/proc/{pid}/mem', 'r+b'):
            results.append(f'OPENED {pid} {cmd}')
    except PermissionError:
        results.append(f'denied {pid}')
print('\\n'.join(results))
`;

describe('regression: agent and init memory through /proc/<pid>/mem', () => {
  test('refuses sandbox code access to the memory of init and the agent', async ({ sandbox }) => {
    const r = await sandbox.exec(['python3', '-c', probe], { timeoutMs: 20_000, maxOutputBytes: 65_536 });
    const out = new TextDecoder().decode(r.stdout);
    expect(r.exitCode, new TextDecoder().decode(r.stderr)).toBe(0);
    // The agent (PID 1, its own init) must have been found, and not opened.
    expect(out).toMatch(/^denied 1$/m);
    expect(out).not.toMatch(/OPENED/);
  });
});
