//! A strict reader in front of hyper's HTTP/1 parser.
//!
//! hyper is lenient where a gateway must not be: it accepts bare LF line
//! ends, folds two identical Content-Length headers into one, and lets
//! Transfer-Encoding override Content-Length. Two parsers that disagree on
//! where a request ends are how requests get smuggled, so this wrapper
//! reads every request head (and the framing of every body) before hyper
//! sees it, and ends the connection with a 400 at the first ambiguity.
//!
//! Bodies are skipped by length (cheap); chunked bodies have their size
//! lines checked. After an `Upgrade` request the wrapper stops looking:
//! what follows belongs to the upgraded protocol.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Longest head the scanner holds; hyper refuses longer ones itself (431).
const MAX_SCAN: usize = 1024 * 1024;

const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 56\r\nConnection: close\r\n\r\nbad request: ambiguous framing (request smuggling guard)\n";

#[derive(Debug)]
enum State {
    /// Reading a request head; `prev` is the byte before the current one.
    Head {
        len: usize,
        prev: u8,
        line: LineStart,
        cl: u32,
        te: Option<bool>,
        upgrade: bool,
        length: Option<u64>,
    },
    Fixed(u64),
    Chunked(Chunk),
    /// After an upgrade request: not HTTP any more.
    Opaque,
}

#[derive(Debug)]
enum Chunk {
    Size {
        digits: usize,
        value: u64,
        ext: bool,
        cr: bool,
    },
    Data(u64),
    DataEnd {
        cr: bool,
    },
    Trailer {
        line_len: usize,
        cr: bool,
    },
}

pub struct StrictIo {
    inner: TcpStream,
    state: State,
    rejected: bool,
}

/// The first bytes of the current head line: enough to recognise the
/// framing headers, kept inline so scanning a head does not allocate.
#[derive(Debug)]
struct LineStart {
    bytes: [u8; LINE_START],
    len: usize,
}

const LINE_START: usize = 64;

impl Default for LineStart {
    fn default() -> Self {
        LineStart {
            bytes: [0; LINE_START],
            len: 0,
        }
    }
}

impl LineStart {
    fn push(&mut self, b: u8) {
        if self.len < LINE_START {
            self.bytes[self.len] = b;
            self.len += 1;
        }
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The rest of the line after `name` (matched ignoring case), if it starts so.
    fn value_of(&self, name: &[u8]) -> Option<&str> {
        let line = self.get();
        let head = line.get(..name.len())?;
        if !head.eq_ignore_ascii_case(name) {
            return None;
        }
        // A value cut at LINE_START bytes may end inside a UTF-8 sequence:
        // that, like any non-UTF-8 value, reads as no value.
        Some(
            std::str::from_utf8(&line[name.len()..])
                .unwrap_or("")
                .trim(),
        )
    }
}

fn new_head() -> State {
    State::Head {
        len: 0,
        prev: b'\n',
        line: LineStart::default(),
        cl: 0,
        te: None,
        upgrade: false,
        length: None,
    }
}

impl StrictIo {
    pub fn new(inner: TcpStream) -> StrictIo {
        StrictIo {
            inner,
            state: new_head(),
            rejected: false,
        }
    }

    pub fn into_inner(self) -> TcpStream {
        self.inner
    }

    /// Feeds bytes through the state machine; Err on the first ambiguity.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), &'static str> {
        while !data.is_empty() {
            match &mut self.state {
                State::Opaque => return Ok(()),
                State::Fixed(n) => {
                    let k = (*n).min(data.len() as u64);
                    *n -= k;
                    data = &data[k as usize..];
                    if *n == 0 {
                        self.state = new_head();
                    }
                }
                State::Head { .. } => {
                    let b = data[0];
                    data = &data[1..];
                    if let Some(next) = self.head_byte(b)? {
                        self.state = next;
                    }
                }
                State::Chunked(c) => {
                    let b = data[0];
                    match c {
                        Chunk::Data(n) => {
                            let k = (*n).min(data.len() as u64);
                            *n -= k;
                            data = &data[k as usize..];
                            if *n == 0 {
                                *c = Chunk::DataEnd { cr: false };
                            }
                            continue;
                        }
                        Chunk::Size {
                            digits,
                            value,
                            ext,
                            cr,
                        } => {
                            data = &data[1..];
                            match (b, *cr) {
                                (b'\n', true) => {
                                    if *digits == 0 {
                                        return Err("invalid chunk size");
                                    }
                                    *c = if *value == 0 {
                                        Chunk::Trailer {
                                            line_len: 0,
                                            cr: false,
                                        }
                                    } else {
                                        Chunk::Data(*value)
                                    };
                                }
                                (_, true) => return Err("bare CR in chunk size line"),
                                (b'\r', false) => *cr = true,
                                (b'\n', false) => return Err("bare LF in chunk size line"),
                                (b';', false) if *digits > 0 => *ext = true,
                                (_, false) if *ext => {}
                                (h, false) if h.is_ascii_hexdigit() => {
                                    if *digits >= 15 {
                                        return Err("chunk size too large");
                                    }
                                    *digits += 1;
                                    *value = *value * 16
                                        + u64::from((h as char).to_digit(16).unwrap_or(0));
                                }
                                _ => return Err("invalid chunk size"),
                            }
                        }
                        Chunk::DataEnd { cr } => {
                            data = &data[1..];
                            match (b, *cr) {
                                (b'\r', false) => *cr = true,
                                (b'\n', true) => {
                                    *c = Chunk::Size {
                                        digits: 0,
                                        value: 0,
                                        ext: false,
                                        cr: false,
                                    }
                                }
                                _ => return Err("chunk data not followed by CRLF"),
                            }
                        }
                        Chunk::Trailer { line_len, cr } => {
                            data = &data[1..];
                            match (b, *cr) {
                                (b'\r', false) => *cr = true,
                                (b'\n', true) if *line_len == 0 => self.state = new_head(),
                                (b'\n', true) => {
                                    *line_len = 0;
                                    *cr = false;
                                }
                                (_, true) | (b'\n', false) => {
                                    return Err("bare CR or LF in trailer")
                                }
                                _ => *line_len += 1,
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// One head byte; returns the next state when the head ends.
    fn head_byte(&mut self, b: u8) -> Result<Option<State>, &'static str> {
        let State::Head {
            len,
            prev,
            line,
            cl,
            te,
            upgrade,
            length,
        } = &mut self.state
        else {
            return Ok(None);
        };
        *len += 1;
        if *len > MAX_SCAN {
            // hyper answers 431 for heads this long; stop scanning.
            return Ok(Some(State::Opaque));
        }
        let last = *prev;
        *prev = b;
        if last == b'\r' && b != b'\n' {
            return Err("bare CR in request head");
        }
        if b == b'\r' {
            return Ok(None);
        }
        if b != b'\n' {
            line.push(b);
            return Ok(None);
        }
        if last != b'\r' {
            // Leading empty lines before a request line are tolerated by RFC 9112
            // only as CRLF; anything else is a bare LF.
            return Err("bare LF in request head");
        }
        if line.len == 0 {
            if *len <= 2 {
                // A CRLF between requests: ignore it.
                *len = 0;
                return Ok(None);
            }
            let next = match (*cl, *te, *upgrade) {
                (_, _, true) => State::Opaque,
                (n, Some(_), _) if n > 0 => {
                    return Err("both Content-Length and Transfer-Encoding")
                }
                (n, _, _) if n > 1 => return Err("repeated Content-Length"),
                (_, Some(true), _) => State::Chunked(Chunk::Size {
                    digits: 0,
                    value: 0,
                    ext: false,
                    cr: false,
                }),
                (_, Some(false), _) => return Err("Transfer-Encoding must end with chunked"),
                _ => match length.take() {
                    Some(n) if n > 0 => State::Fixed(n),
                    _ => new_head(),
                },
            };
            return Ok(Some(next));
        }
        if let Some(v) = line.value_of(b"content-length:") {
            *cl += 1;
            *length = v.parse().ok();
        } else if let Some(v) = line.value_of(b"transfer-encoding:") {
            // The line is cut at LINE_START bytes; longer values are judged
            // by hyper and the service-level check.
            let chunked_last = v
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            *te = Some(te.unwrap_or(true) && chunked_last);
        } else if line.value_of(b"upgrade:").is_some() {
            *upgrade = true;
        }
        line.len = 0;
        Ok(None)
    }
}

impl AsyncRead for StrictIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.rejected {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request rejected",
            )));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let in_head = matches!(this.state, State::Head { .. });
        if let Err(reason) = this.scan(&buf.filled()[before..]) {
            // Nothing of the offending read reaches hyper.
            buf.set_filled(before);
            this.rejected = true;
            tracing::info!("rejected a request: {reason}");
            if in_head {
                // No request of this head was dispatched: answer it ourselves.
                let _ = this.inner.try_write(BAD_REQUEST);
            }
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, reason)));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StrictIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(chunks: &[&[u8]]) -> Result<(), &'static str> {
        // A real socket is not needed for the state machine.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let s = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let mut io = StrictIo::new(s);
            for c in chunks {
                io.scan(c)?;
            }
            Ok(())
        })
    }

    #[test]
    fn accepts_normal_traffic_split_anywhere() {
        let req = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(scan_all(&[req]), Ok(()));
        let pieces: Vec<&[u8]> = req.chunks(3).collect();
        assert_eq!(scan_all(&pieces), Ok(()));
    }

    #[test]
    fn rejects_ambiguous_framing() {
        for bad in [
            &b"GET / HTTP/1.1\nHost: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nA: 1\rB: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n",
        ] {
            assert!(
                scan_all(&[bad]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn stops_after_upgrade() {
        let req =
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85\n\n";
        assert_eq!(scan_all(&[req]), Ok(()));
    }
}
