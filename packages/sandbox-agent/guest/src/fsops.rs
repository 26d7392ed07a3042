//! Workspace paths and file operations, mirroring the Node agent's rules (PROTOCOL.md, "Files"): open
//! the parent directory, verify the open fd (device and /proc/self/fd link), then act on
//! `/proc/self/fd/N/<name>` without following a final link; links are resolved here, inside only.

use crate::json::{int_str, push_str, Obj};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use crate::sys::{O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK};

pub const MAX_LINK_HOPS: usize = 8;
const MAX_REMOVE_DEPTH: usize = 512;

pub struct AErr {
    pub code: &'static str,
    pub msg: String,
    pub details: Option<Vec<u8>>,
}

pub fn err(code: &'static str, msg: impl Into<String>) -> AErr {
    AErr {
        code,
        msg: msg.into(),
        details: None,
    }
}

pub fn errno_code(e: i32) -> Option<(&'static str, &'static str)> {
    Some(match e {
        2 => ("NOT_FOUND", "no such file or directory"),
        20 => ("NOT_FOUND", "not a directory"),
        17 => ("ALREADY_EXISTS", "already exists"),
        13 => ("FORBIDDEN", "permission denied"),
        1 => ("FORBIDDEN", "operation not permitted"),
        30 => ("INVALID_STATE", "read-only file system: the workspace disk failed on the host; the session is marked failed and the operator can recover its files"),
        28 => ("RESOURCE_LIMIT", "no space left in the workspace (disk quota)"),
        122 => ("RESOURCE_LIMIT", "disk quota exceeded"),
        24 | 23 => ("RESOURCE_LIMIT", "too many open files"),
        11 => ("RESOURCE_LIMIT", "resource temporarily unavailable (the sandbox may be at its process limit)"),
        12 => ("RESOURCE_LIMIT", "out of memory"),
        27 => ("RESOURCE_LIMIT", "efbig"),
        40 => ("INVALID_INPUT", "too many levels of symbolic links"),
        21 => ("INVALID_INPUT", "is a directory"),
        36 => ("INVALID_INPUT", "name too long"),
        39 => ("INVALID_INPUT", "directory not empty (pass recursive to remove it with its contents)"),
        22 => ("INVALID_INPUT", "einval"),
        18 => ("INVALID_INPUT", "cannot move across file systems"),
        31 => ("RESOURCE_LIMIT", "emlink"),
        16 => ("INVALID_STATE", "busy"),
        26 => ("INVALID_STATE", "etxtbsy"),
        _ => return None,
    })
}

/// The wire form of an OS error, naming only `what` (a workspace-relative path or an op).
pub fn io_err(e: &io::Error, what: &str) -> AErr {
    let no = e.raw_os_error().unwrap_or(0);
    match errno_code(no) {
        Some((code, text)) => err(
            code,
            if what.is_empty() {
                text.to_string()
            } else {
                what.to_string() + ": " + text
            },
        ),
        None => err("INTERNAL", what.to_string() + ": errno " + &int_str(no as i64)),
    }
}

pub struct Ws {
    pub root: String,
    pub file: Option<File>,
    pub fd: RawFd,
    pub dev: u64,
    pub error: String,
}

pub fn open_workspace() -> Ws {
    let configured = std::env::var("STUDIO_WORKSPACE").unwrap_or_else(|_| "/workspace".into());
    let configured = if configured.starts_with('/') {
        configured
    } else {
        let cwd = std::env::current_dir()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        cwd + "/" + &configured
    };
    let mut ws = Ws {
        root: configured.clone(),
        file: None,
        fd: -1,
        dev: 0,
        error: String::new(),
    };
    let root = match fs::canonicalize(&configured) {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(e) => {
            ws.error =
                "workspace ".to_string() + &configured + " is not available (" + io_err(&e, "").msg.as_str() + ")";
            return ws;
        }
    };
    match OpenOptions::new().read(true).custom_flags(O_DIRECTORY).open(&root) {
        Ok(f) => {
            let md = f.metadata();
            ws.fd = f.as_raw_fd();
            ws.dev = md.map(|m| m.dev()).unwrap_or(0);
            match fs::read_link(fd_path(ws.fd, None)) {
                Ok(real) => {
                    if real.as_os_str().as_bytes() != root.as_bytes() {
                        ws.error =
                            "workspace resolves to ".to_string() + &real.to_string_lossy() + ", expected " + &root;
                    }
                }
                Err(_) => ws.error = "file operations need /proc mounted in the sandbox".into(),
            }
            if root == "/" {
                ws.error = "the workspace cannot be /".into();
            }
            ws.file = Some(f);
        }
        Err(e) => {
            ws.error =
                "workspace ".to_string() + &configured + " is not available (" + io_err(&e, "").msg.as_str() + ")"
        }
    }
    ws.root = root;
    ws
}

pub fn fd_path(fd: RawFd, name: Option<&[u8]>) -> PathBuf {
    let mut v = b"/proc/self/fd/".to_vec();
    v.extend_from_slice(int_str(fd as i64).as_bytes());
    if let Some(n) = name {
        v.push(b'/');
        v.extend_from_slice(n);
    }
    PathBuf::from(OsString::from_vec(v))
}

impl Ws {
    pub fn inside(&self, real: &[u8]) -> bool {
        let r = self.root.as_bytes();
        real == r || (real.len() > r.len() && real.starts_with(r) && real[r.len()] == b'/')
    }
    pub fn require(&self) -> Result<(), AErr> {
        if self.error.is_empty() {
            Ok(())
        } else {
            Err(err("UNAVAILABLE", self.error.clone()))
        }
    }
}

/// Validates a workspace-relative path; returns its segments ([] = the root).
pub fn parse_path(p: Option<&str>, allow_root: bool, label: &str) -> Result<Vec<String>, AErr> {
    let p = p.ok_or_else(|| err("INVALID_INPUT", label.to_string() + " must be a string"))?;
    if p.encode_utf16().count() > 4096 {
        return Err(err("INVALID_INPUT", label.to_string() + " is too long"));
    }
    if p.chars()
        .any(|c| (c as u32) < 0x20 || (0x7f..=0x9f).contains(&(c as u32)) || c == '\\')
    {
        return Err(err(
            "INVALID_INPUT",
            label.to_string() + " contains a control character, a backslash or invalid text",
        ));
    }
    if p.starts_with('/') {
        return Err(err(
            "INVALID_INPUT",
            label.to_string() + " must be relative to the workspace",
        ));
    }
    let mut segs = Vec::new();
    for s in p.split('/') {
        if s.is_empty() || s == "." {
            continue;
        }
        if s == ".." {
            return Err(err("INVALID_INPUT", label.to_string() + " must not contain '..'"));
        }
        if s.len() > 255 {
            return Err(err(
                "INVALID_INPUT",
                label.to_string() + " has a name longer than 255 bytes",
            ));
        }
        segs.push(s.to_string());
    }
    if segs.is_empty() && !allow_root {
        return Err(err(
            "INVALID_INPUT",
            label.to_string() + " must name something inside the workspace",
        ));
    }
    Ok(segs)
}

/// An open, verified directory (or the workspace root, which is not owned here).
pub struct Dir {
    /// Keeps the directory open while it is used (None for the workspace root, held by `Ws`).
    _file: Option<File>,
    pub fd: RawFd,
    pub real: Vec<u8>,
}

fn open_dir_flags(p: &PathBuf, extra: i32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(O_DIRECTORY | O_NONBLOCK | extra)
        .open(p)
}

pub fn verify_dir(ws: &Ws, fd: RawFd, label: &str) -> Result<Vec<u8>, AErr> {
    let md = fs::metadata(fd_path(fd, None)).map_err(|e| io_err(&e, label))?;
    if !md.is_dir() {
        return Err(err("INVALID_INPUT", label.to_string() + ": not a directory"));
    }
    let real = fs::read_link(fd_path(fd, None))
        .map_err(|_| err("INTERNAL", label.to_string() + ": cannot verify the directory"))?;
    let real = real.into_os_string().into_vec();
    if md.dev() != ws.dev || !ws.inside(&real) {
        return Err(err("FORBIDDEN", label.to_string() + " leads outside the workspace"));
    }
    Ok(real)
}

pub fn open_dir(ws: &Ws, segs: &[String], label: &str) -> Result<Dir, AErr> {
    if segs.is_empty() {
        return Ok(Dir {
            _file: None,
            fd: ws.fd,
            real: ws.root.as_bytes().to_vec(),
        });
    }
    let p = PathBuf::from(ws.root.clone() + "/" + &segs.join("/"));
    let f = open_dir_flags(&p, 0).map_err(|e| io_err(&e, label))?;
    let real = verify_dir(ws, f.as_raw_fd(), label)?;
    Ok(Dir {
        fd: f.as_raw_fd(),
        _file: Some(f),
        real,
    })
}

pub fn open_dir_creating(ws: &Ws, segs: &[String], label: &str) -> Result<Dir, AErr> {
    let mut dir = Dir {
        _file: None,
        fd: ws.fd,
        real: ws.root.as_bytes().to_vec(),
    };
    for seg in segs {
        let p = fd_path(dir.fd, Some(seg.as_bytes()));
        if let Err(e) = fs::create_dir(&p) {
            if e.raw_os_error() != Some(17) {
                return Err(io_err(&e, label));
            }
        }
        let f = match open_dir_flags(&p, 0) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(20) => {
                return Err(err(
                    "ALREADY_EXISTS",
                    label.to_string() + ": " + seg + " exists and is not a directory",
                ))
            }
            Err(e) => return Err(io_err(&e, label)),
        };
        let real = verify_dir(ws, f.as_raw_fd(), label)?;
        dir = Dir {
            fd: f.as_raw_fd(),
            _file: Some(f),
            real,
        };
    }
    Ok(dir)
}

/// Lexical normalisation of an absolute path (as path.posix.normalize).
fn normalize(p: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for s in p.split(|&c| c == b'/') {
        if s.is_empty() || s == b"." {
            continue;
        }
        if s == b".." {
            parts.pop();
            continue;
        }
        parts.push(s);
    }
    let mut out = Vec::new();
    for s in parts {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

fn link_target(ws: &Ws, dir: &Dir, name: &[u8], label: &str) -> Result<Result<Vec<String>, ()>, AErr> {
    let target = match fs::read_link(fd_path(dir.fd, Some(name))) {
        Ok(t) => t.into_os_string().into_vec(),
        Err(e) if e.raw_os_error() == Some(22) => return Ok(Err(())),
        Err(e) => return Err(io_err(&e, label)),
    };
    let abs = if target.first() == Some(&b'/') {
        normalize(&target)
    } else {
        let mut a = dir.real.clone();
        a.push(b'/');
        a.extend_from_slice(&target);
        normalize(&a)
    };
    if !ws.inside(&abs) {
        return Err(err(
            "FORBIDDEN",
            label.to_string() + " is a symbolic link that points outside the workspace",
        ));
    }
    let rel = if abs.len() == ws.root.len() {
        Vec::new()
    } else {
        abs[ws.root.len() + 1..].to_vec()
    };
    let rel =
        String::from_utf8(rel).map_err(|_| err("INVALID_INPUT", label.to_string() + ": link target is not UTF-8"))?;
    parse_path(Some(&rel), true, label).map(Ok)
}

pub enum Step<T> {
    Done(T),
    Follow,
}

/// Runs `f(dir, name)` on the final component of `segs` in its verified parent; `Step::Follow`
/// resolves a link at `name` (inside only, at most 8 hops) and restarts. The root gives `name = None`.
pub fn with_target<T>(
    ws: &Ws,
    segs: &[String],
    label: &str,
    create_parents: bool,
    f: &mut dyn FnMut(&Dir, Option<&[u8]>) -> Result<Step<T>, AErr>,
) -> Result<T, AErr> {
    let mut cur: Vec<String> = segs.to_vec();
    let mut hops = 0;
    loop {
        if cur.is_empty() {
            let root = Dir {
                _file: None,
                fd: ws.fd,
                real: ws.root.as_bytes().to_vec(),
            };
            return match f(&root, None)? {
                Step::Done(t) => Ok(t),
                Step::Follow => Err(err("INTERNAL", "follow at the root")),
            };
        }
        let (name, parent) = cur.split_last().unwrap();
        let dir = if create_parents {
            open_dir_creating(ws, parent, label)?
        } else {
            open_dir(ws, parent, label)?
        };
        match f(&dir, Some(name.as_bytes()))? {
            Step::Done(t) => return Ok(t),
            Step::Follow => {}
        }
        if hops >= MAX_LINK_HOPS {
            return Err(err(
                "INVALID_INPUT",
                label.to_string() + ": too many levels of symbolic links",
            ));
        }
        hops += 1;
        match link_target(ws, &dir, name.as_bytes(), label)? {
            Ok(next) => cur = next,
            Err(()) => continue,
        }
    }
}

pub fn lstat_at(dir: &Dir, name: Option<&[u8]>) -> io::Result<fs::Metadata> {
    match name {
        None => fs::metadata(fd_path(dir.fd, None)),
        Some(n) => fs::symlink_metadata(fd_path(dir.fd, Some(n))),
    }
}

fn type_of(md: &fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_file() {
        "file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symlink"
    } else {
        "other"
    }
}

pub fn entry_json(o: Obj, name: &str, md: &fs::Metadata) -> Obj {
    let mtime = md.mtime() * 1000 + md.mtime_nsec() / 1_000_000;
    o.s("name", name)
        .s("type", type_of(md))
        .i("size", md.size() as i64)
        .i("mtimeMs", mtime)
        .i("mode", (md.mode() & 0o7777) as i64)
}

/// Opens the directory at `name` without following a link; `None` when it is a link (follow it).
pub fn open_child_dir(dir: &Dir, name: Option<&[u8]>, label: &str) -> Result<Option<File>, AErr> {
    let Some(n) = name else {
        return open_dir_flags(&fd_path(dir.fd, None), 0)
            .map(Some)
            .map_err(|e| io_err(&e, label));
    };
    match open_dir_flags(&fd_path(dir.fd, Some(n)), O_NOFOLLOW) {
        Ok(f) => Ok(Some(f)),
        Err(e) => {
            let no = e.raw_os_error();
            if no == Some(40) || no == Some(20) {
                if let Ok(md) = lstat_at(dir, name) {
                    if md.file_type().is_symlink() {
                        return Ok(None);
                    }
                }
            }
            if no == Some(20) {
                return Err(err("INVALID_INPUT", label.to_string() + ": not a directory"));
            }
            Err(io_err(&e, label))
        }
    }
}

fn names(fd: RawFd) -> io::Result<Vec<Vec<u8>>> {
    let mut v = Vec::new();
    for e in fs::read_dir(fd_path(fd, None))? {
        v.push(e?.file_name().into_vec());
    }
    Ok(v)
}

fn unlink_quietly(p: &PathBuf) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.raw_os_error() != Some(2) => Err(e),
        _ => Ok(()),
    }
}

fn remove_tree(ws: &Ws, parent: RawFd, name: &[u8], depth: usize, label: &str) -> Result<(), AErr> {
    if depth > MAX_REMOVE_DEPTH {
        return Err(err(
            "RESOURCE_LIMIT",
            label.to_string() + ": directory tree deeper than 512",
        ));
    }
    let p = fd_path(parent, Some(name));
    let f = match open_dir_flags(&p, O_NOFOLLOW) {
        Ok(f) => f,
        Err(e) => {
            return match e.raw_os_error() {
                Some(2) => Ok(()),
                Some(40) | Some(20) => unlink_quietly(&p).map_err(|e| io_err(&e, label)),
                _ => Err(io_err(&e, label)),
            }
        }
    };
    let fd = f.as_raw_fd();
    verify_dir(ws, fd, label)?;
    let mut attempt = 0;
    loop {
        for child in names(fd).map_err(|e| io_err(&e, label))? {
            let cp = fd_path(fd, Some(&child));
            match fs::symlink_metadata(&cp) {
                Ok(md) if md.is_dir() => remove_tree(ws, fd, &child, depth + 1, label)?,
                Ok(_) => unlink_quietly(&cp).map_err(|e| io_err(&e, label))?,
                Err(e) if e.raw_os_error() == Some(2) => {}
                Err(e) => return Err(io_err(&e, label)),
            }
        }
        match fs::remove_dir(&p) {
            Ok(()) => return Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(2) => return Ok(()),
                Some(20) => return unlink_quietly(&p).map_err(|e| io_err(&e, label)),
                Some(39) | Some(17) if attempt < 4 => attempt += 1,
                _ => return Err(io_err(&e, label)),
            },
        }
    }
}

/// Resolves an exec/terminal working directory to its real path inside the workspace.
pub fn resolve_cwd(ws: &Ws, cwd: Option<&str>) -> Result<PathBuf, AErr> {
    ws.require()?;
    let segs = parse_path(Some(cwd.unwrap_or("")), true, "cwd")?;
    let real = with_target(
        ws,
        &segs,
        "cwd",
        false,
        &mut |dir, name| match open_child_dir(dir, name, "cwd")? {
            None => Ok(Step::Follow),
            Some(f) => Ok(Step::Done(verify_dir(ws, f.as_raw_fd(), "cwd")?)),
        },
    )?;
    Ok(PathBuf::from(OsString::from_vec(real)))
}

pub fn op_list(ws: &Ws, path: Option<&str>, limit: usize) -> Result<(Vec<u8>, usize), AErr> {
    ws.require()?;
    let label = "path";
    let segs = parse_path(Some(path.unwrap_or("")), true, label)?;
    with_target(ws, &segs, label, false, &mut |dir, name| {
        let Some(f) = open_child_dir(dir, name, label)? else {
            return Ok(Step::Follow);
        };
        let fd = f.as_raw_fd();
        verify_dir(ws, fd, label)?;
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        let mut seen = 0;
        for n in names(fd).map_err(|e| io_err(&e, label))? {
            seen += 1;
            if seen > limit {
                let mut e = err(
                    "RESOURCE_LIMIT",
                    label.to_string() + " has more than " + &int_str(limit as i64) + " entries",
                );
                e.details = Some(Obj::new().i("maxEntries", limit as i64).end());
                return Err(e);
            }
            match fs::symlink_metadata(fd_path(fd, Some(&n))) {
                Ok(md) => {
                    let name = String::from_utf8_lossy(&n).into_owned();
                    let j = entry_json(Obj::new(), &name, &md).end();
                    entries.push((name, j));
                }
                Err(e) if e.raw_os_error() == Some(2) => {}
                Err(e) => return Err(io_err(&e, label)),
            }
        }
        // JavaScript compares strings by UTF-16 code units.
        entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
        let mut out = vec![b'['];
        for (i, (_, j)) in entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(j);
        }
        out.push(b']');
        Ok(Step::Done((out, entries.len())))
    })
}

pub fn op_stat(ws: &Ws, path: Option<&str>) -> Result<Vec<u8>, AErr> {
    ws.require()?;
    let segs = parse_path(Some(path.unwrap_or("")), true, "path")?;
    let md = with_target(ws, &segs, "path", false, &mut |dir, name| {
        lstat_at(dir, name)
            .map(Step::Done)
            .map_err(|e| io_err(&e, path.unwrap_or(".")))
    })?;
    let name = segs.last().map(|s| s.as_str()).unwrap_or("");
    Ok(entry_json(Obj::new().b("ok", true).s("path", &segs.join("/")), name, &md).end())
}

pub fn op_mkdir(ws: &Ws, path: Option<&str>, recursive: bool) -> Result<(), AErr> {
    ws.require()?;
    let segs = parse_path(path, false, "path")?;
    let what = path.unwrap_or("");
    if recursive {
        open_dir_creating(ws, &segs, "path")?;
        return Ok(());
    }
    with_target(ws, &segs, "path", false, &mut |dir, name| {
        fs::create_dir(fd_path(dir.fd, name))
            .map(Step::Done)
            .map_err(|e| io_err(&e, what))
    })
}

pub fn op_remove(ws: &Ws, path: Option<&str>, recursive: bool) -> Result<(), AErr> {
    ws.require()?;
    let segs = parse_path(path, false, "path")?;
    let what = path.unwrap_or("");
    with_target(ws, &segs, "path", false, &mut |dir, name| {
        let Some(n) = name else {
            return Err(err("INVALID_INPUT", "refusing to remove the workspace root"));
        };
        let p = fd_path(dir.fd, Some(n));
        let md = fs::symlink_metadata(&p).map_err(|e| io_err(&e, what))?;
        if !md.is_dir() {
            return fs::remove_file(&p).map(Step::Done).map_err(|e| io_err(&e, what));
        }
        if recursive {
            return remove_tree(ws, dir.fd, n, 0, "path").map(Step::Done);
        }
        fs::remove_dir(&p).map(Step::Done).map_err(|e| io_err(&e, what))
    })
}

pub fn op_rename(ws: &Ws, from: Option<&str>, to: Option<&str>) -> Result<(), AErr> {
    ws.require()?;
    let f = parse_path(from, false, "from")?;
    let t = parse_path(to, false, "to")?;
    let what = from.unwrap_or("").to_string() + " -> " + to.unwrap_or("");
    let a = open_dir(ws, &f[..f.len() - 1], "from")?;
    let b = open_dir(ws, &t[..t.len() - 1], "to")?;
    let src = fd_path(a.fd, Some(f[f.len() - 1].as_bytes()));
    let dst = fd_path(b.fd, Some(t[t.len() - 1].as_bytes()));
    fs::symlink_metadata(&src).map_err(|e| io_err(&e, &what))?;
    match fs::symlink_metadata(&dst) {
        Ok(_) => return Err(err("ALREADY_EXISTS", "to: already exists")),
        Err(e) if e.raw_os_error() != Some(2) => return Err(io_err(&e, &what)),
        _ => {}
    }
    fs::rename(&src, &dst).map_err(|e| io_err(&e, &what))
}

/// readFile: opens the file (regular only, within maxBytes) and returns it.
pub fn open_read(ws: &Ws, path: Option<&str>, max: u64) -> Result<File, AErr> {
    ws.require()?;
    let label = "path";
    let segs = parse_path(path, false, label)?;
    let what = path.unwrap_or("");
    with_target(ws, &segs, label, false, &mut |dir, name| {
        let Some(n) = name else {
            return Err(err("INVALID_INPUT", "path: is a directory"));
        };
        let f = match OpenOptions::new()
            .read(true)
            .custom_flags(O_NOFOLLOW | O_NONBLOCK)
            .open(fd_path(dir.fd, Some(n)))
        {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(40) => return Ok(Step::Follow),
            Err(e) => return Err(io_err(&e, what)),
        };
        let md = f.metadata().map_err(|e| io_err(&e, what))?;
        if md.is_dir() {
            return Err(err("INVALID_INPUT", "path: is a directory"));
        }
        if !md.is_file() {
            return Err(err("INVALID_INPUT", "path: not a regular file"));
        }
        if md.size() > max {
            let mut e = err(
                "RESOURCE_LIMIT",
                "path: file is ".to_string()
                    + &int_str(md.size() as i64)
                    + " bytes, more than maxBytes ("
                    + &int_str(max as i64)
                    + ")",
            );
            e.details = Some(Obj::new().i("size", md.size() as i64).i("maxBytes", max as i64).end());
            return Err(e);
        }
        Ok(Step::Done(f))
    })
}

pub struct Upload {
    pub dir: File,
    pub name: Vec<u8>,
    pub tmp: Option<Vec<u8>>,
    pub file: Option<File>,
    pub mode: Option<u32>,
}

pub fn open_write(
    ws: &Ws,
    path: Option<&str>,
    create_parents: bool,
    mode: Option<u32>,
    salt: u64,
) -> Result<Upload, AErr> {
    ws.require()?;
    let label = "path";
    let segs = parse_path(path, false, label)?;
    let what = path.unwrap_or("");
    with_target(ws, &segs, label, create_parents, &mut |dir, name| {
        let Some(n) = name else {
            return Err(err("INVALID_INPUT", "path: is a directory"));
        };
        let mut mode = mode;
        match fs::symlink_metadata(fd_path(dir.fd, Some(n))) {
            Ok(md) => {
                if md.file_type().is_symlink() {
                    return Ok(Step::Follow);
                }
                if md.is_dir() {
                    return Err(err("INVALID_INPUT", "path: is a directory"));
                }
                if mode.is_none() {
                    mode = Some(md.mode() & 0o777);
                }
            }
            Err(e) if e.raw_os_error() == Some(2) => {}
            Err(e) => return Err(io_err(&e, what)),
        }
        let d = OpenOptions::new()
            .read(true)
            .custom_flags(O_DIRECTORY)
            .open(fd_path(dir.fd, None))
            .map_err(|e| io_err(&e, what))?;
        let tmp = (".studio-".to_string()
            + &int_str(unsafe { crate::sys::getpid() } as i64)
            + "-"
            + &int_str((salt & 0x7fff_ffff_ffff) as i64)
            + ".tmp")
            .into_bytes();
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .custom_flags(O_NOFOLLOW)
            .open(fd_path(d.as_raw_fd(), Some(&tmp)))
            .map_err(|e| io_err(&e, what))?;
        Ok(Step::Done(Upload {
            dir: d,
            name: n.to_vec(),
            tmp: Some(tmp),
            file: Some(f),
            mode,
        }))
    })
}

impl Upload {
    pub fn commit(&mut self, what: &str) -> Result<(), AErr> {
        if let Some(f) = self.file.take() {
            if let Some(m) = self.mode {
                f.set_permissions(fs::Permissions::from_mode(m))
                    .map_err(|e| io_err(&e, what))?;
            }
            drop(f);
        }
        let tmp = self.tmp.take().unwrap_or_default();
        let fd = self.dir.as_raw_fd();
        let r = fs::rename(fd_path(fd, Some(&tmp)), fd_path(fd, Some(&self.name)));
        if let Err(e) = r {
            let _ = fs::remove_file(fd_path(fd, Some(&tmp)));
            return Err(io_err(&e, what));
        }
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.file = None;
        if let Some(t) = self.tmp.take() {
            let _ = fs::remove_file(fd_path(self.dir.as_raw_fd(), Some(&t)));
        }
    }
}

pub fn json_str(s: &str) -> Vec<u8> {
    let mut v = Vec::new();
    push_str(&mut v, s);
    v
}
