"""seccomp-exec: installs a seccomp filter, then runs the given program, or serves as the sandbox's init.

Usage (inside a gVisor sandbox):
  python3 -I -S seccomp-exec.py FILTER.bpf PROGRAM [ARGS...]   filter, then exec PROGRAM (the agent)
  python3 -I -S seccomp-exec.py FILTER.bpf --init               filter, then stay as PID 1

FILTER.bpf is a classic BPF program (struct sock_filter[], 8 bytes each, host byte order) compiled on
the host by GVisorBackend from infra/seccomp/studio.json, the profile Docker sandboxes get. runsc of
Debian 12 (0.0~20221219) applies an OCI seccomp profile to the container's first process only, never
to `runsc exec` processes; every process Studio starts in a sandbox (its init and each agent) goes
through this wrapper instead, so the filter covers everything, and children inherit it.

No new privileges is set first (the kernel requires it for an unprivileged filter). Any failure exits
with status 126 before the program runs: a sandbox never runs unfiltered by accident.

As init (PID 1) it reaps every orphan handed to it and does nothing else. It makes itself non-dumpable
first, so sandbox code running as the same uid cannot reach its memory, fds, cwd or exe through /proc/1,
and it ignores every signal that can be ignored: only SIGKILL and SIGSTOP sent from inside end the
sandbox (which is then reported stopped and can be started again). With tini as PID 1, a SIGTERM or
killing tini's one child stopped the sandbox.
"""

import ctypes
import os
import signal
import sys

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def fail(message):
    sys.stderr.write("seccomp-exec: %s\n" % message)
    sys.stderr.flush()
    os._exit(126)


def main():
    if len(sys.argv) < 3:
        fail("usage: seccomp-exec.py FILTER.bpf PROGRAM [ARGS...]")
    with open(sys.argv[1], "rb") as f:
        program = f.read()
    if not program or len(program) % 8 != 0 or len(program) // 8 > 4096:
        fail("invalid filter %s" % sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        fail("PR_SET_NO_NEW_PRIVS: %s" % os.strerror(ctypes.get_errno()))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        fail("PR_SET_SECCOMP: %s" % os.strerror(ctypes.get_errno()))
    if sys.argv[2:] == ["--init"]:
        serve_as_init(libc)
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    except OSError as e:
        fail("cannot run %s: %s" % (sys.argv[2], e.strerror))


def reap(_signum, _frame):
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve_as_init(libc):
    if libc.prctl(PR_SET_DUMPABLE, 0, None, 0, 0) != 0:
        fail("PR_SET_DUMPABLE: %s" % os.strerror(ctypes.get_errno()))
    null = os.open(os.devnull, os.O_RDWR)
    for fd in range(3):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    # gVisor (20221219) delivers default-action signals to PID 1 like to any process, so every signal
    # that can be ignored is: only SIGKILL and SIGSTOP from sandbox code still end the sandbox.
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
            try:
                signal.signal(sig, signal.SIG_IGN)
            except (OSError, ValueError):
                pass
    signal.signal(signal.SIGCHLD, reap)
    while True:
        try:
            signal.pause()
            reap(None, None)
        except Exception:  # noqa: BLE001 - PID 1 must never exit
            pass


main()
