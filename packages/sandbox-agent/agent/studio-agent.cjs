'use strict';
/**
 * studio-agent: the one process Claude Studio runs inside every sandbox (as the sandbox user, under tini).
 * The host speaks to it over this process's stdin/stdout; PROTOCOL.md beside this file is the full spec.
 *
 * Frames, in both directions: [u32 BE length][u8 type][u32 BE channel][payload], length = 5 + payload
 * bytes, payload at most 1 MiB. Types:
 *   1 OPEN     host->agent  JSON {op, ...}: starts channel `channel` (a new id, never reused, not 0)
 *   2 REPLY    agent->host  JSON {ok:true, ...} | {ok:false, error:{code, message, details?}}
 *   3 DATA     both         bytes: stdin / stdout / pty / socket / file body / list entries
 *   4 DATA_ERR agent->host  bytes: an exec's stderr
 *   5 EOF      both         the sender's DATA stream on this channel has ended (half-close)
 *   6 WINDOW   both         u32 BE: the receiver grants this many more DATA(+DATA_ERR) bytes
 *   7 CONTROL  host->agent  JSON, no answer: {resize:{cols, rows}} for terminals
 *   8 CLOSE    both         host->agent: abort the channel (kill, close, discard); agent->host: JSON, the
 *                           final frame of a terminal or connection ({exitCode, signal} | {error})
 *   9 LOG      agent->host  channel 0, JSON {level, message}
 *  10 ERROR    agent->host  channel 0, JSON {code, message}: a protocol error (bad frame, unknown type)
 * Flow control: per channel and direction, the sender may have at most `window` unacknowledged DATA
 * bytes (256 KiB each way by default; the host picks its receive window per OPEN with `window`).
 * Sync: a 0xFF byte where a frame length is expected makes the agent skip input up to SYNC_MAGIC; the
 * host sends 1 MiB + 17 bytes of 0xFF and SYNC_MAGIC before its first hello, which re-frames a stream a
 * previous host left mid-frame. hello's reply is preceded by the raw bytes SYNC_MAGIC + nonce, so a host
 * attaching to a stream in mid-flight drops everything before its own answer.
 * Every channel ends with exactly one final frame from the agent: REPLY (all ops; for exec it carries
 * the exit status), or, for terminal and connect after their REPLY {ok:true}, CLOSE.
 *
 * It never writes anything but frames to stdout. Config: STUDIO_WORKSPACE (default /workspace).
 * Runs on Node 18 (the sandbox image's) and later; no dependencies.
 */

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const cp = require('node:child_process');
const util = require('node:util');

const VERSION = '1.0.0';
const PROTOCOL = 1;
const T = {
  OPEN: 1,
  REPLY: 2,
  DATA: 3,
  DATA_ERR: 4,
  EOF: 5,
  WINDOW: 6,
  CONTROL: 7,
  CLOSE: 8,
  LOG: 9,
  ERROR: 10,
};
const HEADER = 9;
const MAX_PAYLOAD = 1024 * 1024;
const RECV_WINDOW = 256 * 1024;
const DEFAULT_SEND_WINDOW = 256 * 1024;
const MAX_SEND_WINDOW = 64 * 1024 * 1024;
const CHUNK = 64 * 1024;
const MAX_CHANNELS = 1024;
const STDOUT_CONGESTED = 1024 * 1024;
const SYNC_MAGIC = Buffer.from('\0\0STUDIO-AGENT-SYNC-1\0\0', 'latin1');
const MAX_LINK_HOPS = 8;
const MAX_REMOVE_DEPTH = 512;
const DEFAULT_READ_MAX = 64 * 1024 * 1024;
const DEFAULT_LIST_MAX = 10000;
const MAX_LIST_ENTRIES = 100000;
const KILL_GRACE_MS = 2000;
const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const HELPER = path.join(__dirname, 'pty-helper.py');

// ---------------------------------------------------------------------------------------------- output

const out = process.stdout;
let congested = false;
let shuttingDown = false;

function frame(type, ch, payload) {
  const len = payload ? payload.length : 0;
  const b = Buffer.allocUnsafe(HEADER + len);
  b.writeUInt32BE(5 + len, 0);
  b[4] = type;
  b.writeUInt32BE(ch >>> 0, 5);
  if (len) b.set(payload, HEADER);
  return b;
}

function writeRaw(buf) {
  if (out.writableEnded) return;
  out.write(buf);
  if (!congested && out.writableLength > STDOUT_CONGESTED) {
    // The host is not reading: stop producing (child pipes, sockets, files) and stop taking new input
    // until stdout drains, so our memory stays bounded whatever the host does.
    congested = true;
    process.stdin.pause();
  }
}

function send(type, ch, payload) {
  writeRaw(frame(type, ch, payload));
}

function sendJson(type, ch, obj) {
  let body = Buffer.from(JSON.stringify(obj));
  if (body.length > MAX_PAYLOAD) {
    body = Buffer.from(
      JSON.stringify({ ok: false, error: { code: 'INTERNAL', message: 'reply too large' } }),
    );
  }
  send(type, ch, body);
}

function log(level, message) {
  if (shuttingDown) return;
  sendJson(T.LOG, 0, { level, message: String(message).slice(0, 8192) });
}

function protocolError(message) {
  sendJson(T.ERROR, 0, { code: 'INVALID_INPUT', message });
}

out.on('drain', () => {
  if (!congested) return;
  congested = false;
  if (!shuttingDown) process.stdin.resume();
  for (const c of channels.values()) c.pump();
});
out.on('error', () => shutdown('stdout closed'));

// Nothing may print to stdout but us: anything logged with console becomes a LOG frame.
for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
  console[level] = (...args) => log(level === 'log' ? 'info' : level, util.format(...args));
}

// ---------------------------------------------------------------------------------------------- errors

class AgentError extends Error {
  constructor(code, message, details) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

const ERRNO_CODES = {
  ENOENT: 'NOT_FOUND',
  ENOTDIR: 'NOT_FOUND',
  EEXIST: 'ALREADY_EXISTS',
  EACCES: 'FORBIDDEN',
  EPERM: 'FORBIDDEN',
  // Only the workspace is written through the agent: read-only means its filesystem failed on the host (issue 17).
  EROFS: 'INVALID_STATE',
  ENOSPC: 'RESOURCE_LIMIT',
  EDQUOT: 'RESOURCE_LIMIT',
  EMFILE: 'RESOURCE_LIMIT',
  ENFILE: 'RESOURCE_LIMIT',
  EAGAIN: 'RESOURCE_LIMIT',
  ENOMEM: 'RESOURCE_LIMIT',
  EFBIG: 'RESOURCE_LIMIT',
  ELOOP: 'INVALID_INPUT',
  EISDIR: 'INVALID_INPUT',
  ENAMETOOLONG: 'INVALID_INPUT',
  ENOTEMPTY: 'INVALID_INPUT',
  EINVAL: 'INVALID_INPUT',
  EXDEV: 'INVALID_INPUT',
  EMLINK: 'RESOURCE_LIMIT',
  EBUSY: 'INVALID_STATE',
  ETXTBSY: 'INVALID_STATE',
};
const ERRNO_TEXT = {
  ENOENT: 'no such file or directory',
  ENOTDIR: 'not a directory',
  EEXIST: 'already exists',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS:
    'read-only file system: the workspace disk failed on the host; the session is marked failed and the operator can recover its files',
  ENOSPC: 'no space left in the workspace (disk quota)',
  EDQUOT: 'disk quota exceeded',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files',
  ELOOP: 'too many levels of symbolic links',
  EISDIR: 'is a directory',
  ENAMETOOLONG: 'name too long',
  ENOTEMPTY: 'directory not empty (pass recursive to remove it with its contents)',
  EXDEV: 'cannot move across file systems',
  EBUSY: 'busy',
  EAGAIN: 'resource temporarily unavailable (the sandbox may be at its process limit)',
  ENOMEM: 'out of memory',
};

/** A structured {code, message, details?} for any error, naming only workspace-relative paths. */
function toWire(err, what) {
  if (err instanceof AgentError) {
    return err.details
      ? { code: err.code, message: err.message, details: err.details }
      : { code: err.code, message: err.message };
  }
  const errno = err && typeof err.code === 'string' ? err.code : undefined;
  if (errno && ERRNO_CODES[errno]) {
    const text = ERRNO_TEXT[errno] || errno.toLowerCase();
    return { code: ERRNO_CODES[errno], message: what ? `${what}: ${text}` : text };
  }
  return {
    code: 'INTERNAL',
    message: `${what ? `${what}: ` : ''}${err?.message ? err.message : String(err)}`,
  };
}

// ------------------------------------------------------------------------------------------- workspace

const ws = { root: '', fd: -1, dev: -1, error: '' };

(function openWorkspace() {
  const configured = path.resolve(process.env.STUDIO_WORKSPACE || '/workspace');
  try {
    const root = fs.realpathSync(configured);
    const fd = fs.openSync(root, O_RDONLY | O_DIRECTORY);
    const st = fs.fstatSync(fd);
    let real;
    try {
      real = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      ws.error = 'file operations need /proc mounted in the sandbox';
    }
    if (real !== undefined && real !== root) ws.error = `workspace resolves to ${real}, expected ${root}`;
    if (root === '/') ws.error = 'the workspace cannot be /';
    ws.root = root;
    ws.fd = fd;
    ws.dev = st.dev;
  } catch (e) {
    ws.root = configured;
    ws.error = `workspace ${configured} is not available (${e.code || e.message})`;
  }
})();

/** `/proc/self/fd/<fd>[/<name>]`; a Buffer name (raw bytes from readdir) gives a Buffer path. */
function fdPath(fd, name) {
  if (name === undefined) return `/proc/self/fd/${fd}`;
  if (Buffer.isBuffer(name)) return Buffer.concat([Buffer.from(`/proc/self/fd/${fd}/`), name]);
  return `/proc/self/fd/${fd}/${name}`;
}

function isInside(real) {
  return real === ws.root || (real.length > ws.root.length && real.startsWith(`${ws.root}/`));
}

function toRelative(real) {
  return real === ws.root ? '' : real.slice(ws.root.length + 1);
}

// Surrogate halves that are not part of a pair cannot be file names: they would be changed on the way
// to bytes and name another file.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: the point is to refuse control characters
const BAD_PATH_CHARS = /[\u0000-\u001f\u007f-\u009f\\]/;

/**
 * Validates a workspace-relative path and returns its segments ([] = the workspace root). Refuses
 * absolute paths, '..', control characters, backslashes and over-long names; '.' and empty segments
 * are dropped. The API has validated it already; this is the second wall.
 */
function parsePath(p, allowRoot, what) {
  const label = what || 'path';
  if (typeof p !== 'string') throw new AgentError('INVALID_INPUT', `${label} must be a string`);
  if (p.length > 4096) throw new AgentError('INVALID_INPUT', `${label} is too long`);
  if (BAD_PATH_CHARS.test(p) || LONE_SURROGATE.test(p)) {
    throw new AgentError(
      'INVALID_INPUT',
      `${label} contains a control character, a backslash or invalid text`,
    );
  }
  if (p.startsWith('/')) throw new AgentError('INVALID_INPUT', `${label} must be relative to the workspace`);
  const segs = [];
  for (const s of p.split('/')) {
    if (s === '' || s === '.') continue;
    if (s === '..') throw new AgentError('INVALID_INPUT', `${label} must not contain '..'`);
    if (Buffer.byteLength(s) > 255)
      throw new AgentError('INVALID_INPUT', `${label} has a name longer than 255 bytes`);
    segs.push(s);
  }
  if (segs.length === 0 && !allowRoot)
    throw new AgentError('INVALID_INPUT', `${label} must name something inside the workspace`);
  return segs;
}

function requireWorkspace() {
  if (ws.error) throw new AgentError('UNAVAILABLE', ws.error);
}

/**
 * Checks that an open directory fd is inside the workspace: on the workspace's file system (inside a
 * sandbox /workspace is its own mount and rename(2) cannot move a directory off a mount, so this holds
 * for as long as the fd is open) and, where it is now, at or below the workspace root. Returns its path.
 */
function verifyDir(fd, label) {
  const st = fs.fstatSync(fd);
  if (!st.isDirectory()) throw new AgentError('INVALID_INPUT', `${label}: not a directory`);
  let real;
  try {
    real = fs.readlinkSync(fdPath(fd));
  } catch (e) {
    throw new AgentError('INTERNAL', `${label}: cannot verify the directory (${e.code || e.message})`);
  }
  if (st.dev !== ws.dev || !isInside(real)) {
    throw new AgentError('FORBIDDEN', `${label} leads outside the workspace`);
  }
  return real;
}

function closeQuietly(fd) {
  if (fd === ws.fd || fd < 0) return;
  try {
    fs.closeSync(fd);
  } catch {}
}

/** Opens directory `segs` (following links, as the kernel resolves them) and verifies where it landed. */
function openDir(segs, label) {
  if (segs.length === 0) return { fd: ws.fd, real: ws.root };
  const fd = fs.openSync(`${ws.root}/${segs.join('/')}`, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
  try {
    return { fd, real: verifyDir(fd, label) };
  } catch (e) {
    closeQuietly(fd);
    throw e;
  }
}

/** Like openDir, creating missing directories one verified step at a time (mkdir -p). */
function openDirCreating(segs, label) {
  let fd = ws.fd;
  let real = ws.root;
  try {
    for (const seg of segs) {
      const p = fdPath(fd, seg);
      try {
        fs.mkdirSync(p);
      } catch (e) {
        if (e.code !== 'EEXIST') throw e;
      }
      let next;
      try {
        next = fs.openSync(p, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
      } catch (e) {
        if (e.code === 'ENOTDIR')
          throw new AgentError('ALREADY_EXISTS', `${label}: ${seg} exists and is not a directory`);
        throw e;
      }
      closeQuietly(fd);
      fd = next;
      real = verifyDir(fd, label);
    }
    return { fd, real };
  } catch (e) {
    closeQuietly(fd);
    throw e;
  }
}

/**
 * Where a symlink found at `name` in the verified directory `dirReal` points, as workspace segments;
 * FORBIDDEN when it points outside. Relative targets are resolved lexically from the link's directory.
 */
function linkTarget(dirFd, dirReal, name, label) {
  const target = fs.readlinkSync(fdPath(dirFd, name));
  const abs = path.posix.normalize(target.startsWith('/') ? target : `${dirReal}/${target}`);
  const clean = abs.length > 1 && abs.endsWith('/') ? abs.slice(0, -1) : abs;
  if (!isInside(clean))
    throw new AgentError('FORBIDDEN', `${label} is a symbolic link that points outside the workspace`);
  return parsePath(toRelative(clean), true, label);
}

/**
 * Runs `fn(dirFd, dirReal, name)` on the final component of `segs` inside its verified parent
 * directory. `fn` returns FOLLOW to have a symlink at `name` resolved (inside the workspace only, at
 * most MAX_LINK_HOPS times) and the whole walk restarted on its target. A target that is the
 * workspace root calls `fn(ws.fd, ws.root, null)`.
 */
const FOLLOW = Symbol('follow');
function withTarget(segs, opts, fn) {
  const label = opts.label;
  let cur = segs;
  for (let hops = 0; ; hops++) {
    if (cur.length === 0) return fn(ws.fd, ws.root, null);
    const parentSegs = cur.slice(0, -1);
    const name = cur[cur.length - 1];
    const dir = opts.createParents ? openDirCreating(parentSegs, label) : openDir(parentSegs, label);
    try {
      const r = fn(dir.fd, dir.real, name);
      if (r !== FOLLOW) return r;
      if (hops >= MAX_LINK_HOPS)
        throw new AgentError('INVALID_INPUT', `${label}: too many levels of symbolic links`);
      let next;
      try {
        next = linkTarget(dir.fd, dir.real, name, label);
      } catch (e) {
        // Swapped back to a non-link between our look and readlink: look again.
        if (e.code === 'EINVAL') continue;
        throw e;
      }
      cur = next;
    } finally {
      closeQuietly(dir.fd);
    }
  }
}

function lstatAt(dirFd, name) {
  return name === null ? fs.fstatSync(dirFd) : fs.lstatSync(fdPath(dirFd, name));
}

function typeOf(st) {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

function entryOf(name, st) {
  return { name, type: typeOf(st), size: st.size, mtimeMs: Math.floor(st.mtimeMs), mode: st.mode & 0o7777 };
}

/** Opens the directory at `name` without following a link there; FOLLOW when it is a link. */
function openChildDir(dirFd, name, label) {
  if (name === null) return fs.openSync(fdPath(dirFd), O_RDONLY | O_DIRECTORY | O_NONBLOCK);
  try {
    return fs.openSync(fdPath(dirFd, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK);
  } catch (e) {
    if ((e.code === 'ELOOP' || e.code === 'ENOTDIR') && lstatAt(dirFd, name).isSymbolicLink()) return FOLLOW;
    if (e.code === 'ENOTDIR') throw new AgentError('INVALID_INPUT', `${label}: not a directory`);
    throw e;
  }
}

/**
 * Calls `fn` with each entry name of an open directory as raw bytes (names need not be UTF-8, and a
 * decoded name could not be opened again).
 */
function forEachName(dirFd, fn) {
  const dir = fs.opendirSync(fdPath(dirFd), { encoding: 'buffer' });
  try {
    for (let d = dir.readSync(); d !== null; d = dir.readSync()) fn(d.name);
  } finally {
    dir.closeSync();
  }
}

/** rm -r without ever following a link: each directory is opened O_NOFOLLOW and verified first. */
function removeTree(parentFd, name, depth, label) {
  if (depth > MAX_REMOVE_DEPTH)
    throw new AgentError('RESOURCE_LIMIT', `${label}: directory tree deeper than ${MAX_REMOVE_DEPTH}`);
  const p = fdPath(parentFd, name);
  let fd;
  try {
    fd = fs.openSync(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK);
  } catch (e) {
    if (e.code === 'ENOENT') return;
    // Replaced by a link or a file since we looked: remove that name itself, never what it points to.
    if (e.code === 'ELOOP' || e.code === 'ENOTDIR') return unlinkQuietly(p);
    throw e;
  }
  try {
    verifyDir(fd, label);
    for (let attempt = 0; ; attempt++) {
      forEachName(fd, (child) => {
        let st;
        try {
          st = fs.lstatSync(fdPath(fd, child));
        } catch (e) {
          if (e.code === 'ENOENT') return;
          throw e;
        }
        if (st.isDirectory()) removeTree(fd, child, depth + 1, label);
        else unlinkQuietly(fdPath(fd, child));
      });
      try {
        fs.rmdirSync(p);
        return;
      } catch (e) {
        if (e.code === 'ENOENT') return;
        if (e.code === 'ENOTDIR') return unlinkQuietly(p);
        // Entries created while we walked (or skipped by deleting during readdir): walk again.
        if ((e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') || attempt >= 4) throw e;
      }
    }
  } finally {
    closeQuietly(fd);
  }
}

function unlinkQuietly(p) {
  try {
    fs.unlinkSync(p);
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
  }
}

function randomSuffix() {
  return `${process.pid.toString(36)}${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
}

// --------------------------------------------------------------------------------------------- processes

function baseEnv(term) {
  return {
    PATH: process.env.PATH || DEFAULT_PATH,
    HOME: process.env.HOME || '/home/studio',
    LANG: 'C.UTF-8',
    TERM: term,
  };
}

function buildEnv(term, extra) {
  const env = baseEnv(term);
  if (extra === undefined || extra === null) return env;
  if (typeof extra !== 'object' || Array.isArray(extra))
    throw new AgentError('INVALID_INPUT', 'env must be an object of strings');
  for (const key of Object.keys(extra)) {
    const value = extra[key];
    if (!key || key.includes('=') || key.includes('\0'))
      throw new AgentError('INVALID_INPUT', `invalid environment variable name ${JSON.stringify(key)}`);
    if (typeof value !== 'string' || value.includes('\0'))
      throw new AgentError('INVALID_INPUT', `environment variable ${key} must be a string without NUL`);
    env[key] = value;
  }
  return env;
}

/** Resolves a working directory inside the workspace to its real path (following links that stay inside). */
function resolveCwd(cwd) {
  requireWorkspace();
  const segs = parsePath(cwd === undefined || cwd === null ? '' : cwd, true, 'cwd');
  return withTarget(segs, { label: 'cwd' }, (dirFd, _dirReal, name) => {
    const fd = openChildDir(dirFd, name, 'cwd');
    if (fd === FOLLOW) return FOLLOW;
    try {
      return verifyDir(fd, 'cwd');
    } finally {
      closeQuietly(fd);
    }
  });
}

function readProcTable() {
  const table = new Map();
  let names;
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return table;
  }
  for (const n of names) {
    if (n.charCodeAt(0) < 48 || n.charCodeAt(0) > 57) continue;
    try {
      const stat = fs.readFileSync(`/proc/${n}/stat`, 'latin1');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      table.set(Number(n), { ppid: Number(fields[1]), pgrp: Number(fields[2]) });
    } catch {}
  }
  return table;
}

let ownPgrp = -1;
function getOwnPgrp() {
  if (ownPgrp < 0) {
    const me = readProcTable().get(process.pid);
    ownPgrp = me ? me.pgrp : process.pid;
  }
  return ownPgrp;
}

function signalQuietly(pid, sig) {
  try {
    process.kill(pid, sig);
  } catch {}
}

/**
 * SIGKILLs a child, its process group, every descendant (found through /proc ppid links *before*
 * anything dies and is reparented, including those that left the group with setsid) and their groups.
 * Everything found is SIGSTOPped first so nothing can fork new processes while we look again. Once the
 * child itself has been reaped its pid may be reused, so then only its group (which keeps the number
 * reserved while any member lives) is a starting point.
 */
function killTree(rootPid, leaderAlive) {
  if (!rootPid || rootPid <= 1 || rootPid === process.pid) return;
  const own = getOwnPgrp();
  const victims = new Set(leaderAlive ? [rootPid] : []);
  const groups = new Set([rootPid]);
  for (let round = 0; round < 3; round++) {
    const table = readProcTable();
    const children = new Map();
    for (const [pid, p] of table) {
      if (!leaderAlive && p.pgrp === rootPid && pid !== process.pid) victims.add(pid);
      const list = children.get(p.ppid);
      if (list) list.push(pid);
      else children.set(p.ppid, [pid]);
    }
    const stack = [...victims];
    while (stack.length) {
      const pid = stack.pop();
      for (const c of children.get(pid) || []) {
        if (c === process.pid || c <= 1 || victims.has(c)) continue;
        victims.add(c);
        stack.push(c);
      }
    }
    for (const pid of victims) {
      const p = table.get(pid);
      if (p && p.pgrp > 1 && p.pgrp !== own) groups.add(p.pgrp);
    }
    for (const g of groups) signalQuietly(-g, 'SIGSTOP');
    for (const pid of victims) signalQuietly(pid, 'SIGSTOP');
  }
  for (const g of groups) signalQuietly(-g, 'SIGKILL');
  for (const pid of victims) signalQuietly(pid, 'SIGKILL');
}

/** Kills what a spawned child runs (see killTree). */
function killChild(child) {
  if (!child?.pid) return;
  killTree(child.pid, child.exitCode === null && child.signalCode === null);
}

const OOM_FILES = ['/sys/fs/cgroup/memory.events', '/sys/fs/cgroup/memory/memory.oom_control'];
let oomFile;
function readOomKills() {
  if (oomFile === null) return -1;
  const candidates = oomFile ? [oomFile] : OOM_FILES;
  for (const f of candidates) {
    try {
      const m = /^oom_kill (\d+)$/m.exec(fs.readFileSync(f, 'latin1'));
      if (m) {
        oomFile = f;
        return Number(m[1]);
      }
    } catch {}
  }
  if (oomFile === undefined) oomFile = null;
  return -1;
}

let python;
function findPython() {
  if (python !== undefined) return python;
  python = null;
  for (const dir of (process.env.PATH || DEFAULT_PATH).split(':')) {
    if (!dir) continue;
    const candidate = `${dir}/python3`;
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) {
        python = candidate;
        break;
      }
    } catch {}
  }
  return python;
}

function defaultShell() {
  for (const sh of ['/bin/bash', '/usr/bin/bash']) {
    try {
      fs.accessSync(sh, fs.constants.X_OK);
      return [sh, '-l'];
    } catch {}
  }
  return ['/bin/sh', '-l'];
}

// ---------------------------------------------------------------------------------------------- channels

const channels = new Map();

function int(v, min, max, label) {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new AgentError('INVALID_INPUT', `${label} must be an integer from ${min} to ${max}`);
  }
  return v;
}

/**
 * One channel. Outgoing DATA goes through `queue` and is sent only against the host's credit; sources
 * (pipes, sockets, files) are paused while anything is queued, so a host that stops reading stops the
 * producer rather than growing our memory.
 */
class Channel {
  constructor(id, msg) {
    this.id = id;
    this.credit =
      msg.window === undefined ? DEFAULT_SEND_WINDOW : int(msg.window, 1, MAX_SEND_WINDOW, 'window');
    this.recvCredit = RECV_WINDOW;
    this.unacked = 0;
    this.queue = [];
    this.queued = 0;
    this.done = false;
    this.opened = false;
    this.pendingFinal = null;
    channels.set(id, this);
  }

  /** True while the producer may read more: nothing waiting for credit, stdout not congested. */
  get canProduce() {
    return this.queued === 0 && !congested && !this.done;
  }

  enqueue(type, buf) {
    if (this.done || buf.length === 0) return;
    this.queue.push([type, buf]);
    this.queued += buf.length;
    this.flush();
  }

  flush() {
    while (this.queue.length && this.credit > 0 && !congested) {
      const head = this.queue[0];
      const n = Math.min(head[1].length, this.credit, CHUNK);
      send(head[0], this.id, head[1].subarray(0, n));
      this.credit -= n;
      this.queued -= n;
      if (n === head[1].length) this.queue.shift();
      else head[1] = head[1].subarray(n);
    }
    if (this.queued > 0 || this.done) return;
    if (this.eofPending) {
      this.eofPending = false;
      send(T.EOF, this.id);
    }
    if (this.pendingFinal) {
      const [type, obj] = this.pendingFinal;
      this.pendingFinal = null;
      this.finalize(type, obj);
    }
  }

  /** Sends EOF (our DATA has ended) once everything queued before it has gone out. */
  endData() {
    this.eofPending = true;
    this.flush();
  }

  pump() {
    this.flush();
    if (!this.done) this.produce();
  }

  /** Subclasses: resume their sources when canProduce. */
  produce() {}

  window(n) {
    this.credit += n;
    this.pump();
  }

  /** Accounts for DATA from the host; false (and the channel failed) when it overran our window. */
  received(n) {
    this.recvCredit -= n;
    if (this.recvCredit < 0) {
      this.fail({
        code: 'INVALID_INPUT',
        message: 'flow control violated: more data than the window allows',
      });
      return false;
    }
    return true;
  }

  /** The host's bytes have been consumed: give the credit back (batched). */
  consumed(n) {
    if (this.done) return;
    this.unacked += n;
    if (this.unacked >= RECV_WINDOW / 4) {
      const b = Buffer.allocUnsafe(4);
      b.writeUInt32BE(this.unacked, 0);
      send(T.WINDOW, this.id, b);
      this.recvCredit += this.unacked;
      this.unacked = 0;
    }
  }

  /** Ends the channel with its final frame once queued DATA has been sent. */
  finish(type, obj) {
    if (this.done || this.pendingFinal) return;
    if (this.queued > 0) this.pendingFinal = [type, obj];
    else this.finalize(type, obj);
  }

  finalize(type, obj) {
    if (this.done) return;
    this.done = true;
    channels.delete(this.id);
    this.release();
    if (!shuttingDown) sendJson(type, this.id, obj);
  }

  /** Immediate failure: drops queued DATA, kills what the channel runs, sends the error. */
  fail(error) {
    if (this.done) return;
    this.dropQueue();
    this.kill();
    this.finalize(this.opened ? T.CLOSE : T.REPLY, this.opened ? { error } : { ok: false, error });
  }

  dropQueue() {
    this.queue = [];
    this.queued = 0;
    this.pendingFinal = null;
    this.eofPending = false;
  }

  reply(obj) {
    this.finish(T.REPLY, Object.assign({ ok: true }, obj));
  }

  /** Frees fds and the like; called exactly once when the channel ends. */
  release() {}
  /** Stops everything at once (host CLOSE, reset, shutdown). */
  kill() {}
  data(payload) {
    this.consumed(payload.length);
  }
  eof() {}
  control(_msg) {}
  abort() {
    this.fail({ code: 'CANCELLED', message: 'cancelled by the host' });
  }
}

class ExecChannel extends Channel {
  constructor(id, msg) {
    super(id, msg);
    if (!Array.isArray(msg.argv) || msg.argv.length === 0 || msg.argv.length > 65536) {
      throw new AgentError('INVALID_INPUT', 'argv must be a non-empty array of strings');
    }
    for (const a of msg.argv) {
      if (typeof a !== 'string' || a.includes('\0'))
        throw new AgentError('INVALID_INPUT', 'argv must be strings without NUL');
    }
    if (msg.argv[0] === '') throw new AgentError('INVALID_INPUT', 'argv[0] must not be empty');
    const timeoutMs = int(msg.timeoutMs, 1, 2147483647, 'timeoutMs');
    this.max = int(msg.maxOutputBytes, 0, Number.MAX_SAFE_INTEGER, 'maxOutputBytes');
    const env = buildEnv('dumb', msg.env);
    const cwd = resolveCwd(msg.cwd);
    this.total = 0;
    this.truncated = false;
    this.timedOut = false;
    this.cancelled = false;
    this.exit = null;
    this.spawnError = null;
    this.oomBefore = readOomKills();
    this.started = process.hrtime.bigint();
    let child;
    try {
      child = cp.spawn(msg.argv[0], msg.argv.slice(1), {
        cwd,
        env,
        detached: true,
        stdio: [msg.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      });
    } catch (e) {
      if (e.code === 'E2BIG') throw new AgentError('INVALID_INPUT', 'argument list or environment too long');
      throw e;
    }
    this.child = child;
    child.on('error', (e) => {
      if (child.pid === undefined) this.spawnError = e;
    });
    child.stdout.on('data', (d) => this.output(T.DATA, d));
    child.stderr.on('data', (d) => this.output(T.DATA_ERR, d));
    if (child.stdin) child.stdin.on('error', () => {});
    child.on('close', (code, signal) => this.closed(code, signal));
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.terminate();
    }, timeoutMs);
  }

  output(type, d) {
    if (this.cancelled) return;
    if (this.total >= this.max) {
      this.truncated = true;
      return;
    }
    const take = Math.min(d.length, this.max - this.total);
    if (take < d.length) this.truncated = true;
    this.total += take;
    this.enqueue(type, take === d.length ? d : d.subarray(0, take));
    this.produce();
  }

  produce() {
    const c = this.child;
    if (!c) return;
    // Past the cap nothing is sent, so keep draining: a child must never block on a full pipe.
    const flowing = this.canProduce || this.total >= this.max || this.cancelled;
    for (const s of [c.stdout, c.stderr]) {
      if (!s || s.destroyed) continue;
      if (flowing && s.isPaused()) s.resume();
      else if (!flowing && !s.isPaused()) s.pause();
    }
  }

  data(payload) {
    const stdin = this.child?.stdin;
    if (!stdin || stdin.destroyed || stdin.writableEnded) return this.consumed(payload.length);
    stdin.write(payload, () => this.consumed(payload.length));
  }

  eof() {
    const stdin = this.child?.stdin;
    if (stdin && !stdin.writableEnded) stdin.end();
  }

  terminate() {
    const c = this.child;
    clearTimeout(this.timer);
    if (!c || this.exit) return;
    killChild(c);
    // A process that escaped our view (reparented before we looked) may still hold the pipes open.
    if (!this.graceTimer) {
      this.graceTimer = setTimeout(() => {
        for (const s of [c.stdout, c.stderr, c.stdin]) if (s) s.destroy();
      }, KILL_GRACE_MS);
    }
    this.produce();
  }

  closed(code, signal) {
    clearTimeout(this.timer);
    clearTimeout(this.graceTimer);
    const durationMs = Number(process.hrtime.bigint() - this.started) / 1e6;
    if (this.cancelled)
      return this.finish(T.REPLY, {
        ok: false,
        error: { code: 'CANCELLED', message: 'cancelled by the host' },
      });
    const e = this.spawnError;
    if (e) {
      if (e.code === 'ENOENT' || e.code === 'EACCES') {
        const argv0 = this.child.spawnfile;
        const text = e.code === 'ENOENT' ? 'command not found' : 'permission denied';
        this.enqueue(T.DATA_ERR, Buffer.from(`${argv0}: ${text}\n`));
        return this.reply({
          exitCode: e.code === 'ENOENT' ? 127 : 126,
          signal: null,
          timedOut: false,
          truncated: false,
          oomKilled: false,
          durationMs,
        });
      }
      return this.finish(T.REPLY, { ok: false, error: toWire(e, 'cannot start the process') });
    }
    let oomKilled = false;
    // A shell reports a child that died of SIGKILL as status 137 (128 + 9): `sh -c` around an OOM-killed
    // command exits so instead of dying of the signal itself (issue 16).
    const killed = signal === 'SIGKILL' || code === 137;
    if (killed && !this.timedOut && this.oomBefore >= 0) oomKilled = readOomKills() > this.oomBefore;
    this.exit = { code, signal };
    this.reply({
      exitCode: typeof code === 'number' ? code : null,
      signal: signal || null,
      timedOut: this.timedOut,
      truncated: this.truncated,
      oomKilled,
      durationMs,
    });
  }

  abort() {
    this.kill();
  }

  kill() {
    this.cancelled = true;
    this.dropQueue();
    this.terminate();
  }

  release() {
    clearTimeout(this.timer);
  }
}

class TerminalChannel extends Channel {
  constructor(id, msg) {
    super(id, msg);
    const cols = int(msg.cols, 1, 10000, 'cols');
    const rows = int(msg.rows, 1, 10000, 'rows');
    let command = msg.command;
    if (command === undefined || command === null) command = defaultShell();
    if (
      !Array.isArray(command) ||
      command.length === 0 ||
      command.some((a) => typeof a !== 'string' || a.includes('\0'))
    ) {
      throw new AgentError('INVALID_INPUT', 'command must be a non-empty array of strings');
    }
    const env = buildEnv('xterm-256color', msg.env);
    const cwd = resolveCwd(msg.cwd);
    const py = findPython();
    if (!py)
      throw new AgentError(
        'UNSUPPORTED',
        'terminals need python3 in the sandbox image (it runs the pty helper)',
      );
    this.stderr = '';
    this.exit = null;
    const child = cp.spawn(py, ['-I', '-S', HELPER, String(cols), String(rows), '--', ...command], {
      cwd,
      env,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    child.on('error', (e) => {
      if (child.pid === undefined) this.spawnError = e;
    });
    child.stdout.on('data', (d) => {
      this.enqueue(T.DATA, d);
      this.produce();
    });
    child.stdout.on('end', () => this.endData());
    child.stderr.on('data', (d) => {
      if (this.stderr.length < 4096) this.stderr += d.toString('utf8');
    });
    for (const s of [child.stdin, child.stdio[3]]) if (s) s.on('error', () => {});
    child.on('close', (code, signal) => this.closed(code, signal));
    this.opened = true;
    sendJson(T.REPLY, id, { ok: true, pid: child.pid || null });
  }

  produce() {
    const s = this.child?.stdout;
    if (!s || s.destroyed) return;
    if (this.canProduce && s.isPaused()) s.resume();
    else if (!this.canProduce && !s.isPaused()) s.pause();
  }

  data(payload) {
    const stdin = this.child.stdin;
    if (!stdin || stdin.destroyed || stdin.writableEnded) return this.consumed(payload.length);
    stdin.write(payload, () => this.consumed(payload.length));
  }

  control(msg) {
    const r = msg?.resize;
    if (!r) return;
    const ctl = this.child.stdio[3];
    if (
      Number.isInteger(r.cols) &&
      Number.isInteger(r.rows) &&
      r.cols >= 1 &&
      r.rows >= 1 &&
      r.cols <= 10000 &&
      r.rows <= 10000 &&
      ctl &&
      !ctl.destroyed
    ) {
      ctl.write(`${r.cols} ${r.rows}\n`);
    }
  }

  closed(code, signal) {
    if (this.stderr.trim()) log('warn', `terminal ${this.id}: ${this.stderr.trim()}`);
    if (this.spawnError) {
      return this.finish(T.CLOSE, { error: toWire(this.spawnError, 'cannot start the terminal') });
    }
    this.exit = { code, signal };
    this.finish(T.CLOSE, { exitCode: typeof code === 'number' ? code : null, signal: signal || null });
  }

  abort() {
    this.kill();
  }

  kill() {
    if (!this.exit) killChild(this.child);
  }
}

class ConnectChannel extends Channel {
  constructor(id, msg) {
    super(id, msg);
    const port = int(msg.port, 1, 65535, 'port');
    // Half-open allowed: each direction ends only on its own EOF (the host's, or the far side's FIN).
    const sock = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    this.sock = sock;
    sock.setNoDelay(true);
    sock.setTimeout(10000, () => {
      if (!this.opened) sock.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' }));
    });
    sock.on('connect', () => {
      sock.setTimeout(0);
      this.opened = true;
      sendJson(T.REPLY, id, { ok: true });
      this.produce();
    });
    sock.on('data', (d) => {
      this.enqueue(T.DATA, d);
      this.produce();
    });
    sock.on('end', () => this.endData());
    sock.on('error', (e) => {
      this.error = e;
    });
    sock.on('close', () => {
      if (this.done) return;
      const e = this.error;
      if (this.aborted)
        return this.finish(T.REPLY, {
          ok: false,
          error: { code: 'CANCELLED', message: 'cancelled by the host' },
        });
      if (!this.opened) {
        const refused = e && e.code === 'ECONNREFUSED';
        return this.finish(T.REPLY, {
          ok: false,
          error: refused
            ? { code: 'NOT_FOUND', message: `nothing is listening on port ${port} inside the sandbox` }
            : toWire(e || new Error('connection closed'), `connect to port ${port}`),
        });
      }
      this.finish(T.CLOSE, e ? { error: toWire(e, `port ${port}`) } : {});
    });
  }

  produce() {
    const s = this.sock;
    if (!this.opened || s.destroyed) return;
    if (this.canProduce && s.isPaused()) s.resume();
    else if (!this.canProduce && !s.isPaused()) s.pause();
  }

  data(payload) {
    const s = this.sock;
    if (s.destroyed || s.writableEnded) return this.consumed(payload.length);
    s.write(payload, () => this.consumed(payload.length));
  }

  eof() {
    if (!this.sock.writableEnded) this.sock.end();
  }

  abort() {
    this.aborted = !this.opened;
    this.sock.destroy();
  }

  kill() {
    this.sock.destroy();
  }
}

// Directories a watch never enters: dependency and VCS trees churn by the thousand and nobody browses them live.
const WATCH_SKIP = new Set(['.git', 'node_modules']);
const WATCH_DEFAULT_DIRS = 4096;
const WATCH_BATCH_MS = 100;
const WATCH_BATCH_MAX = 256;
/** Above this many bytes waiting for the host's credit, batches are dropped (the next says `overflow`). */
const WATCH_BACKLOG = 64 * 1024;

/**
 * `watch`: changes under the workspace, made by anyone, as newline-delimited JSON batches
 * `{changes: [{path, kind: 'rename'|'change'}], overflow}` at most every 100 ms. One inotify watch per
 * directory (Node 18 has no recursive watch on Linux), new directories joined as they appear; `.git` and
 * `node_modules` are not entered; past `maxDirs` directories the rest go unwatched (`limited` in the REPLY).
 * `overflow` says changes were dropped (too many at once, or the host is not reading): list again.
 */
class WatchChannel extends Channel {
  constructor(id, msg) {
    super(id, msg);
    requireWorkspace();
    this.maxDirs = msg.maxDirs === undefined ? WATCH_DEFAULT_DIRS : int(msg.maxDirs, 1, 100000, 'maxDirs');
    this.watchers = new Map();
    this.pending = new Map();
    this.overflow = false;
    this.limited = false;
    this.timer = null;
    this.addTree('');
    this.opened = true;
    sendJson(T.REPLY, id, { ok: true, dirs: this.watchers.size, limited: this.limited });
  }

  addTree(rel) {
    const todo = [rel];
    while (todo.length > 0 && !this.done) {
      const dir = todo.shift();
      if (!this.add(dir)) return;
      let entries;
      try {
        entries = fs.readdirSync(dir ? path.join(ws.root, dir) : ws.root, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const e of entries) {
        // Dirent types come from readdir (lstat semantics): a link to a directory is not followed.
        if (e.isDirectory() && !WATCH_SKIP.has(e.name)) todo.push(dir ? `${dir}/${e.name}` : e.name);
      }
    }
  }

  add(rel) {
    if (this.watchers.has(rel)) return true;
    if (this.watchers.size >= this.maxDirs) {
      this.limited = true;
      return false;
    }
    const abs = rel ? path.join(ws.root, rel) : ws.root;
    try {
      // The directory must still be a real directory inside the workspace (not a link swapped in).
      const real = fs.realpathSync(abs);
      if (real !== abs || !isInside(real)) return true;
      const w = fs.watch(abs, { persistent: false }, (event, name) => this.onEvent(rel, event, name));
      w.on('error', () => this.drop(rel));
      this.watchers.set(rel, w);
    } catch {}
    return true;
  }

  drop(rel) {
    for (const [dir, w] of this.watchers) {
      if (dir === rel || dir.startsWith(`${rel}/`) || rel === '') {
        w.close();
        this.watchers.delete(dir);
      }
    }
  }

  onEvent(dir, event, name) {
    if (this.done) return;
    if (name === null || name === undefined) return this.note(dir, 'change');
    const rel = dir ? `${dir}/${name}` : String(name);
    this.note(rel, event === 'rename' ? 'rename' : 'change');
    if (event !== 'rename') return;
    let st;
    try {
      st = fs.lstatSync(path.join(ws.root, rel));
    } catch {
      if (this.watchers.has(rel)) this.drop(rel);
      return;
    }
    if (st.isDirectory() && !WATCH_SKIP.has(String(name))) this.addTree(rel);
  }

  note(rel, kind) {
    if (this.pending.size >= WATCH_BATCH_MAX && !this.pending.has(rel)) this.overflow = true;
    else if (this.pending.get(rel) !== 'rename') this.pending.set(rel, kind);
    if (!this.timer) this.timer = setTimeout(() => this.emit(), WATCH_BATCH_MS);
  }

  emit() {
    this.timer = null;
    if (this.done) return;
    if (this.queued > WATCH_BACKLOG) {
      this.overflow = true;
      this.pending.clear();
      return;
    }
    const changes = [];
    for (const [p, kind] of this.pending) changes.push({ path: p, kind });
    this.pending.clear();
    this.enqueue(T.DATA, Buffer.from(`${JSON.stringify({ changes, overflow: this.overflow })}\n`));
    this.overflow = false;
  }

  abort() {
    this.kill();
    this.finish(T.CLOSE, {});
  }

  kill() {
    clearTimeout(this.timer);
    this.timer = null;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }

  release() {
    this.kill();
  }
}

class ReadFileChannel extends Channel {
  constructor(id, msg) {
    super(id, msg);
    requireWorkspace();
    const label = 'path';
    const segs = parsePath(msg.path, false, label);
    const max =
      msg.maxBytes === undefined
        ? DEFAULT_READ_MAX
        : int(msg.maxBytes, 0, Number.MAX_SAFE_INTEGER, 'maxBytes');
    this.fd = withTarget(segs, { label }, (dirFd, _real, name) => {
      if (name === null) throw new AgentError('INVALID_INPUT', `${label}: is a directory`);
      let fd;
      try {
        fd = fs.openSync(fdPath(dirFd, name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
      } catch (e) {
        if (e.code === 'ELOOP') return FOLLOW;
        throw e;
      }
      try {
        const st = fs.fstatSync(fd);
        if (st.isDirectory()) throw new AgentError('INVALID_INPUT', `${label}: is a directory`);
        if (!st.isFile()) throw new AgentError('INVALID_INPUT', `${label}: not a regular file`);
        if (st.size > max) {
          throw new AgentError(
            'RESOURCE_LIMIT',
            `${label}: file is ${st.size} bytes, more than maxBytes (${max})`,
            { size: st.size, maxBytes: max },
          );
        }
      } catch (e) {
        fs.closeSync(fd);
        throw e;
      }
      return fd;
    });
    this.max = max;
    this.total = 0;
    this.buf = Buffer.allocUnsafe(CHUNK);
    setImmediate(() => this.pump());
  }

  produce() {
    while (this.fd >= 0 && this.canProduce && this.credit > 0) {
      const n = fs.readSync(this.fd, this.buf, 0, Math.min(CHUNK, this.credit), null);
      if (n === 0) {
        this.closeFd();
        return this.reply({ size: this.total });
      }
      this.total += n;
      if (this.total > this.max) {
        this.closeFd();
        return this.fail({
          code: 'RESOURCE_LIMIT',
          message: `path: file grew past maxBytes (${this.max})`,
          details: { maxBytes: this.max },
        });
      }
      this.enqueue(T.DATA, Buffer.from(this.buf.subarray(0, n)));
    }
  }

  pump() {
    try {
      super.pump();
    } catch (e) {
      this.fail(toWire(e, 'path'));
    }
  }

  closeFd() {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  release() {
    if (this.fd >= 0) closeQuietly(this.fd);
    this.fd = -1;
  }
}

class WriteFileChannel extends Channel {
  constructor(id, msg) {
    super(id, msg);
    requireWorkspace();
    const label = 'path';
    const segs = parsePath(msg.path, false, label);
    this.mode = msg.mode === undefined || msg.mode === null ? undefined : int(msg.mode, 0, 0o777, 'mode');
    const createParents = msg.createParents === true;
    this.dirFd = -1;
    this.fd = -1;
    withTarget(segs, { label, createParents }, (dirFd, _real, name) => {
      if (name === null) throw new AgentError('INVALID_INPUT', `${label}: is a directory`);
      let existing;
      try {
        existing = fs.lstatSync(fdPath(dirFd, name));
      } catch (e) {
        if (e.code !== 'ENOENT') throw e;
      }
      if (existing?.isSymbolicLink()) return FOLLOW;
      if (existing?.isDirectory()) throw new AgentError('INVALID_INPUT', `${label}: is a directory`);
      if (existing && this.mode === undefined) this.mode = existing.mode & 0o777;
      // Keep the verified directory open: the rename at the end happens in this very directory.
      this.dirFd = fs.openSync(fdPath(dirFd), O_RDONLY | O_DIRECTORY);
      this.name = name;
      this.tmp = `.studio-${randomSuffix()}.tmp`;
      this.fd = fs.openSync(fdPath(this.dirFd, this.tmp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o666);
      return undefined;
    });
  }

  data(payload) {
    if (this.fd < 0) return this.consumed(payload.length);
    try {
      let off = 0;
      while (off < payload.length) off += fs.writeSync(this.fd, payload, off, payload.length - off);
    } catch (e) {
      return this.fail(toWire(e, 'path'));
    }
    this.consumed(payload.length);
  }

  eof() {
    try {
      if (this.mode !== undefined) fs.fchmodSync(this.fd, this.mode);
      fs.closeSync(this.fd);
      this.fd = -1;
      fs.renameSync(fdPath(this.dirFd, this.tmp), fdPath(this.dirFd, this.name));
      this.tmp = undefined;
    } catch (e) {
      return this.fail(toWire(e, 'path'));
    }
    this.reply({});
  }

  release() {
    if (this.fd >= 0) closeQuietly(this.fd);
    this.fd = -1;
    if (this.tmp && this.dirFd >= 0) {
      try {
        fs.unlinkSync(fdPath(this.dirFd, this.tmp));
      } catch {}
    }
    if (this.dirFd >= 0) closeQuietly(this.dirFd);
    this.dirFd = -1;
  }
}

// -------------------------------------------------------------------------------------------- file ops

function opList(msg) {
  requireWorkspace();
  const label = 'path';
  const segs = parsePath(msg.path === undefined ? '' : msg.path, true, label);
  const limit =
    msg.maxEntries === undefined ? DEFAULT_LIST_MAX : int(msg.maxEntries, 0, MAX_LIST_ENTRIES, 'maxEntries');
  return withTarget(segs, { label }, (dirFd, _real, name) => {
    const fd = openChildDir(dirFd, name, label);
    if (fd === FOLLOW) return FOLLOW;
    try {
      verifyDir(fd, label);
      const entries = [];
      let seen = 0;
      forEachName(fd, (n) => {
        if (++seen > limit) {
          throw new AgentError('RESOURCE_LIMIT', `${label} has more than ${limit} entries`, {
            maxEntries: limit,
          });
        }
        try {
          // Names are reported as UTF-8; bytes that are not become U+FFFD (the file is still listed).
          entries.push(entryOf(n.toString('utf8'), fs.lstatSync(fdPath(fd, n))));
        } catch (e) {
          if (e.code !== 'ENOENT') throw e;
        }
      });
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      return entries;
    } finally {
      closeQuietly(fd);
    }
  });
}

function opStat(msg) {
  requireWorkspace();
  const segs = parsePath(msg.path === undefined ? '' : msg.path, true, 'path');
  const st = withTarget(segs, { label: 'path' }, (dirFd, _real, name) => lstatAt(dirFd, name));
  const rel = segs.join('/');
  return Object.assign({ path: rel }, entryOf(segs.length ? segs[segs.length - 1] : '', st));
}

function opMkdir(msg) {
  requireWorkspace();
  const segs = parsePath(msg.path, false, 'path');
  if (msg.recursive === true) {
    const dir = openDirCreating(segs, 'path');
    closeQuietly(dir.fd);
    return {};
  }
  withTarget(segs, { label: 'path' }, (dirFd, _real, name) => {
    fs.mkdirSync(fdPath(dirFd, name));
  });
  return {};
}

function opRemove(msg) {
  requireWorkspace();
  const segs = parsePath(msg.path, false, 'path');
  withTarget(segs, { label: 'path' }, (dirFd, _real, name) => {
    if (name === null) throw new AgentError('INVALID_INPUT', 'refusing to remove the workspace root');
    const p = fdPath(dirFd, name);
    const st = fs.lstatSync(p);
    if (!st.isDirectory()) return fs.unlinkSync(p);
    if (msg.recursive === true) return removeTree(dirFd, name, 0, 'path');
    return fs.rmdirSync(p);
  });
  return {};
}

function opRename(msg) {
  requireWorkspace();
  const from = parsePath(msg.from, false, 'from');
  const to = parsePath(msg.to, false, 'to');
  const a = openDir(from.slice(0, -1), 'from');
  try {
    const b = openDir(to.slice(0, -1), 'to');
    try {
      const src = fdPath(a.fd, from[from.length - 1]);
      const dst = fdPath(b.fd, to[to.length - 1]);
      fs.lstatSync(src);
      let exists = true;
      try {
        fs.lstatSync(dst);
      } catch (e) {
        if (e.code !== 'ENOENT') throw e;
        exists = false;
      }
      if (exists) throw new AgentError('ALREADY_EXISTS', 'to: already exists');
      fs.renameSync(src, dst);
    } finally {
      closeQuietly(b.fd);
    }
  } finally {
    closeQuietly(a.fd);
  }
  return {};
}

// ------------------------------------------------------------------------------------------- dispatcher

const NONCE = /^[0-9a-zA-Z_-]{8,128}$/;

function hello(id, msg) {
  reset();
  if (typeof msg.nonce === 'string' && NONCE.test(msg.nonce))
    writeRaw(Buffer.concat([SYNC_MAGIC, Buffer.from(msg.nonce, 'latin1')]));
  sendJson(T.REPLY, id, {
    ok: true,
    agent: 'studio-agent',
    version: VERSION,
    protocol: PROTOCOL,
    pid: process.pid,
    node: process.version,
    uid: typeof process.getuid === 'function' ? process.getuid() : -1,
    workspace: ws.root,
    workspaceDev: ws.error ? null : ws.dev,
    workspaceError: ws.error || null,
    window: RECV_WINDOW,
    maxFrame: MAX_PAYLOAD,
    terminal: findPython() !== null,
  });
}

const STREAMING = {
  exec: ExecChannel,
  terminal: TerminalChannel,
  connect: ConnectChannel,
  readFile: ReadFileChannel,
  writeFile: WriteFileChannel,
  watch: WatchChannel,
};
const ONE_SHOT = { stat: opStat, mkdir: opMkdir, remove: opRemove, rename: opRename };

function open(id, payload) {
  let msg;
  try {
    msg = JSON.parse(payload.toString('utf8'));
  } catch {
    return sendJson(T.REPLY, id, {
      ok: false,
      error: { code: 'INVALID_INPUT', message: 'OPEN payload is not JSON' },
    });
  }
  if (!msg || typeof msg !== 'object' || typeof msg.op !== 'string') {
    return sendJson(T.REPLY, id, {
      ok: false,
      error: { code: 'INVALID_INPUT', message: 'OPEN needs an op' },
    });
  }
  const op = msg.op;
  if (op === 'hello') return hello(id, msg);
  if (op === 'ping') return sendJson(T.REPLY, id, { ok: true, time: Date.now() });
  if (channels.size >= MAX_CHANNELS) {
    return sendJson(T.REPLY, id, {
      ok: false,
      error: { code: 'RESOURCE_LIMIT', message: `too many open channels (${MAX_CHANNELS})` },
    });
  }
  try {
    if (Object.hasOwn(ONE_SHOT, op))
      return sendJson(T.REPLY, id, Object.assign({ ok: true }, ONE_SHOT[op](msg)));
    if (op === 'list') {
      const entries = opList(msg);
      // One JSON array, sent as DATA in as many frames as it takes; REPLY follows it.
      const ch = new Channel(id, msg);
      ch.enqueue(T.DATA, Buffer.from(JSON.stringify(entries)));
      return ch.reply({ count: entries.length });
    }
    if (Object.hasOwn(STREAMING, op)) {
      new STREAMING[op](id, msg);
      return;
    }
    return sendJson(T.REPLY, id, {
      ok: false,
      error: { code: 'UNSUPPORTED', message: `unknown op ${JSON.stringify(String(op).slice(0, 64))}` },
    });
  } catch (e) {
    const ch = channels.get(id);
    if (ch) {
      ch.kill();
      ch.release();
      ch.done = true;
      channels.delete(id);
    }
    return sendJson(T.REPLY, id, { ok: false, error: toWire(e, describe(msg)) });
  }
}

/** What an errno message is about: the request's own workspace-relative path (already validated). */
function describe(msg) {
  if (typeof msg.from === 'string' && typeof msg.to === 'string') return `${msg.from} -> ${msg.to}`;
  if (typeof msg.path === 'string') return msg.path || '.';
  if (msg.op === 'exec' || msg.op === 'terminal') return msg.op;
  return undefined;
}

function dispatch(type, id, payload) {
  if (type === T.OPEN) {
    if (id === 0) return protocolError('OPEN on channel 0');
    if (channels.has(id)) return protocolError(`channel ${id} is already open`);
    return open(id, payload);
  }
  const ch = channels.get(id);
  switch (type) {
    case T.DATA:
      if (ch?.received(payload.length)) ch.data(payload);
      return;
    case T.EOF:
      if (ch) ch.eof();
      return;
    case T.WINDOW:
      if (payload.length !== 4) return protocolError('WINDOW payload must be 4 bytes');
      if (ch) ch.window(payload.readUInt32BE(0));
      return;
    case T.CONTROL:
      if (ch) {
        let msg;
        try {
          msg = JSON.parse(payload.toString('utf8'));
        } catch {
          return protocolError('CONTROL payload is not JSON');
        }
        ch.control(msg);
      }
      return;
    case T.CLOSE:
      if (ch) ch.abort();
      return;
    default:
      // Frames for channels that already ended are normal (they crossed our final frame) and are
      // dropped above; a type we do not take from the host is a protocol error, answered and skipped.
      protocolError(`unknown or unexpected frame type ${type}`);
  }
}

/** Stops every channel's processes and sockets without answering (the host that opened them is gone). */
function reset() {
  for (const ch of [...channels.values()]) {
    try {
      ch.kill();
    } catch {}
    ch.queue = [];
    ch.queued = 0;
    ch.pendingFinal = null;
    ch.done = true;
    channels.delete(ch.id);
    try {
      ch.release();
    } catch {}
  }
}

// ----------------------------------------------------------------------------------------------- input

/**
 * Splits stdin into frames. Memory is bounded by one frame (1 MiB + header); while resynchronising
 * only the last few bytes are kept.
 */
const reader = {
  parts: [],
  len: 0,
  need: 0,
  syncing: false,
  tail: Buffer.alloc(0),

  push(chunk) {
    if (this.syncing) {
      chunk = this.scan(chunk);
      if (!chunk) return;
    }
    if (chunk.length) {
      this.parts.push(chunk);
      this.len += chunk.length;
    }
    for (;;) {
      if (this.need === 0) {
        if (this.len < 4) return;
        const head = this.peek(4);
        if (head[0] === 0xff) {
          this.startSync();
          continue;
        }
        const length = head.readUInt32BE(0);
        if (length < 5 || length > MAX_PAYLOAD + 5) {
          protocolError(`bad frame length ${length}: dropping every channel and waiting for a sync marker`);
          reset();
          this.startSync();
          continue;
        }
        this.need = 4 + length;
      }
      if (this.len < this.need) return;
      const f = this.take(this.need);
      this.need = 0;
      try {
        dispatch(f[4], f.readUInt32BE(5), f.subarray(HEADER));
      } catch (e) {
        log('error', `frame handling failed: ${e?.stack ? e.stack : e}`);
      }
      if (this.syncing) return;
    }
  },

  /** Drops everything buffered and scans the rest of the input for SYNC_MAGIC. */
  startSync() {
    const rest = this.parts.length ? Buffer.concat(this.parts) : Buffer.alloc(0);
    this.parts = [];
    this.len = 0;
    this.need = 0;
    this.syncing = true;
    this.tail = Buffer.alloc(0);
    const after = this.scan(rest);
    if (after) this.push(after);
  },

  scan(chunk) {
    const buf = this.tail.length ? Buffer.concat([this.tail, chunk]) : chunk;
    const at = buf.indexOf(SYNC_MAGIC);
    if (at < 0) {
      this.tail = Buffer.from(buf.subarray(Math.max(0, buf.length - SYNC_MAGIC.length + 1)));
      return null;
    }
    this.syncing = false;
    this.tail = Buffer.alloc(0);
    return buf.subarray(at + SYNC_MAGIC.length);
  },

  peek(n) {
    if (this.parts[0].length >= n) return this.parts[0];
    return Buffer.concat(this.parts).subarray(0, n);
  },

  take(n) {
    let f;
    if (this.parts[0].length >= n) {
      f = this.parts[0].subarray(0, n);
      if (this.parts[0].length === n) this.parts.shift();
      else this.parts[0] = this.parts[0].subarray(n);
    } else {
      const all = Buffer.concat(this.parts);
      f = all.subarray(0, n);
      this.parts = all.length > n ? [all.subarray(n)] : [];
    }
    this.len -= n;
    return f;
  },
};

// --------------------------------------------------------------------------------------------- lifecycle

/**
 * stdin ended (or stdout broke): the host that could ever talk to us through these fds is gone for
 * good, so kill everything we started and exit; tini exits with us and the sandbox stops. A host that
 * wants to come back (Docker attach with StdinOnce=false) never closes our stdin, and says hello again.
 */
function shutdown(reason) {
  if (shuttingDown) return;
  shuttingDown = true;
  reset();
  process.stdin.pause();
  const done = () => process.exit(0);
  if (reason === 'stdout closed') return done();
  out.end(done);
  setTimeout(done, 1000).unref();
}

process.on('uncaughtException', (e) => {
  try {
    log('error', `uncaught: ${e?.stack ? e.stack : e}`);
  } catch {}
});
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGHUP', () => {});

if (process.env.HOME) {
  try {
    fs.mkdirSync(process.env.HOME, { recursive: true, mode: 0o700 });
  } catch {}
}

process.stdin.on('data', (chunk) => reader.push(chunk));
process.stdin.on('end', () => shutdown('stdin ended'));
process.stdin.on('error', () => shutdown('stdin failed'));
