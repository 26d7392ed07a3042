import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runtimePaths, sandboxTest } from '@studio/isolation/testing';
import { describe, expect } from 'vitest';
import { GVisorBackend } from '../gvisor-backend.ts';

// Issue 15: the in-sandbox seccomp wrapper (a Python program that installed a BPF filter before handing over
// to the agent) gave way to runsc's OCI seccomp (`--oci-seccomp`, `linux.seccomp` in the spec). runsc installs
// that filter in the first process only and ignores `errnoRet`, so this pins what must still hold: the agent
// is the first process and is filtered, every process it starts inherits the filter, the profile's denials
// answer EPERM, and clone3 answers ENOSYS (not EPERM: glibc then falls back to clone, and threads work).
const dataDir = fileURLToPath(new URL('../../../../.cache/test-data/gvisor-seccomp', import.meta.url));
mkdirSync(dataDir, { recursive: true });
const image = 'studio-sandbox:latest';
const { seccompProfile, sandboxRootfs } = runtimePaths();

const test = sandboxTest({
  createBackend: () =>
    new GVisorBackend({
      dataDir,
      instanceId: 'gvisor-seccomp-test',
      images: { [image]: sandboxRootfs },
      seccompProfile,
    }),
  image,
  labels: { 'studio.test': 'gvisor-seccomp' },
  requireRuntime: process.env.CI === 'true',
});

const PROBE = `
import ctypes, errno, json, os, threading
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    return 'ok' if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
out = {
    # x86_64 numbers: none of these is allowed by infra/seccomp/studio.json to a process without capabilities.
    'unshare(CLONE_NEWUSER)': call(272, 0x10000000),
    'setns': call(308, 0, 0),
    'mount': call(165, 0, 0, 0, 0, 0),
    'ptrace(PTRACE_TRACEME)': call(101, 0, 0, 0, 0),
    'keyctl': call(250, 0, 0, 0, 0, 0),
    'bpf': call(321, 0, 0, 0),
    'perf_event_open': call(298, 0, 0, 0, 0, 0),
    'clone(CLONE_NEWUSER)': call(56, 0x10000000 | 17, 0, 0, 0, 0),
    'clone3': call(435, 0, 0),
    'getpid': call(39),
}
t = threading.Thread(target=lambda: out.__setitem__('thread', 'ok'))
t.start(); t.join()
status = {}
for pid in ('self', '1'):
    for line in open('/proc/%s/status' % pid):
        if line.startswith('Seccomp:'):
            status[pid] = line.split()[1]
out['seccomp'] = status
out['pid1'] = open('/proc/1/cmdline', 'rb').read().split(b'\\0')[0].decode()
print(json.dumps(out))
`;

describe('regression: OCI seccomp under runsc denies what the wrapper denied', () => {
  test('a denied syscall is denied (EPERM), clone3 is ENOSYS, threads work, every process is filtered', async ({
    sandbox,
  }) => {
    const r = await sandbox.exec(['python3', '-c', PROBE], { timeoutMs: 30_000, maxOutputBytes: 1 << 16 });
    expect(Buffer.from(r.stderr).toString()).toBe('');
    const { pid1, ...out } = JSON.parse(Buffer.from(r.stdout).toString()) as Record<string, unknown>;
    // The agent binary is the sandbox's first process: no wrapper or init in front of it.
    expect(pid1).toBe('/opt/studio/studio-agent');
    expect(out).toEqual({
      'unshare(CLONE_NEWUSER)': 'EPERM',
      setns: 'EPERM',
      mount: 'EPERM',
      'ptrace(PTRACE_TRACEME)': 'EPERM',
      keyctl: 'EPERM',
      bpf: 'EPERM',
      perf_event_open: 'EPERM',
      'clone(CLONE_NEWUSER)': 'EPERM',
      clone3: 'ENOSYS',
      getpid: 'ok',
      thread: 'ok',
      seccomp: { self: '2', '1': '2' },
    });
  });
});
