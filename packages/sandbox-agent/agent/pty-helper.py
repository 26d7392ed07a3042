#!/usr/bin/env python3
"""pty-helper: runs one command on a new pseudo-terminal for studio-agent (python3, stdlib only).

usage: pty-helper.py COLS ROWS -- COMMAND [ARG...]

  stdin   bytes typed into the terminal (written to the pty master)
  stdout  what the terminal shows (read from the pty master)
  fd 3    optional resize requests, one per line: "COLS ROWS\\n" (TIOCSWINSZ, then SIGWINCH)
  exit    the command's exit status; if it died of a signal, the helper re-raises that signal.
          127 (126) and a message on the terminal when the command cannot be found (executed).

The command is a session leader with the pty as its controlling terminal. Nothing is buffered without
bound: the master is only read while less than 64 KiB wait to go to stdout, and stdin only while less
than 64 KiB wait to go to the master, so a reader that stops reading stops the program behind it.
"""

import errno
import fcntl
import os
import select
import signal
import struct
import sys
import termios
import time

LIMIT = 64 * 1024
CTL_FD = 3


def set_size(fd, cols, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def nonblocking(fd):
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


def parse_size(cols, rows):
    c, r = int(cols), int(rows)
    if not (1 <= c <= 10000 and 1 <= r <= 10000):
        raise ValueError("size out of range")
    return c, r


def main():
    args = sys.argv[1:]
    if len(args) < 4 or args[2] != "--":
        sys.stderr.write("usage: pty-helper.py COLS ROWS -- COMMAND [ARG...]\n")
        return 2
    cols, rows = parse_size(args[0], args[1])
    cmd = args[3:]

    try:
        os.set_inheritable(CTL_FD, False)
        has_ctl = True
    except OSError:
        has_ctl = False

    # The size is set on the pair before the child exists: set in the child after fork (as pty.fork() would
    # have us do), it could land after a resize the host sent at once and undo it.
    master, slave = os.openpty()
    try:
        set_size(master, cols, rows)
    except OSError:
        pass
    pid = os.fork()
    if pid == 0:
        os.close(master)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        if slave > 2:
            os.close(slave)
        # Python ignores these; ignored signals survive exec, and a shell must start with defaults.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvp(cmd[0], cmd)
        except OSError as e:
            os.write(2, ("%s: %s\r\n" % (cmd[0], e.strerror)).encode("utf-8", "replace"))
            os._exit(126 if e.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC) else 127)

    os.close(slave)

    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w, master, 0, 1):
        nonblocking(fd)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    to_master = bytearray()
    to_stdout = bytearray()
    ctl = b""
    stdin_open = True
    master_open = True
    status = None
    deadline = None
    hard_deadline = None

    while True:
        if status is None:
            try:
                done, st = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, st = pid, 0
            if done == pid:
                status = st
                deadline = time.monotonic() + 1.0
                hard_deadline = deadline + 9.0
        if status is not None:
            # The command is gone: pass on what it left in the pty, but do not wait for background
            # processes that still hold the terminal open.
            if (not master_open and not to_stdout) or time.monotonic() >= deadline:
                break

        readers = [wake_r]
        writers = []
        if stdin_open and len(to_master) < LIMIT:
            readers.append(0)
        if master_open and len(to_stdout) < LIMIT:
            readers.append(master)
        if has_ctl:
            readers.append(CTL_FD)
        if to_master and master_open:
            writers.append(master)
        if to_stdout:
            writers.append(1)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            readable, writable, _ = select.select(readers, writers, [], timeout)
        except InterruptedError:
            continue

        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass

        if master in readable:
            try:
                data = os.read(master, LIMIT)
            except BlockingIOError:
                data = None
            except OSError:  # EIO: every holder of the slave side has closed it
                data = b""
            if data == b"":
                master_open = False
            elif data:
                to_stdout += data

        if 0 in readable:
            try:
                data = os.read(0, LIMIT)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data == b"":
                stdin_open = False
            elif data:
                to_master += data

        if has_ctl and CTL_FD in readable:
            try:
                data = os.read(CTL_FD, 4096)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data == b"":
                has_ctl = False
            elif data:
                ctl = (ctl + data)[-4096:]
                *lines, ctl = ctl.split(b"\n")
                for line in lines:
                    try:
                        c, r = parse_size(*line.split())
                        set_size(master, c, r)
                        # The kernel signals the foreground group on a size change; say it again for
                        # runtimes that do not (a second SIGWINCH only redraws).
                        os.killpg(os.tcgetpgrp(master), signal.SIGWINCH)
                    except (ValueError, TypeError, OSError):
                        pass

        if master in writable and to_master:
            try:
                n = os.write(master, to_master)
                del to_master[:n]
            except BlockingIOError:
                pass
            except OSError:
                to_master.clear()

        if 1 in writable and to_stdout:
            try:
                n = os.write(1, to_stdout)
                del to_stdout[:n]
                if deadline is not None:  # still delivering what the command printed: keep going
                    deadline = min(hard_deadline, max(deadline, time.monotonic() + 1.0))
            except BlockingIOError:
                pass
            except OSError:  # the agent is gone
                to_stdout.clear()
                master_open = False

    if status is None:
        status = 0
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), sig)
        return 128 + sig
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


if __name__ == "__main__":
    sys.exit(main())
