//! posix_spawn(3) through glibc, declared by hand: the child is started with CLONE_VM|CLONE_VFORK,
//! never a fork of the agent. std's Command falls back to fork here (a working directory needs
//! posix_spawn_file_actions_addchdir_np, which std looks up dynamically: absent in a static binary).

use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_short};

#[repr(C, align(8))]
struct Attr([u8; 336]);
#[repr(C, align(8))]
struct Actions([u8; 80]);
#[repr(C, align(8))]
struct SigSet([u8; 128]);

extern "C" {
    fn posix_spawn(
        pid: *mut c_int,
        path: *const c_char,
        actions: *const Actions,
        attr: *const Attr,
        argv: *const *const c_char,
        envp: *const *const c_char,
    ) -> c_int;
    fn posix_spawnattr_init(a: *mut Attr) -> c_int;
    fn posix_spawnattr_destroy(a: *mut Attr) -> c_int;
    fn posix_spawnattr_setflags(a: *mut Attr, f: c_short) -> c_int;
    fn posix_spawnattr_setpgroup(a: *mut Attr, pg: c_int) -> c_int;
    fn posix_spawnattr_setsigmask(a: *mut Attr, s: *const SigSet) -> c_int;
    fn posix_spawnattr_setsigdefault(a: *mut Attr, s: *const SigSet) -> c_int;
    fn posix_spawn_file_actions_init(f: *mut Actions) -> c_int;
    fn posix_spawn_file_actions_destroy(f: *mut Actions) -> c_int;
    fn posix_spawn_file_actions_adddup2(f: *mut Actions, fd: c_int, newfd: c_int) -> c_int;
    fn posix_spawn_file_actions_addopen(
        f: *mut Actions,
        fd: c_int,
        path: *const c_char,
        flags: c_int,
        mode: u32,
    ) -> c_int;
    fn posix_spawn_file_actions_addchdir_np(f: *mut Actions, path: *const c_char) -> c_int;
    fn sigemptyset(s: *mut SigSet) -> c_int;
    fn sigaddset(s: *mut SigSet, sig: c_int) -> c_int;
}

const POSIX_SPAWN_SETPGROUP: c_short = 0x02;
const POSIX_SPAWN_SETSIGDEF: c_short = 0x04;
const POSIX_SPAWN_SETSIGMASK: c_short = 0x08;
const POSIX_SPAWN_SETSID: c_short = 0x80;

/// What a child's fd 0, 1 or 2 is.
pub enum Io<'a> {
    /// dup2 of this descriptor (a pipe end, the pty slave)
    Fd(c_int),
    /// open(path, flags): `/dev/null`, or the pty slave in a new session (it becomes the controlling tty)
    Open(&'a str, c_int),
}

pub struct Spec<'a> {
    pub prog: &'a [u8],
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a [u8],
    pub stdio: [Io<'a>; 3],
    /// a new session (terminals) instead of a new process group (exec)
    pub setsid: bool,
}

fn cstr(b: &[u8]) -> Result<CString, c_int> {
    CString::new(b).map_err(|_| 22)
}

/// Starts the child; its pid, or the errno (ENOENT, EACCES, EAGAIN, E2BIG...).
pub fn spawn(s: &Spec) -> Result<i32, c_int> {
    let prog = cstr(s.prog)?;
    let cwd = cstr(s.cwd)?;
    let args: Vec<CString> = s.argv.iter().map(|a| cstr(a.as_bytes())).collect::<Result<_, _>>()?;
    let envs: Vec<CString> = s
        .env
        .iter()
        .map(|(k, v)| cstr((k.clone() + "=" + v).as_bytes()))
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const c_char> = envs.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let paths: Vec<Option<CString>> = s
        .stdio
        .iter()
        .map(|io| match io {
            Io::Open(p, _) => CString::new(*p).ok(),
            Io::Fd(_) => None,
        })
        .collect();
    unsafe {
        let mut attr = Attr([0; 336]);
        let mut fa = Actions([0; 80]);
        posix_spawnattr_init(&mut attr);
        posix_spawn_file_actions_init(&mut fa);
        let mut empty = SigSet([0; 128]);
        sigemptyset(&mut empty);
        let mut defaults = SigSet([0; 128]);
        sigemptyset(&mut defaults);
        // Ignored or caught by the agent; the child starts with the default action for each.
        for sig in [1, 2, 3, 13, 15, 17, 28] {
            sigaddset(&mut defaults, sig);
        }
        let mut flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
        if s.setsid {
            flags |= POSIX_SPAWN_SETSID;
        } else {
            flags |= POSIX_SPAWN_SETPGROUP;
            posix_spawnattr_setpgroup(&mut attr, 0);
        }
        posix_spawnattr_setflags(&mut attr, flags);
        posix_spawnattr_setsigmask(&mut attr, &empty);
        posix_spawnattr_setsigdefault(&mut attr, &defaults);
        // glibc runs setsid before the file actions, so a tty opened here becomes the controlling one.
        for (i, io) in s.stdio.iter().enumerate() {
            match io {
                Io::Fd(fd) => posix_spawn_file_actions_adddup2(&mut fa, *fd, i as c_int),
                Io::Open(_, fl) => {
                    let p = paths[i].as_ref().map(|c| c.as_ptr()).unwrap_or(std::ptr::null());
                    posix_spawn_file_actions_addopen(&mut fa, i as c_int, p, *fl, 0)
                }
            };
        }
        posix_spawn_file_actions_addchdir_np(&mut fa, cwd.as_ptr());
        let mut pid: c_int = 0;
        let r = posix_spawn(&mut pid, prog.as_ptr(), &fa, &attr, argv.as_ptr(), envp.as_ptr());
        posix_spawn_file_actions_destroy(&mut fa);
        posix_spawnattr_destroy(&mut attr);
        if r != 0 {
            return Err(r);
        }
        Ok(pid)
    }
}
