//! Processes: program lookup, process-tree kills through /proc, the cgroup OOM counter.

use crate::sys;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn agent_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into())
}

fn executable(p: &Path) -> Option<bool> {
    let md = fs::metadata(p).ok()?;
    Some(md.is_file() && md.permissions().mode() & 0o111 != 0)
}

/// Where `argv0` runs from: `Ok(path)`, or `Err(127)` (not found) / `Err(126)` (not executable),
/// as a shell would say. Relative names with a slash are taken from `cwd`; others searched in PATH.
pub fn lookup(argv0: &str, cwd: &Path, path: &str) -> Result<PathBuf, i32> {
    if argv0.contains('/') {
        let p = if argv0.starts_with('/') {
            PathBuf::from(argv0)
        } else {
            cwd.join(argv0)
        };
        return match executable(&p) {
            Some(true) => Ok(p),
            Some(false) => Err(126),
            None => Err(127),
        };
    }
    let mut denied = false;
    for dir in path.split(':') {
        if dir.is_empty() {
            continue;
        }
        let p = Path::new(dir).join(argv0);
        match executable(&p) {
            Some(true) => return Ok(p),
            Some(false) => denied = true,
            None => {}
        }
    }
    Err(if denied { 126 } else { 127 })
}

pub fn signal_name(s: i32) -> &'static str {
    const N: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    N.get(s as usize).copied().unwrap_or("SIGRT")
}

/// pid -> (ppid, pgrp) for every process we can see.
fn proc_table() -> HashMap<i32, (i32, i32)> {
    let mut t = HashMap::new();
    let Ok(rd) = fs::read_dir("/proc") else { return t };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read(e.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.iter().rposition(|&c| c == b')') else {
            continue;
        };
        let rest = &stat[(close + 2).min(stat.len())..];
        let mut f = rest.split(|&c| c == b' ');
        f.next();
        let num = |x: Option<&[u8]>| {
            x.and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|s| s.parse::<i32>().ok())
        };
        if let (Some(ppid), Some(pgrp)) = (num(f.next()), num(f.next())) {
            t.insert(pid, (ppid, pgrp));
        }
    }
    t
}

/// SIGKILLs a child, its group, every descendant found through /proc ppid links (also those that
/// left with setsid) and their groups; everything found is SIGSTOPped first, three rounds.
pub fn kill_tree(root: i32, leader_alive: bool) {
    let me = unsafe { sys::getpid() };
    if root <= 1 || root == me {
        return;
    }
    let own = unsafe { sys::getpgrp() };
    let mut victims: HashSet<i32> = HashSet::new();
    if leader_alive {
        victims.insert(root);
    }
    let mut groups: HashSet<i32> = HashSet::new();
    groups.insert(root);
    for _ in 0..3 {
        let t = proc_table();
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for (&pid, &(ppid, pgrp)) in &t {
            if !leader_alive && pgrp == root && pid != me {
                victims.insert(pid);
            }
            children.entry(ppid).or_default().push(pid);
        }
        let mut stack: Vec<i32> = victims.iter().copied().collect();
        while let Some(p) = stack.pop() {
            if let Some(cs) = children.get(&p) {
                for &c in cs {
                    if c == me || c <= 1 || victims.contains(&c) {
                        continue;
                    }
                    victims.insert(c);
                    stack.push(c);
                }
            }
        }
        for p in &victims {
            if let Some(&(_, g)) = t.get(p) {
                if g > 1 && g != own {
                    groups.insert(g);
                }
            }
        }
        for g in &groups {
            unsafe { sys::kill(-g, sys::SIGSTOP) };
        }
        for p in &victims {
            unsafe { sys::kill(*p, sys::SIGSTOP) };
        }
    }
    for g in &groups {
        unsafe { sys::kill(-g, sys::SIGKILL) };
    }
    for p in &victims {
        unsafe { sys::kill(*p, sys::SIGKILL) };
    }
}

/// The cgroup's OOM kill counter, or -1.
pub fn oom_kills() -> i64 {
    for f in [
        "/sys/fs/cgroup/memory.events",
        "/sys/fs/cgroup/memory/memory.oom_control",
    ] {
        if let Ok(s) = fs::read_to_string(f) {
            for l in s.lines() {
                if let Some(n) = l.strip_prefix("oom_kill ") {
                    if let Ok(v) = n.trim().parse::<i64>() {
                        return v;
                    }
                }
            }
        }
    }
    -1
}
