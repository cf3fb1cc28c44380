//! The byte-level request scanner: a state machine over the raw bytes a
//! client sends, which finds where each request head and body ends by the
//! rules in `rules.rs` and refuses anything two parsers could read two ways.
//!
//! Owns per-byte syntax (CRLF only, header names as tokens, no control
//! bytes in values, no line folding, chunk-size lines, trailer lines and
//! size) and the pause after an upgrade request. It must not do I/O or
//! decide framing itself: `rules::decide` does.

use super::plain_head::plain_head;
use super::rules::{self, classify, is_tchar, Body, Framing, Kind};
use crate::proxy::error::ProxyError;

/// The longest head or trailer section the scanner follows. hyper refuses
/// heads far shorter (431 at maxRequestHeaderBytes); this bounds trailers
/// and anything hyper's limits would let through.
const MAX_HEAD: usize = 4 * 1024 * 1024;

/// Longest header name kept for matching: the framing names are shorter.
const NAME_KEEP: usize = 20;

/// What one `feed` did with the bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Every byte may go on to hyper.
    All,
    /// An upgrade request (head and body) ended after this many bytes: the
    /// rest waits until the app's answer says whether the protocol changed.
    Pause(usize),
}

/// The scanner's position as the fuzzing harness sees it (`phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests (or in empty lines before one).
    Idle,
    Head,
    /// Body bytes: Content-Length data or chunk data.
    Data,
    /// Chunk-size lines, chunk ends, trailers.
    ChunkFraming,
    /// After an upgrade request, until `resume`.
    Held,
    Opaque,
}

#[derive(Debug)]
enum State {
    Head,
    Fixed(u64),
    Chunked(Chunk),
    /// An upgrade request has ended; `resume` says what follows it.
    AwaitUpgrade,
    /// After a 101: not HTTP any more.
    Opaque,
}

#[derive(Debug)]
enum Chunk {
    Size {
        digits: u8,
        value: u64,
        ext: bool,
        cr: bool,
    },
    Data(u64),
    DataEnd {
        cr: bool,
    },
    Trailer {
        section: usize,
        line: usize,
        cr: bool,
        /// Before the colon of the current line.
        name: bool,
    },
}

const CHUNK_START: Chunk = Chunk::Size {
    digits: 0,
    value: 0,
    ext: false,
    cr: false,
};

/// The current head: counters and the framing values seen so far. The
/// buffers are kept between heads so scanning does not allocate.
#[derive(Debug, Default)]
struct Head {
    len: usize,
    prev: u8,
    /// Complete lines so far; 0 while in the request line.
    lines: usize,
    /// Bytes in the current line.
    line_len: usize,
    method: [u8; 8],
    /// The last bytes of the request line, for its HTTP version.
    tail: [u8; 8],
    name: [u8; NAME_KEEP],
    in_value: bool,
    kind: Option<Kind>,
    /// Where the current line's value starts in `values`.
    value_start: usize,
    upgrade: bool,
    /// Content-Length and Transfer-Encoding values, back to back.
    values: Vec<u8>,
    cl: Vec<(usize, usize)>,
    te: Vec<(usize, usize)>,
}

impl Head {
    fn reset(&mut self) {
        let (mut values, mut cl, mut te) = (
            std::mem::take(&mut self.values),
            std::mem::take(&mut self.cl),
            std::mem::take(&mut self.te),
        );
        values.clear();
        cl.clear();
        te.clear();
        *self = Head {
            prev: b'\n',
            values,
            cl,
            te,
            ..Head::default()
        };
    }
}

#[derive(Debug)]
pub struct Scanner {
    state: State,
    head: Head,
    /// The body being scanned belongs to an upgrade request.
    upgrade_body: bool,
    /// An upgrade request head has just ended: the gate must expect an answer.
    expect: bool,
    /// Where the current request began in the last `feed`'s data (None
    /// when it began in an earlier one: hyper has seen part of it).
    request_start: Option<usize>,
    /// Whole plain heads are checked line by line (`plain_head.rs`);
    /// off only to compare the two ways.
    shortcut: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        let mut head = Head::default();
        head.reset();
        Scanner {
            state: State::Head,
            head,
            upgrade_body: false,
            expect: false,
            request_start: None,
            shortcut: true,
        }
    }
}

impl Scanner {
    /// A scanner that steps through every byte, even of a plain head: the
    /// reference the shortcut is compared with.
    #[cfg(test)]
    pub fn stepwise() -> Self {
        Scanner {
            shortcut: false,
            ..Scanner::default()
        }
    }

    /// Follows `data`; Err at the first byte that makes framing ambiguous.
    pub fn feed(&mut self, data: &[u8]) -> Result<Step, ProxyError> {
        let mut i = 0;
        self.request_start = None;
        while i < data.len() {
            let rest = &data[i..];
            if matches!(self.state, State::Head) && self.head.len == 0 {
                self.request_start = Some(i);
                // A whole plain head ends as the byte steps would end it:
                // no body, the head state reset, nothing to expect.
                if let Some(n) = self.shortcut.then(|| plain_head(rest)).flatten() {
                    i += n;
                    continue;
                }
            }
            i += match &mut self.state {
                State::Opaque => return Ok(Step::All),
                State::AwaitUpgrade => return Ok(Step::Pause(i)),
                State::Head => {
                    self.head_byte(rest[0])?;
                    1
                }
                State::Fixed(n) => {
                    let k = (*n).min(rest.len() as u64);
                    *n -= k;
                    if *n == 0 {
                        self.body_done();
                    }
                    k as usize
                }
                State::Chunked(Chunk::Data(n)) => {
                    let k = (*n).min(rest.len() as u64);
                    *n -= k;
                    if *n == 0 {
                        self.state = State::Chunked(Chunk::DataEnd { cr: false });
                    }
                    k as usize
                }
                State::Chunked(_) => {
                    self.chunk_byte(rest[0])?;
                    1
                }
            };
        }
        Ok(match self.state {
            State::AwaitUpgrade => Step::Pause(data.len()),
            _ => Step::All,
        })
    }

    /// The app answered the upgrade request: 101 (`switched`) or not.
    pub fn resume(&mut self, switched: bool) {
        if matches!(self.state, State::AwaitUpgrade) {
            self.state = if switched { State::Opaque } else { State::Head };
        }
    }

    /// True once after each upgrade request head: the caller arms the gate
    /// before releasing the head to hyper.
    pub fn take_expect(&mut self) -> bool {
        std::mem::take(&mut self.expect)
    }

    /// After a refusal: if the refused request cannot have been
    /// dispatched (the refusal is in its head, or all of it is in the last
    /// `feed`), how many bytes of that feed came before it. None when hyper
    /// already has its head: the body fails and the service answers.
    pub fn undispatched(&self) -> Option<usize> {
        match (&self.state, self.request_start) {
            (State::Head, start) => Some(start.unwrap_or(0)),
            (_, Some(start)) => Some(start),
            (_, None) => None,
        }
    }

    /// What the next byte is to the scanner; for the fuzzing harness
    /// (`src/fuzzing.rs`), which feeds one byte at a time to find
    /// boundaries. Not used on the request path.
    pub fn phase(&self) -> Phase {
        match &self.state {
            State::Head if self.head.len == 0 => Phase::Idle,
            State::Head => Phase::Head,
            State::Fixed(_) | State::Chunked(Chunk::Data(_)) => Phase::Data,
            State::Chunked(_) => Phase::ChunkFraming,
            State::AwaitUpgrade => Phase::Held,
            State::Opaque => Phase::Opaque,
        }
    }

    fn body_done(&mut self) {
        self.state = if std::mem::take(&mut self.upgrade_body) {
            State::AwaitUpgrade
        } else {
            State::Head
        };
    }

    fn head_byte(&mut self, b: u8) -> Result<(), ProxyError> {
        let h = &mut self.head;
        h.len += 1;
        if h.len > MAX_HEAD {
            return Err(ProxyError::HeadersTooLarge(format!(
                "request head over {MAX_HEAD} bytes"
            )));
        }
        let last = std::mem::replace(&mut h.prev, b);
        match (last, b) {
            (b'\r', b'\n') => self.line_end(),
            (b'\r', _) => Err(bad("bare CR in the request head")),
            (_, b'\n') => Err(bad("bare LF in the request head")),
            (_, b'\r') => Ok(()),
            _ if h.lines == 0 => {
                h.line_len += 1;
                request_line_byte(h, b);
                Ok(())
            }
            _ => header_byte(h, b),
        }
    }

    fn line_end(&mut self) -> Result<(), ProxyError> {
        let h = &mut self.head;
        if h.lines == 0 {
            if h.line_len == 0 {
                // An empty line before a request (RFC 9112 section 2.2).
                h.reset();
                return Ok(());
            }
            if h.method.starts_with(b"CONNECT\0") {
                return Err(ProxyError::MethodNotImplemented("CONNECT"));
            }
        } else if h.line_len == 0 {
            return self.head_end();
        } else if !h.in_value {
            return Err(bad("a header line without a colon"));
        } else {
            let end = h.values.len();
            match h.kind {
                Some(Kind::ContentLength) => h.cl.push((h.value_start, end)),
                Some(Kind::TransferEncoding) => h.te.push((h.value_start, end)),
                Some(Kind::Upgrade) => h.upgrade = true,
                _ => {}
            }
        }
        h.lines += 1;
        h.line_len = 0;
        h.in_value = false;
        h.kind = None;
        Ok(())
    }

    fn head_end(&mut self) -> Result<(), ProxyError> {
        let h = &mut self.head;
        let body = {
            let value = |&(a, b): &(usize, usize)| &h.values[a..b];
            // No allocation per request: two Content-Length values are
            // enough to decide (more is "repeated" too), and one
            // Transfer-Encoding line is the common case.
            let mut cl_buf: [&[u8]; 2] = [&[], &[]];
            for (slot, range) in cl_buf.iter_mut().zip(&h.cl) {
                *slot = value(range);
            }
            let cl = &cl_buf[..h.cl.len().min(2)];
            let te_one: [&[u8]; 1];
            let te_many: Vec<&[u8]>;
            let te: &[&[u8]] = match h.te.as_slice() {
                [] => &[],
                [one] => {
                    te_one = [value(one)];
                    &te_one
                }
                many => {
                    te_many = many.iter().map(value).collect();
                    &te_many
                }
            };
            rules::decide(&Framing {
                http10: &h.tail == b"HTTP/1.0",
                content_length: cl,
                transfer_encoding: te,
            })?
        };
        let upgrade = h.upgrade;
        h.reset();
        self.expect = upgrade;
        self.upgrade_body = upgrade;
        match body {
            Body::None => self.body_done(),
            Body::Fixed(n) => self.state = State::Fixed(n),
            Body::Chunked => self.state = State::Chunked(CHUNK_START),
        }
        Ok(())
    }

    fn chunk_byte(&mut self, b: u8) -> Result<(), ProxyError> {
        let State::Chunked(c) = &mut self.state else {
            return Ok(());
        };
        match c {
            Chunk::Size {
                digits,
                value,
                ext,
                cr,
            } => match (b, *cr) {
                (b'\n', true) if *digits == 0 => return Err(bad("invalid chunk size")),
                (b'\n', true) if *value == 0 => {
                    *c = Chunk::Trailer {
                        section: 0,
                        line: 0,
                        cr: false,
                        name: true,
                    }
                }
                (b'\n', true) => *c = Chunk::Data(*value),
                (_, true) => return Err(bad("bare CR in a chunk size line")),
                (b'\r', false) => *cr = true,
                (b'\n', false) => return Err(bad("bare LF in a chunk size line")),
                (b';', false) if *digits > 0 => *ext = true,
                (_, false) if *ext => {}
                (h, false) if h.is_ascii_hexdigit() => {
                    if *digits >= 15 {
                        return Err(bad("chunk size too large"));
                    }
                    *digits += 1;
                    *value = *value * 16 + u64::from(hex_value(h));
                }
                _ => return Err(bad("invalid chunk size")),
            },
            Chunk::DataEnd { cr } => match (b, *cr) {
                (b'\r', false) => *cr = true,
                (b'\n', true) => *c = CHUNK_START,
                _ => return Err(bad("chunk data not followed by CRLF")),
            },
            Chunk::Trailer {
                section,
                line,
                cr,
                name,
            } => {
                *section += 1;
                if *section > MAX_HEAD {
                    return Err(ProxyError::HeadersTooLarge(format!(
                        "trailer section over {MAX_HEAD} bytes"
                    )));
                }
                match (b, *cr) {
                    (b'\r', false) => *cr = true,
                    (b'\n', true) if *line == 0 => self.body_done(),
                    (b'\n', true) if *name => return Err(bad("a trailer line without a colon")),
                    (b'\n', true) => (*line, *cr, *name) = (0, false, true),
                    (_, true) | (b'\n', false) => {
                        return Err(bad("bare CR or LF in the trailer section"))
                    }
                    _ => {
                        trailer_byte(b, *line, name)?;
                        *line += 1;
                    }
                }
            }
            Chunk::Data(_) => {}
        }
        Ok(())
    }
}

/// Request-line bytes: the method (for CONNECT) and the version at the end.
fn request_line_byte(h: &mut Head, b: u8) {
    if h.line_len <= h.method.len() {
        h.method[h.line_len - 1] = if b == b' ' { 0 } else { b };
    }
    h.tail.copy_within(1.., 0);
    h.tail[7] = b;
}

/// One byte of a header line (not CR or LF).
fn header_byte(h: &mut Head, b: u8) -> Result<(), ProxyError> {
    if h.line_len == 0 && (b == b' ' || b == b'\t') {
        return Err(bad("obsolete line folding in the request head"));
    }
    h.line_len += 1;
    if h.in_value {
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            return Err(bad("a control character in a header value"));
        }
        if matches!(h.kind, Some(Kind::ContentLength | Kind::TransferEncoding)) {
            h.values.push(b);
        }
        return Ok(());
    }
    if b == b':' {
        h.in_value = true;
        h.value_start = h.values.len();
        h.kind = Some(classify(
            &h.name[..(h.line_len - 1).min(NAME_KEEP)],
            h.line_len - 1,
        ));
        return Ok(());
    }
    if !is_tchar(b) {
        return Err(bad("an invalid character (or whitespace) in a header name"));
    }
    if h.line_len <= NAME_KEEP {
        h.name[h.line_len - 1] = b;
    }
    Ok(())
}

/// One byte of a trailer line (not CR or LF): the head's rules for
/// header lines, so trailers cannot be read two ways either.
fn trailer_byte(b: u8, line: usize, name: &mut bool) -> Result<(), ProxyError> {
    if !*name {
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            return Err(bad("a control character in a trailer value"));
        }
        return Ok(());
    }
    match b {
        b' ' | b'\t' if line == 0 => Err(bad("obsolete line folding in the trailer section")),
        b':' if line > 0 => {
            *name = false;
            Ok(())
        }
        _ if is_tchar(b) => Ok(()),
        _ => Err(bad(
            "an invalid character (or whitespace) in a trailer field name",
        )),
    }
}

fn hex_value(h: u8) -> u8 {
    match h {
        b'0'..=b'9' => h - b'0',
        b'a'..=b'f' => h - b'a' + 10,
        _ => h - b'A' + 10,
    }
}

fn bad(reason: &'static str) -> ProxyError {
    ProxyError::BadRequest(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Scanner {
        /// `feed` with the refusal as its status code, comparable in asserts.
        fn feed_code(&mut self, data: &[u8]) -> Result<Step, u16> {
            self.feed(data).map_err(|e| e.status().as_u16())
        }
    }

    fn feed_all(chunks: &[&[u8]]) -> Result<Step, u16> {
        let mut s = Scanner::default();
        let mut last = Step::All;
        for c in chunks {
            last = s.feed_code(c)?;
        }
        Ok(last)
    }

    fn status(r: Result<Step, u16>) -> u16 {
        r.err().unwrap_or(0)
    }

    const NORMAL: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n";

    #[test]
    fn accepts_normal_traffic_split_anywhere() {
        assert_eq!(feed_all(&[NORMAL]), Ok(Step::All));
        for at in 0..NORMAL.len() {
            let (a, b) = NORMAL.split_at(at);
            assert_eq!(feed_all(&[a, b]), Ok(Step::All), "split at {at}");
        }
        let bytes: Vec<&[u8]> = NORMAL.chunks(1).collect();
        assert_eq!(feed_all(&bytes), Ok(Step::All));
    }

    #[test]
    fn trailer_lines_follow_the_head_rules() {
        // Found by the guard-versus-h11 differential: folded, nameless or
        // colon-less trailer lines went through.
        const TE: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
        for bad in [
            &b" folded\r\n\r\n"[..],
            b"T: 1\r\n\tfolded\r\n\r\n",
            b"T\r\n\r\n",
            b"T : 1\r\n\r\n",
            b": 1\r\n\r\n",
            b"T: a\x01b\r\n\r\n",
        ] {
            let got = feed_all(&[TE, bad]);
            assert_eq!(status(got), 400, "{:?}", String::from_utf8_lossy(bad));
        }
        let good: &[u8] = b"T: 1\r\nU:2\r\nV: a b\t\r\n\r\n";
        assert_eq!(feed_all(&[TE, good]), Ok(Step::All));
    }

    #[test]
    fn refuses_ambiguous_framing() {
        for (bad, want) in [
            (&b"GET / HTTP/1.1\nHost: x\r\n\r\n"[..], 400),
            (b"GET /lf HTTP/1.1\nHost: x\n\n", 400),
            (b"GET / HTTP/1.1\r\nA: 1\rB: 2\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                400,
            ),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
            ),
            (
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n",
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
                400,
            ),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", 400),
            (b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", 501),
        ] {
            assert_eq!(
                status(feed_all(&[bad])),
                want,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn long_framing_lines_are_still_framing() {
        // 70 spaces before the value: still a Content-Length of 0x31 bytes,
        // and the body (which looks like a head) is skipped, not scanned.
        let body = "GET /x HTTP/1.1\r\nUpgrade: y\r\n\r\n";
        assert_eq!(body.len(), 31);
        let req = format!(
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length:{}31\r\n\r\n{body}",
            " ".repeat(70)
        );
        let smuggled = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut s = Scanner::default();
        assert_eq!(s.feed_code(req.as_bytes()), Ok(Step::All));
        assert!(!s.take_expect(), "the body's Upgrade line is not a header");
        assert_eq!(s.feed_code(smuggled), Err(400));
        // A long Transfer-Encoding value too.
        let te = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: {}gzip, chunked\r\n\r\n",
            " ".repeat(200)
        );
        assert_eq!(status(feed_all(&[te.as_bytes()])), 501);
        // A long header name that merely starts like a framing one.
        let name = format!(
            "GET / HTTP/1.1\r\nContent-Length-{}: 1\r\n\r\n",
            "x".repeat(100)
        );
        assert_eq!(feed_all(&[name.as_bytes()]), Ok(Step::All));
    }

    #[test]
    fn upgrade_pauses_until_the_answer() {
        let first = b"GET /a HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n";
        let second = b"POST /tecl HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let both = [&first[..], &second[..]].concat();
        // Not switched: what follows is HTTP again, and refused.
        let mut s = Scanner::default();
        assert_eq!(s.feed_code(&both), Ok(Step::Pause(first.len())));
        assert!(s.take_expect());
        assert_eq!(s.feed_code(second), Ok(Step::Pause(0)), "still waiting");
        s.resume(false);
        assert_eq!(s.feed_code(second), Err(400));
        // Switched: what follows is the new protocol.
        let mut s = Scanner::default();
        assert_eq!(s.feed_code(&both), Ok(Step::Pause(first.len())));
        s.resume(true);
        assert_eq!(s.feed_code(second), Ok(Step::All));
        assert_eq!(s.feed_code(b"\n\r\x00 anything"), Ok(Step::All));
    }

    #[test]
    fn upgrade_with_a_body_pauses_after_the_body() {
        let req = b"POST /u HTTP/1.1\r\nUpgrade: x\r\nContent-Length: 4\r\n\r\nbodyNEXT";
        let mut s = Scanner::default();
        assert_eq!(s.feed_code(req), Ok(Step::Pause(req.len() - 4)));
        let chunked = b"POST /u HTTP/1.1\r\nUpgrade: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\nNEXT";
        let mut s = Scanner::default();
        assert_eq!(s.feed_code(chunked), Ok(Step::Pause(chunked.len() - 4)));
    }

    #[test]
    fn trailers_are_bounded() {
        let mut s = Scanner::default();
        let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
        assert_eq!(s.feed_code(head), Ok(Step::All));
        let line = [b"X-T: ".as_slice(), &[b'a'; 1000], b"\r\n"].concat();
        let mut refused = None;
        for _ in 0..(MAX_HEAD / line.len() + 2) {
            if let Err(e) = s.feed_code(&line) {
                refused = Some(e);
                break;
            }
        }
        assert_eq!(refused, Some(431));
    }

    #[test]
    fn empty_lines_between_requests_are_tolerated() {
        let req = b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(feed_all(&[req]), Ok(Step::All));
    }

    #[test]
    fn a_refusal_says_whether_its_request_was_dispatched() {
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let bad = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        // All in one read: nothing of the bad request reached hyper.
        let mut s = Scanner::default();
        assert!(s.feed(&[&get[..], &bad[..]].concat()).is_err());
        assert_eq!(s.undispatched(), Some(get.len()));
        // Head in an earlier read: hyper has it, the body fails.
        let (head, body) = bad.split_at(bad.len() - 4);
        let mut s = Scanner::default();
        assert_eq!(s.feed_code(head), Ok(Step::All));
        assert!(s.feed(body).is_err());
        assert_eq!(s.undispatched(), None);
        // A head refused after part of it went on: nothing more goes.
        let mut s = Scanner::default();
        assert_eq!(s.feed_code(b"GET / HTTP/1.1\r\nA: 1"), Ok(Step::All));
        assert!(s.feed(b"\nB: 2\r\n\r\n").is_err());
        assert_eq!(s.undispatched(), Some(0));
    }
}
