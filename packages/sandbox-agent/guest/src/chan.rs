//! Channels: per-channel flow control (PROTOCOL.md "Flow control") and what each op runs.

use crate::fsops::{self, err, io_err, AErr, Upload, Ws};
use crate::json::{self, Obj, Val};
use crate::procs;
use crate::spawn;
use crate::sys;
use crate::{
    fail_reply, opt_int, req_int, wire_error, Out, CHUNK, CLOSE, DATA, DATA_ERR, EOF, RECV_WINDOW, REPLY, WINDOW,
};
use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

const MAX_SEND_WINDOW: i64 = 64 * 1024 * 1024;
const KILL_GRACE_MS: u64 = 2000;

pub struct ReadF {
    pub file: Option<File>,
    pub max: u64,
    pub total: u64,
}

pub struct Exec {
    pid: i32,
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    inbuf: VecDeque<u8>,
    stdin_eof: bool,
    max: u64,
    total: u64,
    truncated: bool,
    timed_out: bool,
    cancelled: bool,
    /// wait status, or the shell-like exit code of a command that could not start
    exit: Option<i32>,
    not_started: Option<i32>,
    deadline: u64,
    grace: Option<u64>,
    oom_before: i64,
    started_us: u64,
}

pub struct Term {
    pid: i32,
    master: Option<OwnedFd>,
    inbuf: VecDeque<u8>,
    exit: Option<i32>,
    pub not_found: Option<Vec<u8>>,
}

pub struct Conn {
    sock: TcpStream,
    label: String,
    port: i64,
    /// deadline of a connect still in progress
    connecting: Option<u64>,
    inbuf: VecDeque<u8>,
    host_eof: bool,
    write_shut: bool,
    read_eof: bool,
}

pub struct Watch {
    fd: OwnedFd,
    root: String,
    pub dirs: HashMap<String, i32>,
    wds: HashMap<i32, String>,
    max_dirs: usize,
    pub limited: bool,
    pending: Vec<(String, bool)>,
    index: HashMap<String, usize>,
    overflow: bool,
    timer: Option<u64>,
}

pub enum Kind {
    Plain,
    Read(ReadF),
    Write(Upload),
    Exec(Box<Exec>),
    Term(Box<Term>),
    Conn(Box<Conn>),
    Listen(TcpListener),
    Watch(Box<Watch>),
}

pub struct Chan {
    pub id: u32,
    pub credit: i64,
    pub window: i64,
    recv_credit: i64,
    unacked: i64,
    queue: VecDeque<(u8, Vec<u8>)>,
    queued: usize,
    pub done: bool,
    pub opened: bool,
    eof_pending: bool,
    pending_final: Option<(u8, Vec<u8>)>,
    pub kind: Kind,
}

fn cancelled() -> AErr {
    err("CANCELLED", "cancelled by the host")
}

impl Chan {
    pub fn new(id: u32, msg: &Val, kind: Kind) -> Result<Chan, AErr> {
        let window = opt_int(msg, "window", 1, MAX_SEND_WINDOW, 256 * 1024)?;
        Ok(Chan::with_window(id, window, kind))
    }

    pub fn with_window(id: u32, window: i64, kind: Kind) -> Chan {
        Chan {
            id,
            credit: window,
            window,
            recv_credit: RECV_WINDOW,
            unacked: 0,
            queue: VecDeque::new(),
            queued: 0,
            done: false,
            opened: false,
            eof_pending: false,
            pending_final: None,
            kind,
        }
    }

    fn can_produce(&self, congested: bool) -> bool {
        self.queued == 0 && !congested && !self.done
    }

    /// Queues DATA (or DATA_ERR); it goes out against the host's credit in `flush`.
    pub fn enqueue(&mut self, _out: &mut Out, t: u8, data: Vec<u8>) {
        if self.done || data.is_empty() {
            return;
        }
        self.queued += data.len();
        if data.len() <= CHUNK {
            self.queue.push_back((t, data));
        } else {
            for c in data.chunks(CHUNK) {
                self.queue.push_back((t, c.to_vec()));
            }
        }
    }

    pub fn flush(&mut self, out: &mut Out) {
        loop {
            while self.credit > 0 && !out.congested() {
                let Some(head) = self.queue.front_mut() else { break };
                let n = head.1.len().min(self.credit as usize).min(CHUNK);
                out.send(head.0, self.id, &head.1[..n]);
                self.credit -= n as i64;
                self.queued -= n;
                if n == head.1.len() {
                    self.queue.pop_front();
                } else {
                    head.1.drain(..n);
                }
            }
            if self.done || !self.progress(out) {
                break;
            }
        }
        if self.queued > 0 || self.done {
            return;
        }
        if self.eof_pending {
            self.eof_pending = false;
            out.send(EOF, self.id, &[]);
        }
        if let Some((t, p)) = self.pending_final.take() {
            self.finalize(out, t, p);
        }
    }

    /// Work that is not driven by poll: file reads, completions. True when it queued more data.
    fn progress(&mut self, out: &mut Out) -> bool {
        let congested = out.congested();
        let can = self.can_produce(congested);
        match &mut self.kind {
            Kind::Read(r) => {
                if !can || self.credit <= 0 || r.file.is_none() {
                    return false;
                }
                let mut buf = vec![0u8; CHUNK.min(self.credit as usize)];
                let res = r.file.as_mut().map(|f| f.read(&mut buf)).unwrap_or(Ok(0));
                match res {
                    Ok(0) => {
                        r.file = None;
                        let total = r.total;
                        self.reply(out, Obj::new().i("size", total as i64));
                        false
                    }
                    Ok(n) => {
                        r.total += n as u64;
                        if r.total > r.max {
                            let max = r.max;
                            r.file = None;
                            let mut e = err(
                                "RESOURCE_LIMIT",
                                "path: file grew past maxBytes (".to_string() + &json::int_str(max as i64) + ")",
                            );
                            e.details = Some(Obj::new().i("maxBytes", max as i64).end());
                            self.fail(out, e);
                            return false;
                        }
                        buf.truncate(n);
                        self.enqueue(out, DATA, buf);
                        true
                    }
                    Err(e) => {
                        r.file = None;
                        self.fail(out, io_err(&e, "path"));
                        false
                    }
                }
            }
            Kind::Exec(x) => {
                if x.exit.is_some() && x.stdout.is_none() && x.stderr.is_none() && self.pending_final.is_none() {
                    let body = exec_result(x);
                    self.finish(out, REPLY, body);
                }
                false
            }
            Kind::Term(t) => {
                if t.exit.is_some() && self.pending_final.is_none() {
                    // The program is gone: take what is left on the pty, then close.
                    if let Some(m) = &t.master {
                        if !can {
                            return false;
                        }
                        let mut buf = vec![0u8; CHUNK];
                        if let sys::Io::Data(n) = sys::read_fd(m.as_raw_fd(), &mut buf) {
                            buf.truncate(n);
                            self.enqueue(out, DATA, buf);
                            return true;
                        }
                        t.master = None;
                    }
                    let st = t.exit.unwrap_or(0);
                    let body = status_json(Obj::new(), st).end();
                    self.eof_pending = true;
                    self.finish(out, CLOSE, body);
                }
                false
            }
            Kind::Conn(c) if c.connecting.is_none() => {
                if c.host_eof && !c.write_shut && c.inbuf.is_empty() {
                    let _ = c.sock.shutdown(Shutdown::Write);
                    c.write_shut = true;
                }
                if c.read_eof && c.write_shut && self.pending_final.is_none() {
                    self.finish(out, CLOSE, b"{}".to_vec());
                }
                false
            }
            _ => false,
        }
    }

    pub fn reply(&mut self, out: &mut Out, o: Obj) {
        let rest = o.end();
        let mut body = b"{\"ok\":true".to_vec();
        if rest.len() > 2 {
            body.push(b',');
            body.extend_from_slice(&rest[1..]);
        } else {
            body.push(b'}');
        }
        self.finish(out, REPLY, body);
    }

    pub fn finish(&mut self, out: &mut Out, t: u8, body: Vec<u8>) {
        if self.done || self.pending_final.is_some() {
            return;
        }
        if self.queued > 0 || self.eof_pending {
            self.pending_final = Some((t, body));
        } else {
            self.finalize(out, t, body);
        }
    }

    fn finalize(&mut self, out: &mut Out, t: u8, body: Vec<u8>) {
        if self.done {
            return;
        }
        if self.eof_pending {
            self.eof_pending = false;
            out.send(EOF, self.id, &[]);
        }
        self.done = true;
        self.kind = Kind::Plain;
        if !out.shutting_down {
            out.json(t, self.id, &body);
        }
    }

    fn drop_queue(&mut self) {
        self.queue.clear();
        self.queued = 0;
        self.pending_final = None;
        self.eof_pending = false;
    }

    pub fn fail(&mut self, out: &mut Out, e: AErr) {
        if self.done {
            return;
        }
        self.drop_queue();
        self.kill();
        let body = if self.opened {
            Obj::new().raw("error", &wire_error(&e)).end()
        } else {
            fail_reply(&e)
        };
        self.finalize(out, if self.opened { CLOSE } else { REPLY }, body);
    }

    /// Stops what the channel runs, at once (host CLOSE, reset, shutdown).
    pub fn kill(&mut self) {
        match &mut self.kind {
            Kind::Exec(x) => {
                x.cancelled = true;
                self.queue.clear();
                self.queued = 0;
                self.pending_final = None;
                self.eof_pending = false;
                terminate(x);
            }
            Kind::Term(t) => {
                if t.exit.is_none() && t.pid > 0 {
                    procs::kill_tree(t.pid, true);
                }
            }
            Kind::Conn(c) => {
                let _ = c.sock.shutdown(Shutdown::Both);
            }
            _ => {}
        }
    }

    pub fn abort(&mut self, out: &mut Out) {
        match &self.kind {
            Kind::Exec(_) | Kind::Term(_) => self.kill(),
            Kind::Conn(_) if !self.opened => self.fail(out, cancelled()),
            Kind::Conn(_) | Kind::Watch(_) | Kind::Listen(_) => {
                self.kill();
                self.drop_queue();
                self.finalize(out, CLOSE, b"{}".to_vec());
            }
            _ => self.fail(out, cancelled()),
        }
    }

    pub fn received(&mut self, out: &mut Out, n: usize) -> bool {
        self.recv_credit -= n as i64;
        if self.recv_credit < 0 {
            self.fail(
                out,
                err(
                    "INVALID_INPUT",
                    "flow control violated: more data than the window allows",
                ),
            );
            return false;
        }
        true
    }

    fn consumed(&mut self, out: &mut Out, n: usize) {
        if self.done {
            return;
        }
        self.unacked += n as i64;
        if self.unacked >= RECV_WINDOW / 4 {
            out.send(WINDOW, self.id, &(self.unacked as u32).to_be_bytes());
            self.recv_credit += self.unacked;
            self.unacked = 0;
        }
    }

    pub fn data(&mut self, out: &mut Out, p: &[u8]) {
        let n = p.len();
        match &mut self.kind {
            Kind::Exec(x) if x.stdin.is_some() && !x.stdin_eof => x.inbuf.extend(p),
            Kind::Term(t) if t.master.is_some() => t.inbuf.extend(p),
            Kind::Conn(c) if !c.write_shut && !c.host_eof => c.inbuf.extend(p),
            Kind::Write(u) => {
                let r = match u.file.as_mut() {
                    Some(f) => f.write_all(p),
                    None => Ok(()),
                };
                if let Err(e) = r {
                    return self.fail(out, io_err(&e, "path"));
                }
                return self.consumed(out, n);
            }
            _ => return self.consumed(out, n),
        }
        self.write_sink(out);
    }

    /// Writes what the host sent to the child's stdin, the pty or the socket; credit goes back as it is taken.
    fn write_sink(&mut self, out: &mut Out) {
        let (fd, buf) = match &mut self.kind {
            Kind::Exec(x) => match &x.stdin {
                Some(f) => (f.as_raw_fd(), &mut x.inbuf),
                None => return,
            },
            Kind::Term(t) => match &t.master {
                Some(f) => (f.as_raw_fd(), &mut t.inbuf),
                None => return,
            },
            Kind::Conn(c) => (c.sock.as_raw_fd(), &mut c.inbuf),
            _ => return,
        };
        let mut done = 0;
        let mut broken = false;
        while !buf.is_empty() {
            let (a, _) = buf.as_slices();
            match sys::write_fd(fd, a) {
                sys::Io::Data(n) => {
                    buf.drain(..n);
                    done += n;
                }
                sys::Io::Again => break,
                _ => {
                    broken = true;
                    done += buf.len();
                    buf.clear();
                }
            }
        }
        if broken {
            if let Kind::Exec(x) = &mut self.kind {
                x.stdin = None;
            }
        }
        if let Kind::Exec(x) = &mut self.kind {
            if x.stdin_eof && x.inbuf.is_empty() {
                x.stdin = None;
            }
        }
        if done > 0 {
            self.consumed(out, done);
        }
    }

    pub fn eof(&mut self, out: &mut Out, _ws: &Ws) {
        match &mut self.kind {
            Kind::Exec(x) => {
                x.stdin_eof = true;
                if x.inbuf.is_empty() {
                    x.stdin = None;
                }
            }
            Kind::Conn(c) => c.host_eof = true,
            Kind::Write(u) => {
                let r = u.commit("path");
                match r {
                    Ok(()) => self.reply(out, Obj::new()),
                    Err(e) => self.fail(out, e),
                }
            }
            _ => {}
        }
    }

    pub fn control(&mut self, v: &Val) {
        let Kind::Term(t) = &self.kind else { return };
        let Some(r) = v.get("resize") else { return };
        let (Ok(c), Ok(rw)) = (req_int(r, "cols", 1, 10000), req_int(r, "rows", 1, 10000)) else {
            return;
        };
        if let Some(m) = &t.master {
            sys::set_winsize(m.as_raw_fd(), c as u16, rw as u16);
        }
    }

    pub fn pid(&self) -> Option<i32> {
        match &self.kind {
            Kind::Exec(x) if x.exit.is_none() && x.pid > 0 => Some(x.pid),
            Kind::Term(t) if t.exit.is_none() && t.pid > 0 => Some(t.pid),
            _ => None,
        }
    }

    pub fn exited(&mut self, out: &mut Out, st: i32) {
        match &mut self.kind {
            Kind::Exec(x) => x.exit = Some(st),
            Kind::Term(t) => t.exit = Some(st),
            _ => {}
        }
        self.flush(out);
    }

    /// Poll interest: slot 1 read, 2 stderr, 3 write, 4 inotify, 5 accept.
    pub fn interest(&self, congested: bool, push: &mut dyn FnMut(i32, i16, u8)) {
        let can = self.can_produce(congested);
        match &self.kind {
            Kind::Exec(x) => {
                // Past the cap nothing is sent, so keep draining: a child must never block on a full pipe.
                let flowing = can || x.total >= x.max || x.cancelled;
                if flowing {
                    if let Some(f) = &x.stdout {
                        push(f.as_raw_fd(), sys::POLLIN, 1);
                    }
                    if let Some(f) = &x.stderr {
                        push(f.as_raw_fd(), sys::POLLIN, 2);
                    }
                }
                if let Some(f) = &x.stdin {
                    if !x.inbuf.is_empty() {
                        push(f.as_raw_fd(), sys::POLLOUT, 3);
                    }
                }
            }
            Kind::Term(t) => {
                if let Some(m) = &t.master {
                    let mut ev = 0;
                    if can && t.exit.is_none() {
                        ev |= sys::POLLIN;
                    }
                    if !t.inbuf.is_empty() {
                        ev |= sys::POLLOUT;
                    }
                    if ev != 0 {
                        push(m.as_raw_fd(), ev, 1);
                    }
                }
            }
            Kind::Conn(c) if c.connecting.is_some() => push(c.sock.as_raw_fd(), sys::POLLOUT, 1),
            Kind::Conn(c) => {
                let mut ev = 0;
                if can && !c.read_eof {
                    ev |= sys::POLLIN;
                }
                if !c.inbuf.is_empty() {
                    ev |= sys::POLLOUT;
                }
                if ev != 0 {
                    push(c.sock.as_raw_fd(), ev, 1);
                }
            }
            Kind::Watch(w) => push(w.fd.as_raw_fd(), sys::POLLIN, 4),
            Kind::Listen(l) => push(l.as_raw_fd(), sys::POLLIN, 5),
            _ => {}
        }
    }

    pub fn ready(&mut self, out: &mut Out, ws: &Ws, slot: u8, rev: i16) -> Vec<TcpStream> {
        let mut accepted = Vec::new();
        let congested = out.congested();
        let can = self.can_produce(congested);
        let id = self.id;
        let _ = id;
        match &mut self.kind {
            Kind::Exec(x) => {
                if slot == 3 {
                    self.write_sink(out);
                    return accepted;
                }
                let mut buf = vec![0u8; CHUNK];
                let fdo = if slot == 1 { &mut x.stdout } else { &mut x.stderr };
                let Some(f) = fdo else { return accepted };
                match sys::read_fd(f.as_raw_fd(), &mut buf) {
                    sys::Io::Data(n) => {
                        if x.cancelled {
                            return accepted;
                        }
                        let t = if slot == 1 { DATA } else { DATA_ERR };
                        if x.total >= x.max {
                            x.truncated = true;
                            return accepted;
                        }
                        let take = (n as u64).min(x.max - x.total) as usize;
                        if take < n {
                            x.truncated = true;
                        }
                        x.total += take as u64;
                        buf.truncate(take);
                        self.enqueue(out, t, buf);
                    }
                    sys::Io::Again => {}
                    _ => *fdo = None,
                }
            }
            Kind::Term(_) => {
                if rev & sys::POLLOUT != 0 {
                    self.write_sink(out);
                }
                let Kind::Term(t2) = &mut self.kind else {
                    return accepted;
                };
                if rev & (sys::POLLIN | sys::POLLHUP | sys::POLLERR) != 0 && can && t2.exit.is_none() {
                    if let Some(m) = &t2.master {
                        let mut buf = vec![0u8; CHUNK];
                        match sys::read_fd(m.as_raw_fd(), &mut buf) {
                            sys::Io::Data(n) => {
                                buf.truncate(n);
                                self.enqueue(out, DATA, buf);
                            }
                            sys::Io::Again => {}
                            // EIO: every slave is closed; wait for the exit status.
                            _ => t2.master = None,
                        }
                    }
                }
            }
            Kind::Conn(c) if c.connecting.is_some() => {
                let no = sys::socket_error(c.sock.as_raw_fd());
                if no != 0 {
                    let e = connect_error(c.port, no);
                    self.fail(out, e);
                    return accepted;
                }
                c.connecting = None;
                self.opened = true;
                out.json(REPLY, self.id, b"{\"ok\":true}");
            }
            Kind::Conn(_) => {
                if rev & sys::POLLOUT != 0 {
                    self.write_sink(out);
                }
                let Kind::Conn(c) = &mut self.kind else { return accepted };
                if rev & (sys::POLLIN | sys::POLLHUP | sys::POLLERR) != 0 && can && !c.read_eof {
                    let mut buf = vec![0u8; CHUNK];
                    match c.sock.read(&mut buf) {
                        Ok(0) => {
                            c.read_eof = true;
                            self.eof_pending = true;
                        }
                        Ok(n) => {
                            buf.truncate(n);
                            self.enqueue(out, DATA, buf);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            let label = c.label.clone();
                            let mut ae = io_err(&e, &label);
                            if e.raw_os_error() == Some(104) {
                                ae = err("UNAVAILABLE", label + ": connection reset");
                            }
                            let body = Obj::new().raw("error", &wire_error(&ae)).end();
                            self.kill();
                            self.finish(out, CLOSE, body);
                        }
                    }
                }
            }
            Kind::Watch(w) => w.read(ws),
            Kind::Listen(l) => {
                for _ in 0..16 {
                    match l.accept() {
                        Ok((s, _)) => accepted.push(s),
                        Err(_) => break,
                    }
                }
            }
            _ => {}
        }
        self.flush(out);
        accepted
    }

    pub fn next_timer(&self) -> Option<u64> {
        match &self.kind {
            Kind::Exec(x) => {
                if x.exit.is_none() && !x.timed_out && !x.cancelled {
                    Some(x.deadline)
                } else {
                    x.grace
                }
            }
            Kind::Watch(w) => w.timer,
            Kind::Conn(c) => c.connecting,
            _ => None,
        }
    }

    pub fn timers(&mut self, out: &mut Out, now: u64) {
        match &mut self.kind {
            Kind::Exec(x) => {
                if x.exit.is_none() && !x.timed_out && !x.cancelled && now >= x.deadline {
                    x.timed_out = true;
                    terminate(x);
                }
                if let Some(g) = x.grace {
                    if now >= g {
                        // A process that escaped our view may still hold the pipes open.
                        x.stdout = None;
                        x.stderr = None;
                        x.stdin = None;
                        x.grace = None;
                    }
                }
            }
            Kind::Conn(c) if c.connecting.is_some_and(|d| now >= d) => {
                let e = err(
                    "TIMEOUT",
                    "connect to port ".to_string() + &json::int_str(c.port) + ": timed out",
                );
                self.fail(out, e);
            }
            Kind::Watch(w) => {
                if let Some(t) = w.timer {
                    if now >= t {
                        w.timer = None;
                        let line = w.emit(self.queued);
                        if let Some(l) = line {
                            self.enqueue(out, DATA, l);
                        }
                    }
                }
            }
            _ => {}
        }
        self.flush(out);
    }
}

fn terminate(x: &mut Exec) {
    if x.pid <= 0 || x.exit.is_some() && x.stdout.is_none() && x.stderr.is_none() {
        return;
    }
    procs::kill_tree(x.pid, x.exit.is_none());
    if x.grace.is_none() {
        x.grace = Some(sys::now_ms() + KILL_GRACE_MS);
    }
}

fn status_json(o: Obj, st: i32) -> Obj {
    if st & 0x7f == 0 {
        o.i("exitCode", ((st >> 8) & 0xff) as i64).null("signal")
    } else {
        o.null("exitCode").s("signal", procs::signal_name(st & 0x7f))
    }
}

fn exec_result(x: &Exec) -> Vec<u8> {
    if x.cancelled {
        return fail_reply(&cancelled());
    }
    let us = sys::now_us().saturating_sub(x.started_us);
    let mut dur = json::int_str((us / 1000) as i64).into_bytes();
    let frac = us % 1000;
    dur.push(b'.');
    dur.extend_from_slice(&[
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
    let o = Obj::new().b("ok", true);
    if let Some(code) = x.not_started {
        return o
            .i("exitCode", code as i64)
            .null("signal")
            .b("timedOut", false)
            .b("truncated", false)
            .b("oomKilled", false)
            .raw("durationMs", &dur)
            .end();
    }
    let st = x.exit.unwrap_or(0);
    let sig = st & 0x7f;
    let code = (st >> 8) & 0xff;
    // A shell reports a child that died of SIGKILL as 137: `sh -c` around an OOM-killed command (issue 16).
    let killed = (sig == sys::SIGKILL) || (sig == 0 && code == 137);
    let oom = killed && !x.timed_out && x.oom_before >= 0 && procs::oom_kills() > x.oom_before;
    status_json(o, st)
        .b("timedOut", x.timed_out)
        .b("truncated", x.truncated)
        .b("oomKilled", oom)
        .raw("durationMs", &dur)
        .end()
}

fn strings(v: Option<&Val>, what: &str, max: usize) -> Result<Vec<String>, AErr> {
    let bad = || {
        err(
            "INVALID_INPUT",
            what.to_string() + " must be a non-empty array of strings",
        )
    };
    let Some(Val::Arr(a)) = v else { return Err(bad()) };
    if a.is_empty() || a.len() > max {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(a.len());
    for x in a {
        match x {
            Val::Str(s) if !s.contains('\0') => out.push(s.clone()),
            _ => return Err(err("INVALID_INPUT", what.to_string() + " must be strings without NUL")),
        }
    }
    Ok(out)
}

fn build_env(term: &str, extra: Option<&Val>) -> Result<Vec<(String, String)>, AErr> {
    let mut env = vec![
        ("PATH".to_string(), procs::agent_path()),
        (
            "HOME".to_string(),
            std::env::var("HOME").unwrap_or_else(|_| "/home/studio".into()),
        ),
        ("LANG".to_string(), "C.UTF-8".to_string()),
        ("TERM".to_string(), term.to_string()),
    ];
    match extra {
        None | Some(Val::Null) => {}
        Some(Val::Obj(m)) => {
            for (k, v) in m {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    return Err(err(
                        "INVALID_INPUT",
                        "invalid environment variable name ".to_string()
                            + &String::from_utf8_lossy(&fsops::json_str(k)),
                    ));
                }
                let Val::Str(s) = v else {
                    return Err(err(
                        "INVALID_INPUT",
                        "environment variable ".to_string() + k + " must be a string without NUL",
                    ));
                };
                if s.contains('\0') {
                    return Err(err(
                        "INVALID_INPUT",
                        "environment variable ".to_string() + k + " must be a string without NUL",
                    ));
                }
                env.retain(|(a, _)| a != k);
                env.push((k.clone(), s.clone()));
            }
        }
        Some(_) => return Err(err("INVALID_INPUT", "env must be an object of strings")),
    }
    Ok(env)
}

fn spawn_error(e: &std::io::Error, what: &str) -> AErr {
    if e.raw_os_error() == Some(7) {
        return err("INVALID_INPUT", "argument list or environment too long");
    }
    io_err(e, what)
}

fn not_found_text(argv0: &str, code: i32) -> Vec<u8> {
    (argv0.to_string()
        + if code == 127 {
            ": command not found\n"
        } else {
            ": permission denied\n"
        })
    .into_bytes()
}

pub fn start_exec(ws: &Ws, id: u32, msg: &Val) -> Result<Chan, AErr> {
    let argv = strings(msg.get("argv"), "argv", 65536)?;
    if argv[0].is_empty() {
        return Err(err("INVALID_INPUT", "argv[0] must not be empty"));
    }
    let timeout = req_int(msg, "timeoutMs", 1, 2147483647)?;
    let max = req_int(msg, "maxOutputBytes", 0, 9007199254740991)?;
    let mut c = Chan::new(id, msg, Kind::Plain)?;
    let env = build_env("dumb", msg.get("env"))?;
    let cwd = fsops::resolve_cwd(ws, msg.get("cwd").and_then(|v| v.str()))?;
    let want_stdin = matches!(msg.get("stdin"), Some(Val::Bool(true)));
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut x = Box::new(Exec {
        pid: 0,
        stdin: None,
        stdout: None,
        stderr: None,
        inbuf: VecDeque::new(),
        stdin_eof: false,
        max: max as u64,
        total: 0,
        truncated: false,
        timed_out: false,
        cancelled: false,
        exit: None,
        not_started: None,
        deadline: sys::now_ms() + timeout as u64,
        grace: None,
        oom_before: procs::oom_kills(),
        started_us: sys::now_us(),
    });
    let prog = match procs::lookup(&argv[0], &cwd, &path) {
        Ok(p) => p,
        Err(code) => {
            x.not_started = Some(code);
            x.exit = Some(0);
            c.enqueue_raw(DATA_ERR, not_found_text(&argv[0], code));
            c.kind = Kind::Exec(x);
            return Ok(c);
        }
    };
    let stdin_pipe = if want_stdin { Some(pipe()?) } else { None };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let cwd_b = cwd.as_os_str().as_bytes().to_vec();
    let spec = spawn::Spec {
        prog: prog.as_os_str().as_bytes(),
        argv: &argv,
        env: &env,
        cwd: &cwd_b,
        stdio: [
            match &stdin_pipe {
                Some((r, _)) => spawn::Io::Fd(r.as_raw_fd()),
                None => spawn::Io::Open("/dev/null", 0),
            },
            spawn::Io::Fd(out_w.as_raw_fd()),
            spawn::Io::Fd(err_w.as_raw_fd()),
        ],
        setsid: false,
    };
    match spawn::spawn(&spec) {
        Ok(pid) => x.pid = pid,
        Err(no @ (2 | 13 | 8)) => {
            let code = if no == 2 { 127 } else { 126 };
            x.not_started = Some(code);
            x.exit = Some(0);
            c.enqueue_raw(DATA_ERR, not_found_text(&argv[0], code));
            c.kind = Kind::Exec(x);
            return Ok(c);
        }
        Err(no) => {
            return Err(spawn_error(
                &std::io::Error::from_raw_os_error(no),
                "cannot start the process",
            ))
        }
    }
    drop((out_w, err_w));
    x.stdin = stdin_pipe.map(|(_, w)| w);
    x.stdout = Some(out_r);
    x.stderr = Some(err_r);
    for f in [&x.stdin, &x.stdout, &x.stderr].into_iter().flatten() {
        sys::set_nonblocking(f.as_raw_fd());
    }
    c.kind = Kind::Exec(x);
    Ok(c)
}

impl Chan {
    fn enqueue_raw(&mut self, t: u8, data: Vec<u8>) {
        self.queued += data.len();
        self.queue.push_back((t, data));
    }
}

fn default_shell() -> Vec<String> {
    for sh in ["/bin/bash", "/usr/bin/bash"] {
        if std::fs::metadata(sh).is_ok() {
            return vec![sh.to_string(), "-l".to_string()];
        }
    }
    vec!["/bin/sh".to_string(), "-l".to_string()]
}

fn pipe() -> Result<(OwnedFd, OwnedFd), AErr> {
    let mut p = [0i32; 2];
    if unsafe { sys::pipe2(p.as_mut_ptr(), sys::O_CLOEXEC) } != 0 {
        return Err(io_err(
            &std::io::Error::from_raw_os_error(sys::errno()),
            "cannot start the process",
        ));
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
}

fn open_pty() -> Result<(OwnedFd, OwnedFd, String), AErr> {
    unsafe {
        let m = sys::open(c"/dev/ptmx".as_ptr(), sys::O_RDWR | sys::O_NOCTTY | sys::O_CLOEXEC);
        if m < 0 {
            return Err(err("UNSUPPORTED", "terminals need /dev/ptmx in the sandbox"));
        }
        let master = OwnedFd::from_raw_fd(m);
        let zero: i32 = 0;
        let mut n: u32 = 0;
        if sys::ioctl(m, sys::TIOCSPTLCK, &zero) != 0 || sys::ioctl(m, sys::TIOCGPTN, &mut n) != 0 {
            return Err(err("INTERNAL", "cannot set up a pseudo-terminal"));
        }
        let path = "/dev/pts/".to_string() + &json::int_str(n as i64);
        let name = CString::new(path.clone()).unwrap_or_default();
        let s = sys::open(name.as_ptr(), sys::O_RDWR | sys::O_NOCTTY | sys::O_CLOEXEC);
        if s < 0 {
            return Err(err("INTERNAL", "cannot open the pseudo-terminal"));
        }
        Ok((master, OwnedFd::from_raw_fd(s), path))
    }
}

pub fn start_terminal(ws: &Ws, id: u32, msg: &Val) -> Result<Chan, AErr> {
    let cols = req_int(msg, "cols", 1, 10000)?;
    let rows = req_int(msg, "rows", 1, 10000)?;
    let command = match msg.get("command") {
        None | Some(Val::Null) => default_shell(),
        v => strings(v, "command", 65536)?,
    };
    let mut c = Chan::new(id, msg, Kind::Plain)?;
    let env = build_env("xterm-256color", msg.get("env"))?;
    let cwd: PathBuf = fsops::resolve_cwd(ws, msg.get("cwd").and_then(|v| v.str()))?;
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut t = Box::new(Term {
        pid: 0,
        master: None,
        inbuf: VecDeque::new(),
        exit: None,
        not_found: None,
    });
    let prog = match procs::lookup(&command[0], &cwd, &path) {
        Ok(p) => p,
        Err(code) => {
            let mut m = not_found_text(&command[0], code);
            m.pop();
            m.extend_from_slice(b"\r\n");
            t.not_found = Some(m);
            t.exit = Some(code << 8);
            c.kind = Kind::Term(t);
            return Ok(c);
        }
    };
    let (master, slave, slave_path) = open_pty()?;
    sys::set_winsize(master.as_raw_fd(), cols as u16, rows as u16);
    let cwd_b = cwd.as_os_str().as_bytes().to_vec();
    // A session leader (setsid) that opens the pty slave: it becomes the controlling terminal.
    let spec = spawn::Spec {
        prog: prog.as_os_str().as_bytes(),
        argv: &command,
        env: &env,
        cwd: &cwd_b,
        stdio: [
            spawn::Io::Open(&slave_path, sys::O_RDWR),
            spawn::Io::Fd(0),
            spawn::Io::Fd(0),
        ],
        setsid: true,
    };
    let pid = match spawn::spawn(&spec) {
        Ok(pid) => pid,
        Err(no) => {
            return Err(spawn_error(
                &std::io::Error::from_raw_os_error(no),
                "cannot start the terminal",
            ))
        }
    };
    drop(slave);
    t.pid = pid;
    sys::set_nonblocking(master.as_raw_fd());
    t.master = Some(master);
    c.kind = Kind::Term(t);
    Ok(c)
}

fn connect_error(port: i64, no: i32) -> AErr {
    if no == 111 {
        return err(
            "NOT_FOUND",
            "nothing is listening on port ".to_string() + &json::int_str(port) + " inside the sandbox",
        );
    }
    io_err(
        &std::io::Error::from_raw_os_error(no),
        &("connect to port ".to_string() + &json::int_str(port)),
    )
}

/// `connect`: a non-blocking connect to 127.0.0.1:port; REPLY once it is established (the loop never waits on it).
pub fn start_connect(out: &mut Out, id: u32, msg: &Val) -> Result<Chan, AErr> {
    let port = req_int(msg, "port", 1, 65535)?;
    let mut c = Chan::new(id, msg, Kind::Plain)?;
    let label = "port ".to_string() + &json::int_str(port);
    let (fd, now) = sys::connect_loopback(port as u16).map_err(|no| connect_error(port, no))?;
    let sock = unsafe { TcpStream::from_raw_fd(fd) };
    let _ = sock.set_nodelay(true);
    if now {
        out.json(REPLY, id, b"{\"ok\":true}");
        c.opened = true;
    }
    c.kind = Kind::Conn(Box::new(Conn {
        sock,
        label,
        port,
        connecting: if now { None } else { Some(sys::now_ms() + 10_000) },
        inbuf: VecDeque::new(),
        host_eof: false,
        write_shut: false,
        read_eof: false,
    }));
    Ok(c)
}

/// `listen`: a TCP listener on the sandbox's loopback; each accepted connection becomes an
/// agent-opened stream (ACCEPT frame, id with the high bit set).
pub fn start_listen(id: u32, msg: &Val) -> Result<(Chan, u16), AErr> {
    let port = opt_int(msg, "port", 0, 65535, 0)?;
    let mut c = Chan::new(id, msg, Kind::Plain)?;
    let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port as u16)))
        .map_err(|e| io_err(&e, &("listen on port ".to_string() + &json::int_str(port))))?;
    let _ = l.set_nonblocking(true);
    let p = l.local_addr().map(|a| a.port()).unwrap_or(0);
    c.opened = true;
    c.kind = Kind::Listen(l);
    Ok((c, p))
}

pub fn accepted_stream(sid: u32, window: i64, sock: TcpStream) -> Chan {
    let _ = sock.set_nodelay(true);
    let _ = sock.set_nonblocking(true);
    let label = "stream ".to_string() + &json::int_str(sid as i64);
    let mut c = Chan::with_window(sid, window, Kind::Plain);
    c.opened = true;
    c.kind = Kind::Conn(Box::new(Conn {
        sock,
        label,
        port: 0,
        connecting: None,
        inbuf: VecDeque::new(),
        host_eof: false,
        write_shut: false,
        read_eof: false,
    }));
    c
}

// ------------------------------------------------------------------------------------------------ watch

const WATCH_SKIP: [&str; 2] = [".git", "node_modules"];
const WATCH_BATCH_MS: u64 = 100;
const WATCH_BATCH_MAX: usize = 256;
const WATCH_BACKLOG: usize = 64 * 1024;
const WATCH_MASK: u32 = sys::IN_MODIFY
    | sys::IN_ATTRIB
    | sys::IN_MOVED_FROM
    | sys::IN_MOVED_TO
    | sys::IN_CREATE
    | sys::IN_DELETE
    | sys::IN_DELETE_SELF
    | sys::IN_MOVE_SELF
    | sys::IN_ONLYDIR
    | sys::IN_DONT_FOLLOW;

impl Watch {
    pub fn start(ws: &Ws, max_dirs: usize) -> Result<Watch, AErr> {
        let fd = unsafe { sys::inotify_init1(sys::IN_NONBLOCK | sys::IN_CLOEXEC) };
        if fd < 0 {
            return Err(err("RESOURCE_LIMIT", "cannot watch: inotify instances exhausted"));
        }
        let mut w = Watch {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            root: ws.root.clone(),
            dirs: HashMap::new(),
            wds: HashMap::new(),
            max_dirs,
            limited: false,
            pending: Vec::new(),
            index: HashMap::new(),
            overflow: false,
            timer: None,
        };
        w.add_tree(ws, "");
        Ok(w)
    }

    fn abs(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.clone() + "/" + rel
        }
    }

    fn add_tree(&mut self, ws: &Ws, rel: &str) {
        let mut todo = VecDeque::from([rel.to_string()]);
        while let Some(dir) = todo.pop_front() {
            if !self.add(ws, &dir) {
                return;
            }
            let Ok(rd) = std::fs::read_dir(self.abs(&dir)) else {
                continue;
            };
            for e in rd.flatten() {
                let Ok(ft) = e.file_type() else { continue };
                let Some(name) = e.file_name().to_str().map(|s| s.to_string()) else {
                    continue;
                };
                if ft.is_dir() && !WATCH_SKIP.contains(&name.as_str()) {
                    todo.push_back(if dir.is_empty() {
                        name
                    } else {
                        dir.clone() + "/" + &name
                    });
                }
            }
        }
    }

    fn add(&mut self, ws: &Ws, rel: &str) -> bool {
        if self.dirs.contains_key(rel) {
            return true;
        }
        if self.dirs.len() >= self.max_dirs {
            self.limited = true;
            return false;
        }
        let abs = self.abs(rel);
        // Still a real directory inside the workspace (not a link swapped in).
        match std::fs::canonicalize(&abs) {
            Ok(real) if real.as_os_str().as_bytes() == abs.as_bytes() && ws.inside(abs.as_bytes()) => {}
            _ => return true,
        }
        let Ok(c) = CString::new(abs) else { return true };
        let wd = unsafe { sys::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), WATCH_MASK) };
        if wd >= 0 {
            if let Some(old) = self.wds.insert(wd, rel.to_string()) {
                self.dirs.remove(&old);
            }
            self.dirs.insert(rel.to_string(), wd);
        }
        true
    }

    fn drop_tree(&mut self, rel: &str) {
        let prefix = rel.to_string() + "/";
        let gone: Vec<String> = self
            .dirs
            .keys()
            .filter(|d| rel.is_empty() || *d == rel || d.starts_with(&prefix))
            .cloned()
            .collect();
        for d in gone {
            if let Some(wd) = self.dirs.remove(&d) {
                self.wds.remove(&wd);
            }
        }
    }

    fn note(&mut self, rel: String, rename: bool) {
        if let Some(&i) = self.index.get(&rel) {
            if rename {
                self.pending[i].1 = true;
            }
        } else if self.pending.len() >= WATCH_BATCH_MAX {
            self.overflow = true;
        } else {
            self.index.insert(rel.clone(), self.pending.len());
            self.pending.push((rel, rename));
        }
        if self.timer.is_none() {
            self.timer = Some(sys::now_ms() + WATCH_BATCH_MS);
        }
    }

    fn read(&mut self, ws: &Ws) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sys::read_fd(self.fd.as_raw_fd(), &mut buf) {
                sys::Io::Data(n) => n,
                _ => return,
            };
            let mut i = 0;
            while i + 16 <= n {
                let wd = i32::from_ne_bytes(buf[i..i + 4].try_into().unwrap_or([0; 4]));
                let mask = u32::from_ne_bytes(buf[i + 4..i + 8].try_into().unwrap_or([0; 4]));
                let len = u32::from_ne_bytes(buf[i + 12..i + 16].try_into().unwrap_or([0; 4])) as usize;
                let raw = &buf[i + 16..(i + 16 + len).min(n)];
                let name_end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
                let name = String::from_utf8_lossy(&raw[..name_end]).into_owned();
                i += 16 + len;
                if mask & sys::IN_Q_OVERFLOW != 0 {
                    self.overflow = true;
                    if self.timer.is_none() {
                        self.timer = Some(sys::now_ms() + WATCH_BATCH_MS);
                    }
                    continue;
                }
                let Some(dir) = self.wds.get(&wd).cloned() else {
                    continue;
                };
                if mask & sys::IN_IGNORED != 0 {
                    self.wds.remove(&wd);
                    if self.dirs.get(&dir) == Some(&wd) {
                        self.dirs.remove(&dir);
                    }
                    continue;
                }
                if name.is_empty() {
                    if mask & (sys::IN_DELETE_SELF | sys::IN_MOVE_SELF) == 0 {
                        self.note(dir, false);
                    }
                    continue;
                }
                let rel = if dir.is_empty() {
                    name.clone()
                } else {
                    dir + "/" + &name
                };
                let rename = mask & (sys::IN_CREATE | sys::IN_DELETE | sys::IN_MOVED_FROM | sys::IN_MOVED_TO) != 0;
                self.note(rel.clone(), rename);
                if !rename {
                    continue;
                }
                match std::fs::symlink_metadata(self.abs(&rel)) {
                    Ok(md) => {
                        if md.is_dir() && !WATCH_SKIP.contains(&name.as_str()) {
                            self.add_tree(ws, &rel);
                        }
                    }
                    Err(_) => self.drop_tree(&rel),
                }
            }
        }
    }

    fn emit(&mut self, queued: usize) -> Option<Vec<u8>> {
        if queued > WATCH_BACKLOG {
            self.overflow = true;
            self.pending.clear();
            self.index.clear();
            return None;
        }
        let mut o = b"{\"changes\":[".to_vec();
        for (i, (p, rename)) in self.pending.iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            o.extend_from_slice(
                &Obj::new()
                    .s("path", p)
                    .s("kind", if *rename { "rename" } else { "change" })
                    .end(),
            );
        }
        o.extend_from_slice(b"],\"overflow\":");
        o.extend_from_slice(if self.overflow { b"true" } else { b"false" });
        o.extend_from_slice(b"}\n");
        self.pending.clear();
        self.index.clear();
        self.overflow = false;
        Some(o)
    }
}
