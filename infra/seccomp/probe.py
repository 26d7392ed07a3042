#!/usr/bin/env python3
"""Probes, from inside a sandbox, which syscalls the seccomp filter lets through (x86_64 only).

Each syscall is called with arguments the kernel rejects harmlessly (bad fd, NULL pointer, invalid flags,
absent pid), so an allowed call fails with EBADF, EFAULT, EINVAL, ESRCH... while a filtered one fails
with the profile's errno (EPERM; ENOSYS for clone3). Prints one line per probe: name, result, errno name.
Usage: python3 probe.py   (exit 0; the caller compares the output across profiles)
"""

import ctypes
import errno
import mmap
import os
import platform

if platform.machine() != "x86_64":
    raise SystemExit("probe.py knows x86_64 syscall numbers only")

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NULL, BAD_FD, NO_PID = 0, -1, 0x3FFFFFFF

# name: (number, args)
PROBES = {
    "unshare": (272, [0]),  # unshare(0) is a no-op when allowed
    "setns": (308, [BAD_FD, 0]),
    "mount": (165, [NULL, NULL, NULL, 0, NULL]),
    "umount2": (166, [NULL, 0x7FFFFFF0]),  # invalid flags: EINVAL when allowed
    "pivot_root": (155, [NULL, NULL]),
    "fsopen": (430, [NULL, 0]),
    "open_tree": (428, [BAD_FD, NULL, 0]),
    "move_mount": (429, [BAD_FD, NULL, BAD_FD, NULL, 0]),
    "mount_setattr": (442, [BAD_FD, NULL, 0, NULL, 0]),
    "ptrace": (101, [2, NO_PID, 0, 0]),  # PTRACE_PEEKDATA on an absent pid
    "process_vm_readv": (310, [NO_PID, NULL, 1, NULL, 1, 0]),
    "process_vm_writev": (311, [NO_PID, NULL, 1, NULL, 1, 0]),
    "process_madvise": (440, [BAD_FD, NULL, 0, 0, 0]),
    "pidfd_getfd": (438, [BAD_FD, 0, 0]),
    "kcmp": (312, [NO_PID, NO_PID, 0, 0, 0]),
    "keyctl": (250, [0x7FFF, 0, 0, 0, 0]),  # unknown operation: EOPNOTSUPP when allowed
    "add_key": (248, [NULL, NULL, NULL, 0, 0]),
    "request_key": (249, [NULL, NULL, NULL, 0]),
    "userfaultfd": (323, [0x7FFFFFFF]),
    "bpf": (321, [0x7FFF, NULL, 0]),
    "perf_event_open": (298, [NULL, 0, -1, -1, 0]),
    "io_uring_setup": (425, [0, NULL]),
    "io_uring_enter": (426, [BAD_FD, 0, 0, 0, NULL, 0]),
    "io_uring_register": (427, [BAD_FD, 0, NULL, 0]),
    "kexec_load": (246, [0, 0, NULL, 0]),
    "open_by_handle_at": (304, [BAD_FD, NULL, 0]),
    "name_to_handle_at": (303, [BAD_FD, NULL, NULL, NULL, 0]),
    "clone3": (435, [NULL, 0]),
    "clone(CLONE_NEWUSER)": (56, [0x10000000 | 17, NULL, NULL, NULL, 0]),  # fork into a new user ns
    "personality(PER_LINUX32)": (135, [0x0008]),
    "personality(UNAME26)": (135, [0x20000]),
    "personality(query)": (135, [0xFFFFFFFF]),
    # controls: must stay allowed
    "getpid": (39, []),
    "memfd_create": (319, [NULL, 0]),
}


def call(nr, args):
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    err = ctypes.get_errno()
    return ret, err


def main():
    for name, (nr, args) in PROBES.items():
        pid = os.fork()  # a child per probe: a clone that succeeds, or a changed personality, stays there
        if pid == 0:
            ret, err = call(nr, args)
            if ret == 0 and nr == 56:
                os._exit(0)  # the child created by a successful clone
            if nr == 135 and ret >= 0:
                libc.syscall(135, 0)
            print(f"{name:28} ret={ret:<5} {errno.errorcode.get(err, err) if ret < 0 else 'ok'}", flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
    print(f"{'int80 getpid (32-bit ABI)':28} {int80_probe()}", flush=True)


def int80_probe():
    """Calls getpid through the 32-bit int 0x80 entry from a child; reports how the child ended."""
    pid = os.fork()
    if pid == 0:
        code = bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3])  # mov eax, 20 (i386 getpid); int 0x80; ret
        buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        buf.write(code)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        ret = ctypes.CFUNCTYPE(ctypes.c_int)(addr)()
        os._exit(0 if ret == os.getpid() else 3)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return {0: "allowed", 3: "denied with an errno"}.get(os.WEXITSTATUS(status), f"exit {os.WEXITSTATUS(status)}")


main()
