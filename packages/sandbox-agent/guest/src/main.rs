//! studio-agent: the one process Claude Studio runs inside every sandbox, as its init (PID 1).
//! Speaks the framed protocol of ../agent/PROTOCOL.md over stdin (host -> agent) and stdout
//! (agent -> host). One thread, one poll(2) loop; std only (the libc calls it needs are in sys.rs).
//!
//! Usage: studio-agent [--seccomp FILTER.bpf]   (STUDIO_WORKSPACE, default /workspace)

mod chan;
mod fsops;
mod json;
mod procs;
mod spawn;
mod sys;

use chan::*;
use fsops::{err, AErr};
use json::{Obj, Val};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};

pub const OPEN: u8 = 1;
pub const REPLY: u8 = 2;
pub const DATA: u8 = 3;
pub const DATA_ERR: u8 = 4;
pub const EOF: u8 = 5;
pub const WINDOW: u8 = 6;
pub const CONTROL: u8 = 7;
pub const CLOSE: u8 = 8;
pub const LOG: u8 = 9;
pub const ERROR: u8 = 10;
pub const ACCEPT: u8 = 11;

pub const MAX_PAYLOAD: usize = 1024 * 1024;
pub const RECV_WINDOW: i64 = 2 * 1024 * 1024;
pub const CHUNK: usize = 64 * 1024;
pub const MAX_CHANNELS: usize = 1024;
const STDOUT_CONGESTED: usize = 1024 * 1024;
const SYNC_MAGIC: &[u8] = b"\0\0STUDIO-AGENT-SYNC-1\0\0";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Frames waiting to go out on stdout.
pub struct Out {
    buf: Vec<u8>,
    pos: usize,
    pub shutting_down: bool,
    pub broken: bool,
}

impl Out {
    pub fn raw(&mut self, b: &[u8]) {
        if self.broken {
            return;
        }
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(b);
    }
    pub fn send(&mut self, t: u8, ch: u32, p: &[u8]) {
        let mut h = [0u8; 9];
        h[..4].copy_from_slice(&((5 + p.len()) as u32).to_be_bytes());
        h[4] = t;
        h[5..].copy_from_slice(&ch.to_be_bytes());
        self.raw(&h);
        self.raw(p);
    }
    pub fn json(&mut self, t: u8, ch: u32, p: &[u8]) {
        if p.len() > MAX_PAYLOAD {
            self.send(
                t,
                ch,
                b"{\"ok\":false,\"error\":{\"code\":\"INTERNAL\",\"message\":\"reply too large\"}}",
            );
        } else {
            self.send(t, ch, p);
        }
    }
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn congested(&self) -> bool {
        self.pending() > STDOUT_CONGESTED
    }
    pub fn log(&mut self, level: &str, msg: &str) {
        if self.shutting_down {
            return;
        }
        let m: String = msg.chars().take(8192).collect();
        self.json(LOG, 0, &Obj::new().s("level", level).s("message", &m).end());
    }
    fn protocol_error(&mut self, msg: &str) {
        self.json(ERROR, 0, &Obj::new().s("code", "INVALID_INPUT").s("message", msg).end());
    }
    fn flush(&mut self) {
        while self.pending() > 0 && !self.broken {
            match sys::write_fd(1, &self.buf[self.pos..]) {
                sys::Io::Data(n) => self.pos += n,
                sys::Io::Again => break,
                _ => self.broken = true,
            }
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > (4 << 20) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

pub fn wire_error(e: &AErr) -> Vec<u8> {
    let mut o = Obj::new().s("code", e.code).s("message", &e.msg);
    if let Some(d) = &e.details {
        o = o.raw("details", d);
    }
    o.end()
}

pub fn fail_reply(e: &AErr) -> Vec<u8> {
    Obj::new().b("ok", false).raw("error", &wire_error(e)).end()
}

static SIG_PIPE_W: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: i32) {
    let fd = SIG_PIPE_W.load(Ordering::Relaxed);
    let b = [sig as u8];
    unsafe { sys::write(fd, b.as_ptr() as *const _, 1) };
}

/// The input side: frame splitting with bounded memory and SYNC_MAGIC resynchronisation.
struct Reader {
    buf: Vec<u8>,
    syncing: bool,
}

pub struct Agent {
    pub out: Out,
    pub ws: fsops::Ws,
    pub chans: HashMap<u32, Chan>,
    pub next_accept: u32,
    pub salt: u64,
    stdin_open: bool,
    shutdown_at: Option<u64>,
    pid1: bool,
}

fn main() {
    // Sandbox code runs as our uid: a non-dumpable agent cannot be ptraced, nor its /proc/<pid>/mem or
    // environ read, by it (what the Node agent gets from an execute-only copy of node in the image).
    // Our own /proc/self/fd stays usable (the kernel lets a task into its own fd directory), and every
    // program we start is dumpable again after its execve.
    unsafe { sys::prctl(sys::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let args: Vec<String> = std::env::args().collect();
    if args.len() >= 3 && args[1] == "--seccomp" {
        if let Err(m) = install_seccomp(&args[2]) {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                ("studio-agent: ".to_string() + &m + "\n").as_bytes(),
            );
            std::process::exit(126);
        }
    }
    let mut p = [0i32; 2];
    unsafe {
        sys::pipe2(p.as_mut_ptr(), sys::O_NONBLOCK | sys::O_CLOEXEC);
        SIG_PIPE_W.store(p[1], Ordering::Relaxed);
        for s in [sys::SIGCHLD, sys::SIGTERM, sys::SIGINT, sys::SIGHUP] {
            sys::signal(s, on_signal as *const () as usize);
        }
        sys::signal(sys::SIGPIPE, 1);
    }
    if let Ok(home) = std::env::var("HOME") {
        let _ = std::fs::create_dir_all(&home);
    }
    sys::set_nonblocking(0);
    sys::set_nonblocking(1);
    let mut a = Agent {
        out: Out {
            buf: Vec::new(),
            pos: 0,
            shutting_down: false,
            broken: false,
        },
        ws: fsops::open_workspace(),
        chans: HashMap::new(),
        next_accept: 0,
        salt: sys::now_us() ^ ((unsafe { sys::getpid() } as u64) << 40),
        stdin_open: true,
        shutdown_at: None,
        pid1: unsafe { sys::getpid() } == 1,
    };
    let mut rd = Reader {
        buf: Vec::new(),
        syncing: false,
    };
    a.run(&mut rd, p[0]);
}

fn install_seccomp(path: &str) -> Result<(), String> {
    let prog = std::fs::read(path).map_err(|_| "cannot read the seccomp filter ".to_string() + path)?;
    if prog.is_empty() || prog.len() % 8 != 0 || prog.len() / 8 > 4096 {
        return Err("invalid filter ".to_string() + path);
    }
    let f = sys::SockFilterProg {
        len: (prog.len() / 8) as u16,
        filter: prog.as_ptr(),
    };
    unsafe {
        if sys::prctl(sys::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err("PR_SET_NO_NEW_PRIVS failed".into());
        }
        if sys::prctl(
            sys::PR_SET_SECCOMP,
            sys::SECCOMP_MODE_FILTER,
            &f as *const _ as usize as _,
            0,
            0,
        ) != 0
        {
            return Err("PR_SET_SECCOMP failed".into());
        }
    }
    Ok(())
}

impl Agent {
    fn run(&mut self, rd: &mut Reader, sigfd: i32) {
        let mut inbuf = vec![0u8; 256 * 1024];
        loop {
            for c in self.chans.values_mut() {
                c.flush(&mut self.out);
            }
            self.out.flush();
            self.sweep();
            if self.out.broken && !self.out.shutting_down {
                self.shutdown();
            }
            if self.out.shutting_down && (self.out.pending() == 0 || self.out.broken) {
                std::process::exit(0);
            }
            // poll set
            let mut fds: Vec<sys::PollFd> = Vec::with_capacity(8 + self.chans.len() * 3);
            let mut who: Vec<(u32, u8)> = Vec::with_capacity(fds.capacity());
            fds.push(sys::PollFd {
                fd: sigfd,
                events: sys::POLLIN,
                revents: 0,
            });
            who.push((0, 0));
            if self.stdin_open && !self.out.congested() && !self.out.shutting_down {
                fds.push(sys::PollFd {
                    fd: 0,
                    events: sys::POLLIN,
                    revents: 0,
                });
                who.push((0, 1));
            }
            if self.out.pending() > 0 {
                fds.push(sys::PollFd {
                    fd: 1,
                    events: sys::POLLOUT,
                    revents: 0,
                });
                who.push((0, 2));
            }
            let now = sys::now_ms();
            let mut deadline = self.shutdown_at;
            let congested = self.out.congested();
            for c in self.chans.values() {
                c.interest(congested, &mut |fd, ev, slot| {
                    fds.push(sys::PollFd {
                        fd,
                        events: ev,
                        revents: 0,
                    });
                    who.push((c.id, slot));
                });
                if let Some(d) = c.next_timer() {
                    deadline = Some(deadline.map_or(d, |x: u64| x.min(d)));
                }
            }
            let timeout = match deadline {
                None => -1,
                Some(d) => d.saturating_sub(now).min(60_000) as i32,
            };
            let n = unsafe { sys::poll(fds.as_mut_ptr(), fds.len() as u64, timeout) };
            if n < 0 {
                continue;
            }
            for (i, pf) in fds.iter().enumerate() {
                if pf.revents == 0 {
                    continue;
                }
                let (id, slot) = who[i];
                if id == 0 {
                    match slot {
                        0 => self.on_signals(sigfd),
                        1 => self.on_stdin(rd, &mut inbuf),
                        _ => {}
                    }
                    continue;
                }
                self.on_ready(id, slot, pf.revents);
            }
            let now = sys::now_ms();
            let ids: Vec<u32> = self.chans.keys().copied().collect();
            for id in ids {
                self.on_timers(id, now);
            }
            if let Some(d) = self.shutdown_at {
                let live = self.chans.values().any(|c| c.pid().is_some());
                if now >= d || !live {
                    self.shutdown();
                }
            }
        }
    }

    fn sweep(&mut self) {
        self.chans.retain(|_, c| !c.done);
    }

    fn on_signals(&mut self, fd: i32) {
        let mut b = [0u8; 64];
        let mut term = 0;
        while let sys::Io::Data(n) = sys::read_fd(fd, &mut b) {
            for &s in &b[..n] {
                if s as i32 == sys::SIGTERM || s as i32 == sys::SIGINT {
                    term = s as i32;
                }
            }
        }
        self.reap();
        if term != 0 && self.shutdown_at.is_none() {
            // Forward to what we run (each in its own group), give it 2 s, then stop everything.
            for c in self.chans.values() {
                if let Some(pid) = c.pid() {
                    unsafe { sys::kill(-pid, term) };
                }
            }
            self.shutdown_at = Some(sys::now_ms() + 2000);
        }
    }

    /// Reaps every exited child: ours (an exec's or terminal's process) and, as PID 1, orphans.
    fn reap(&mut self) {
        loop {
            let mut st = 0;
            let pid = unsafe { sys::waitpid(-1, &mut st, sys::WNOHANG) };
            if pid <= 0 {
                break;
            }
            for c in self.chans.values_mut() {
                if c.pid() == Some(pid) {
                    c.exited(&mut self.out, st);
                    break;
                }
            }
        }
    }

    fn on_stdin(&mut self, rd: &mut Reader, buf: &mut [u8]) {
        // Read at most one buffer per turn, so producers and stdout get their turn too.
        match sys::read_fd(0, buf) {
            sys::Io::Data(n) => self.push_input(rd, &buf[..n]),
            sys::Io::Again => {}
            _ => {
                self.stdin_open = false;
                self.shutdown();
            }
        }
    }

    fn push_input(&mut self, rd: &mut Reader, chunk: &[u8]) {
        rd.buf.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            if rd.syncing {
                match find(&rd.buf[pos..], SYNC_MAGIC) {
                    None => {
                        // Only the last bytes that could start a marker are kept while scanning.
                        let keep = (SYNC_MAGIC.len() - 1).min(rd.buf.len() - pos);
                        let from = rd.buf.len() - keep;
                        rd.buf.drain(..from);
                        return;
                    }
                    Some(at) => {
                        pos += at + SYNC_MAGIC.len();
                        rd.syncing = false;
                    }
                }
            }
            let b = &rd.buf[pos..];
            if b.len() < 4 {
                break;
            }
            if b[0] == 0xff {
                rd.syncing = true;
                continue;
            }
            let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            if !(5..=MAX_PAYLOAD + 5).contains(&len) {
                self.out.protocol_error(
                    &("bad frame length ".to_string()
                        + &json::int_str(len as i64)
                        + ": dropping every channel and waiting for a sync marker"),
                );
                self.reset();
                rd.syncing = true;
                continue;
            }
            if b.len() < 4 + len {
                break;
            }
            let t = b[4];
            let ch = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
            let payload = b[9..4 + len].to_vec();
            pos += 4 + len;
            self.dispatch(t, ch, &payload);
        }
        rd.buf.drain(..pos);
    }

    /// Kills and forgets every channel without answering (hello, bad framing).
    fn reset(&mut self) {
        for c in self.chans.values_mut() {
            c.kill();
            c.done = true;
        }
        self.chans.clear();
    }

    fn shutdown(&mut self) {
        if self.out.shutting_down {
            return;
        }
        self.reset();
        self.out.shutting_down = true;
        self.shutdown_at = None;
        // A second of grace for what is queued on stdout.
        let deadline = sys::now_ms() + 1000;
        while self.out.pending() > 0 && !self.out.broken && sys::now_ms() < deadline {
            self.out.flush();
            let mut p = [sys::PollFd {
                fd: 1,
                events: sys::POLLOUT,
                revents: 0,
            }];
            unsafe { sys::poll(p.as_mut_ptr(), 1, 100) };
        }
        std::process::exit(0);
    }

    fn dispatch(&mut self, t: u8, id: u32, payload: &[u8]) {
        if t == OPEN {
            if id == 0 {
                return self.out.protocol_error("OPEN on channel 0");
            }
            if self.chans.contains_key(&id) {
                return self
                    .out
                    .protocol_error(&("channel ".to_string() + &json::int_str(id as i64) + " is already open"));
            }
            return self.open(id, payload);
        }
        let out = &mut self.out;
        match t {
            DATA => {
                if let Some(c) = self.chans.get_mut(&id) {
                    if c.received(out, payload.len()) {
                        c.data(out, payload);
                    }
                }
            }
            EOF => {
                if let Some(c) = self.chans.get_mut(&id) {
                    c.eof(out, &self.ws);
                }
            }
            WINDOW => {
                if payload.len() != 4 {
                    return out.protocol_error("WINDOW payload must be 4 bytes");
                }
                if let Some(c) = self.chans.get_mut(&id) {
                    c.credit += u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) as i64;
                }
            }
            CONTROL => {
                if let Some(c) = self.chans.get_mut(&id) {
                    match json::parse(payload) {
                        Some(v) => c.control(&v),
                        None => out.protocol_error("CONTROL payload is not JSON"),
                    }
                }
            }
            CLOSE => {
                if let Some(c) = self.chans.get_mut(&id) {
                    c.abort(out);
                }
            }
            _ => out.protocol_error(&("unknown or unexpected frame type ".to_string() + &json::int_str(t as i64))),
        }
    }

    fn open(&mut self, id: u32, payload: &[u8]) {
        let Some(msg) = json::parse(payload) else {
            return self.out.json(
                REPLY,
                id,
                &fail_reply(&err("INVALID_INPUT", "OPEN payload is not JSON")),
            );
        };
        let Some(op) = msg.get("op").and_then(|v| v.str()).map(|s| s.to_string()) else {
            return self
                .out
                .json(REPLY, id, &fail_reply(&err("INVALID_INPUT", "OPEN needs an op")));
        };
        match op.as_str() {
            "hello" => return self.hello(id, &msg),
            "ping" => {
                return self.out.json(
                    REPLY,
                    id,
                    &Obj::new().b("ok", true).i("time", sys::wall_ms() as i64).end(),
                )
            }
            _ => {}
        }
        if self.chans.len() >= MAX_CHANNELS {
            return self.out.json(
                REPLY,
                id,
                &fail_reply(&err("RESOURCE_LIMIT", "too many open channels (1024)")),
            );
        }
        let what = describe(&msg);
        let r = self.open_op(id, &op, &msg);
        if let Err(mut e) = r {
            if let Some(mut c) = self.chans.remove(&id) {
                c.kill();
            }
            if e.code == "INTERNAL" && e.msg.is_empty() {
                e.msg = what;
            }
            self.out.json(REPLY, id, &fail_reply(&e));
        }
    }

    fn open_op(&mut self, id: u32, op: &str, msg: &Val) -> Result<(), AErr> {
        let s = |k: &str| msg.get(k).and_then(|v| v.str());
        let flag = |k: &str| matches!(msg.get(k), Some(Val::Bool(true)));
        match op {
            "stat" => {
                let r = fsops::op_stat(&self.ws, s("path"))?;
                self.out.json(REPLY, id, &r);
            }
            "mkdir" => {
                fsops::op_mkdir(&self.ws, s("path"), flag("recursive"))?;
                self.out.json(REPLY, id, b"{\"ok\":true}");
            }
            "remove" => {
                fsops::op_remove(&self.ws, s("path"), flag("recursive"))?;
                self.out.json(REPLY, id, b"{\"ok\":true}");
            }
            "rename" => {
                fsops::op_rename(&self.ws, s("from"), s("to"))?;
                self.out.json(REPLY, id, b"{\"ok\":true}");
            }
            "list" => {
                let limit = opt_int(msg, "maxEntries", 0, 100_000, 10_000)? as usize;
                let mut c = Chan::new(id, msg, Kind::Plain)?;
                let (body, count) = fsops::op_list(&self.ws, s("path"), limit)?;
                c.enqueue(&mut self.out, DATA, body);
                c.reply(&mut self.out, Obj::new().i("count", count as i64));
                self.chans.insert(id, c);
            }
            "readFile" => {
                let max = opt_int(msg, "maxBytes", 0, 9007199254740991, 64 * 1024 * 1024)?;
                let c = Chan::new(id, msg, Kind::Plain)?;
                let f = fsops::open_read(&self.ws, s("path"), max as u64)?;
                let mut c = c;
                c.kind = Kind::Read(ReadF {
                    file: Some(f),
                    max: max as u64,
                    total: 0,
                });
                self.chans.insert(id, c);
            }
            "writeFile" => {
                let mode = match msg.get("mode") {
                    None | Some(Val::Null) => None,
                    Some(_) => Some(req_int(msg, "mode", 0, 0o777)? as u32),
                };
                let c = Chan::new(id, msg, Kind::Plain)?;
                self.salt = self
                    .salt
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let up = fsops::open_write(&self.ws, s("path"), flag("createParents"), mode, self.salt >> 16)?;
                let mut c = c;
                c.kind = Kind::Write(up);
                self.chans.insert(id, c);
            }
            "exec" => {
                let c = start_exec(&self.ws, id, msg)?;
                self.chans.insert(id, c);
            }
            "terminal" => {
                let mut c = start_terminal(&self.ws, id, msg)?;
                let pid = c.pid().unwrap_or(0);
                c.opened = true;
                self.out
                    .json(REPLY, id, &Obj::new().b("ok", true).i("pid", pid as i64).end());
                if let Kind::Term(t) = &mut c.kind {
                    if let Some(m) = t.not_found.take() {
                        c.enqueue(&mut self.out, DATA, m);
                    }
                }
                self.chans.insert(id, c);
            }
            "connect" => {
                let c = start_connect(&mut self.out, id, msg)?;
                self.chans.insert(id, c);
            }
            "listen" => {
                let (c, port) = start_listen(id, msg)?;
                self.out
                    .json(REPLY, id, &Obj::new().b("ok", true).i("port", port as i64).end());
                self.chans.insert(id, c);
            }
            "watch" => {
                self.ws.require()?;
                let max_dirs = opt_int(msg, "maxDirs", 1, 100_000, 4096)? as usize;
                let mut c = Chan::new(id, msg, Kind::Plain)?;
                let w = Watch::start(&self.ws, max_dirs)?;
                c.opened = true;
                self.out.json(
                    REPLY,
                    id,
                    &Obj::new()
                        .b("ok", true)
                        .i("dirs", w.dirs.len() as i64)
                        .b("limited", w.limited)
                        .end(),
                );
                c.kind = Kind::Watch(Box::new(w));
                self.chans.insert(id, c);
            }
            _ => {
                let name: String = op.chars().take(64).collect();
                return Err(err(
                    "UNSUPPORTED",
                    "unknown op ".to_string() + &String::from_utf8_lossy(&fsops::json_str(&name)),
                ));
            }
        }
        Ok(())
    }

    fn hello(&mut self, id: u32, msg: &Val) {
        self.reset();
        if let Some(n) = msg.get("nonce").and_then(|v| v.str()) {
            if (8..=128).contains(&n.len()) && n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
                self.out.raw(SYNC_MAGIC);
                self.out.raw(n.as_bytes());
            }
        }
        let mut o = Obj::new()
            .b("ok", true)
            .s("agent", "studio-agent")
            .s("version", VERSION)
            .i("protocol", 1)
            .s("runtime", "rust")
            .i("pid", unsafe { sys::getpid() } as i64)
            .b("init", self.pid1)
            .i("uid", unsafe { sys::getuid() } as i64)
            .s("workspace", &self.ws.root);
        o = if self.ws.error.is_empty() {
            o.i("workspaceDev", self.ws.dev as i64).null("workspaceError")
        } else {
            o.null("workspaceDev").s("workspaceError", &self.ws.error)
        };
        let o = o
            .i("window", RECV_WINDOW)
            .i("maxFrame", MAX_PAYLOAD as i64)
            .b("terminal", true)
            .b("streams", true);
        self.out.json(REPLY, id, &o.end());
    }

    fn on_ready(&mut self, id: u32, slot: u8, rev: i16) {
        let Some(c) = self.chans.get_mut(&id) else { return };
        let accepted = c.ready(&mut self.out, &self.ws, slot, rev);
        for s in accepted {
            if self.chans.len() >= MAX_CHANNELS {
                continue;
            }
            self.next_accept = (self.next_accept + 1) & 0x7fff_ffff;
            let sid = 0x8000_0000 | self.next_accept;
            let window = self.chans.get(&id).map(|c| c.window).unwrap_or(RECV_WINDOW);
            let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            let nc = accepted_stream(sid, window, s);
            self.out
                .json(ACCEPT, sid, &Obj::new().i("listener", id as i64).s("peer", &peer).end());
            self.chans.insert(sid, nc);
        }
        self.reap();
    }

    fn on_timers(&mut self, id: u32, now: u64) {
        if let Some(c) = self.chans.get_mut(&id) {
            c.timers(&mut self.out, now);
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn describe(msg: &Val) -> String {
    let s = |k: &str| msg.get(k).and_then(|v| v.str());
    if let (Some(a), Some(b)) = (s("from"), s("to")) {
        return a.to_string() + " -> " + b;
    }
    if let Some(p) = s("path") {
        return if p.is_empty() { ".".into() } else { p.into() };
    }
    s("op").unwrap_or("").to_string()
}

pub fn req_int(msg: &Val, k: &str, min: i64, max: i64) -> Result<i64, AErr> {
    match msg.get(k) {
        Some(Val::Num(Some(n))) if *n >= min && *n <= max => Ok(*n),
        _ => Err(err(
            "INVALID_INPUT",
            k.to_string() + " must be an integer from " + &json::int_str(min) + " to " + &json::int_str(max),
        )),
    }
}

pub fn opt_int(msg: &Val, k: &str, min: i64, max: i64, def: i64) -> Result<i64, AErr> {
    match msg.get(k) {
        None => Ok(def),
        Some(_) => req_int(msg, k, min, max),
    }
}
