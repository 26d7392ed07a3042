//! A small JSON reader and writer: enough for the protocol's OPEN/CONTROL payloads and replies.
//! Numbers are kept as integers only (the protocol has no fractional inputs); a lone UTF-16 surrogate
//! escape becomes NUL, which every field that takes text refuses (names, argv, env).

pub enum Val {
    Null,
    Bool(bool),
    /// `Some` for an integer that fits i64; `None` for any other number.
    Num(Option<i64>),
    Str(String),
    Arr(Vec<Val>),
    Obj(Vec<(String, Val)>),
}

impl Val {
    pub fn get(&self, key: &str) -> Option<&Val> {
        match self {
            Val::Obj(m) => m.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct P<'a> {
    b: &'a [u8],
    i: usize,
    depth: u32,
}

pub fn parse(b: &[u8]) -> Option<Val> {
    let mut p = P { b, i: 0, depth: 0 };
    let v = p.value()?;
    p.ws();
    if p.i == b.len() {
        Some(v)
    } else {
        None
    }
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn lit(&mut self, s: &[u8], v: Val) -> Option<Val> {
        if self.b[self.i..].starts_with(s) {
            self.i += s.len();
            Some(v)
        } else {
            None
        }
    }
    fn value(&mut self) -> Option<Val> {
        self.ws();
        let c = *self.b.get(self.i)?;
        match c {
            b'n' => self.lit(b"null", Val::Null),
            b't' => self.lit(b"true", Val::Bool(true)),
            b'f' => self.lit(b"false", Val::Bool(false)),
            b'"' => self.string().map(Val::Str),
            b'[' => {
                self.depth += 1;
                if self.depth > 64 {
                    return None;
                }
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                } else {
                    loop {
                        v.push(self.value()?);
                        self.ws();
                        match self.b.get(self.i)? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                self.depth -= 1;
                Some(Val::Arr(v))
            }
            b'{' => {
                self.depth += 1;
                if self.depth > 64 {
                    return None;
                }
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        if self.b.get(self.i) != Some(&b'"') {
                            return None;
                        }
                        let k = self.string()?;
                        self.ws();
                        if self.b.get(self.i) != Some(&b':') {
                            return None;
                        }
                        self.i += 1;
                        let v = self.value()?;
                        m.push((k, v));
                        self.ws();
                        match self.b.get(self.i)? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                self.depth -= 1;
                Some(Val::Obj(m))
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }
    fn number(&mut self) -> Option<Val> {
        let neg = self.b[self.i] == b'-';
        if neg {
            self.i += 1;
        }
        let mut n: i64 = 0;
        let mut ok = true;
        let start = self.i;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
            match n.checked_mul(10).and_then(|x| x.checked_add((c - b'0') as i64)) {
                Some(x) => n = x,
                None => ok = false,
            }
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let s = self.i;
            while let Some(&c) = self.b.get(self.i) {
                if !c.is_ascii_digit() {
                    break;
                }
                if c != b'0' {
                    ok = false;
                }
                self.i += 1;
            }
            if self.i == s {
                return None;
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            ok = false;
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            let s = self.i;
            while matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            if self.i == s {
                return None;
            }
        }
        Some(Val::Num(if ok { Some(if neg { -n } else { n }) } else { None }))
    }
    fn hex4(&mut self) -> Option<u32> {
        let s = self.b.get(self.i..self.i + 4)?;
        let mut v = 0u32;
        for &c in s {
            v = v * 16 + (c as char).to_digit(16)?;
        }
        self.i += 4;
        Some(v)
    }
    fn string(&mut self) -> Option<String> {
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = *self.b.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = *self.b.get(self.i)?;
                    self.i += 1;
                    let ch: u32 = match e {
                        b'"' => 0x22,
                        b'\\' => 0x5c,
                        b'/' => 0x2f,
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => 10,
                        b'r' => 13,
                        b't' => 9,
                        b'u' => {
                            let u = self.hex4()?;
                            if (0xD800..0xDC00).contains(&u) {
                                if self.b.get(self.i..self.i + 2) == Some(b"\\u") {
                                    let save = self.i;
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if (0xDC00..0xE000).contains(&lo) {
                                        0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
                                    } else {
                                        self.i = save;
                                        0
                                    }
                                } else {
                                    0
                                }
                            } else if (0xDC00..0xE000).contains(&u) {
                                0
                            } else {
                                u
                            }
                        }
                        _ => return None,
                    };
                    let mut tmp = [0u8; 4];
                    out.extend_from_slice(char::from_u32(ch)?.encode_utf8(&mut tmp).as_bytes());
                }
                0..=0x1f => return None,
                _ => out.push(c),
            }
        }
        String::from_utf8(out).ok()
    }
}

/// Appends `s` as a JSON string.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &c in s.as_bytes() {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const H: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(H[(c >> 4) as usize]);
                out.push(H[(c & 15) as usize]);
            }
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

pub fn push_int(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    let mut n = v.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub fn int_str(v: i64) -> String {
    let mut o = Vec::new();
    push_int(&mut o, v);
    String::from_utf8(o).unwrap_or_default()
}

/// Builds a JSON object field by field.
pub struct Obj(pub Vec<u8>);

impl Obj {
    pub fn new() -> Obj {
        Obj(vec![b'{'])
    }
    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        push_str(&mut self.0, k);
        self.0.push(b':');
    }
    pub fn s(mut self, k: &str, v: &str) -> Obj {
        self.key(k);
        push_str(&mut self.0, v);
        self
    }
    pub fn i(mut self, k: &str, v: i64) -> Obj {
        self.key(k);
        push_int(&mut self.0, v);
        self
    }
    pub fn b(mut self, k: &str, v: bool) -> Obj {
        self.key(k);
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
        self
    }
    pub fn null(mut self, k: &str) -> Obj {
        self.key(k);
        self.0.extend_from_slice(b"null");
        self
    }
    /// A field whose value is already JSON.
    pub fn raw(mut self, k: &str, v: &[u8]) -> Obj {
        self.key(k);
        self.0.extend_from_slice(v);
        self
    }
    pub fn end(mut self) -> Vec<u8> {
        self.0.push(b'}');
        self.0
    }
}
