//! The few libc functions std does not wrap, declared by hand (no `libc` crate: std only).
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_long, c_short, c_uint, c_ulong, c_void};

#[repr(C)]
pub struct PollFd {
    pub fd: c_int,
    pub events: c_short,
    pub revents: c_short,
}

#[repr(C)]
pub struct SockAddrIn {
    pub family: u16,
    pub port_be: u16,
    pub addr: [u8; 4],
    pub zero: [u8; 8],
}

#[repr(C)]
pub struct SockFilterProg {
    pub len: u16,
    pub filter: *const u8,
}

extern "C" {
    pub fn poll(fds: *mut PollFd, nfds: c_ulong, timeout: c_int) -> c_int;
    pub fn read(fd: c_int, buf: *mut c_void, n: usize) -> isize;
    pub fn write(fd: c_int, buf: *const c_void, n: usize) -> isize;
    pub fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    pub fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
    pub fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    pub fn kill(pid: c_int, sig: c_int) -> c_int;
    pub fn signal(sig: c_int, handler: usize) -> usize;
    pub fn getpid() -> c_int;
    pub fn getuid() -> c_uint;
    pub fn getpgrp() -> c_int;
    pub fn ioctl(fd: c_int, req: c_ulong, ...) -> c_int;
    pub fn open(path: *const c_char, flags: c_int, ...) -> c_int;
    pub fn inotify_init1(flags: c_int) -> c_int;
    pub fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int;
    pub fn prctl(option: c_int, a2: c_ulong, a3: c_ulong, a4: c_ulong, a5: c_ulong) -> c_int;
    pub fn clock_gettime(clk: c_int, ts: *mut [c_long; 2]) -> c_int;
    pub fn __errno_location() -> *mut c_int;
    pub fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int;
    pub fn connect(fd: c_int, addr: *const SockAddrIn, len: u32) -> c_int;
    pub fn getsockopt(fd: c_int, level: c_int, name: c_int, val: *mut c_void, len: *mut u32) -> c_int;
}

pub const POLLIN: c_short = 1;
pub const POLLOUT: c_short = 4;
pub const POLLERR: c_short = 8;
pub const POLLHUP: c_short = 16;

pub const F_GETFL: c_int = 3;
pub const F_SETFL: c_int = 4;
pub const O_NONBLOCK: c_int = 0o4000;
pub const O_CLOEXEC: c_int = 0o2000000;
pub const O_RDWR: c_int = 2;
pub const O_NOCTTY: c_int = 0o400;
pub const O_DIRECTORY: c_int = 0o200000;
pub const O_NOFOLLOW: c_int = 0o400000;

pub const WNOHANG: c_int = 1;
pub const SIGHUP: c_int = 1;
pub const SIGINT: c_int = 2;
pub const SIGKILL: c_int = 9;
pub const SIGPIPE: c_int = 13;
pub const SIGTERM: c_int = 15;
pub const SIGCHLD: c_int = 17;
pub const SIGSTOP: c_int = 19;

pub const TIOCSWINSZ: c_ulong = 0x5414;
pub const TIOCSPTLCK: c_ulong = 0x4004_5431;
pub const TIOCGPTN: c_ulong = 0x8004_5430;

pub const IN_NONBLOCK: c_int = 0o4000;
pub const IN_CLOEXEC: c_int = 0o2000000;
pub const IN_MODIFY: u32 = 0x2;
pub const IN_ATTRIB: u32 = 0x4;
pub const IN_MOVED_FROM: u32 = 0x40;
pub const IN_MOVED_TO: u32 = 0x80;
pub const IN_CREATE: u32 = 0x100;
pub const IN_DELETE: u32 = 0x200;
pub const IN_DELETE_SELF: u32 = 0x400;
pub const IN_MOVE_SELF: u32 = 0x800;
pub const IN_Q_OVERFLOW: u32 = 0x4000;
pub const IN_IGNORED: u32 = 0x8000;
pub const IN_ONLYDIR: u32 = 0x0100_0000;
pub const IN_DONT_FOLLOW: u32 = 0x0200_0000;

pub const PR_SET_DUMPABLE: c_int = 4;
pub const PR_SET_NO_NEW_PRIVS: c_int = 38;
pub const PR_SET_SECCOMP: c_int = 22;
pub const SECCOMP_MODE_FILTER: c_ulong = 2;

pub fn errno() -> i32 {
    unsafe { *__errno_location() }
}

/// Milliseconds on the monotonic clock.
pub fn now_ms() -> u64 {
    let mut ts = [0 as c_long; 2];
    unsafe { clock_gettime(1, &mut ts) };
    (ts[0] as u64) * 1000 + (ts[1] as u64) / 1_000_000
}

/// Microseconds on the monotonic clock.
pub fn now_us() -> u64 {
    let mut ts = [0 as c_long; 2];
    unsafe { clock_gettime(1, &mut ts) };
    (ts[0] as u64) * 1_000_000 + (ts[1] as u64) / 1000
}

/// Milliseconds since the epoch.
pub fn wall_ms() -> u64 {
    let mut ts = [0 as c_long; 2];
    unsafe { clock_gettime(0, &mut ts) };
    (ts[0] as u64) * 1000 + (ts[1] as u64) / 1_000_000
}

pub fn set_nonblocking(fd: c_int) {
    unsafe {
        let fl = fcntl(fd, F_GETFL);
        if fl >= 0 {
            fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        }
    }
}

pub enum Io {
    Data(usize),
    Eof,
    Again,
    Err,
}

pub fn read_fd(fd: c_int, buf: &mut [u8]) -> Io {
    loop {
        let n = unsafe { read(fd, buf.as_mut_ptr() as *mut c_void, buf.len()) };
        if n > 0 {
            return Io::Data(n as usize);
        }
        if n == 0 {
            return Io::Eof;
        }
        let e = errno();
        if e == 4 {
            continue;
        }
        if e == 11 {
            return Io::Again;
        }
        return Io::Err;
    }
}

pub fn write_fd(fd: c_int, buf: &[u8]) -> Io {
    loop {
        let n = unsafe { write(fd, buf.as_ptr() as *const c_void, buf.len()) };
        if n >= 0 {
            return Io::Data(n as usize);
        }
        let e = errno();
        if e == 4 {
            continue;
        }
        if e == 11 {
            return Io::Again;
        }
        return Io::Err;
    }
}

pub fn set_winsize(fd: c_int, cols: u16, rows: u16) {
    let ws: [u16; 4] = [rows, cols, 0, 0];
    unsafe { ioctl(fd, TIOCSWINSZ, ws.as_ptr()) };
}

/// A non-blocking TCP socket connecting to 127.0.0.1:port: `Ok((fd, connected_now))` or the errno.
pub fn connect_loopback(port: u16) -> Result<(c_int, bool), i32> {
    unsafe {
        let fd = socket(2, 1 | O_NONBLOCK | O_CLOEXEC, 0);
        if fd < 0 {
            return Err(errno());
        }
        let a = SockAddrIn {
            family: 2,
            port_be: port.to_be(),
            addr: [127, 0, 0, 1],
            zero: [0; 8],
        };
        if connect(fd, &a, 16) == 0 {
            return Ok((fd, true));
        }
        let e = errno();
        if e == 115 {
            return Ok((fd, false));
        }
        drop(<std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd));
        Err(e)
    }
}

/// The pending error of a socket (SO_ERROR): 0 once a non-blocking connect succeeded.
pub fn socket_error(fd: c_int) -> i32 {
    let mut v: c_int = 0;
    let mut len: u32 = 4;
    unsafe { getsockopt(fd, 1, 4, &mut v as *mut c_int as *mut c_void, &mut len) };
    v
}
