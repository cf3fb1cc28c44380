//! The app connection's byte stream, with a check of every response head.
//!
//! hyper's client parser takes a bare LF as a line end, so an app header
//! `X-A: a<LF>Set-Cookie: evil=2` would reach the client as two headers.
//! A gateway must not reinterpret what the app sent: this wrapper scans
//! response heads (only heads; bodies pass unlooked-at) and fails the read
//! at a bare LF or CR, which the proxy answers with 502 as the app's fault.
//!
//! Where a head starts is known without parsing bodies: a new connection
//! starts with one, and a pooled connection is handed out only after its
//! previous response body was read to the end, when the pool re-arms the
//! scan (`HeadMark`). Informational (1xx) heads are followed by another
//! head; after a 101 the stream is not HTTP any more.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::direct_io::Socket;

/// The app's response head broke the line rules of RFC 9112 section 2.2.
#[derive(Debug, thiserror::Error)]
#[error("a bare {0} in its response head (hpgate refuses it rather than guess where a header line ends)")]
pub struct MalformedHead(&'static str);

impl MalformedHead {
    /// A line ended by LF alone.
    pub const BARE_LF: MalformedHead = MalformedHead("LF");
}

/// Set by the pool when the next bytes on a connection start a new head.
#[derive(Clone, Default)]
pub struct HeadMark(Arc<AtomicBool>);

impl HeadMark {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn take(&self) -> bool {
        self.0.load(Ordering::Acquire) && self.0.swap(false, Ordering::AcqRel)
    }
}

/// How far into a response head the scan is.
#[derive(Debug, Clone, Copy)]
struct Head {
    prev: u8,
    /// Bytes on the current line, line end excluded.
    line_len: usize,
    /// Non-empty lines so far (the status line is the first).
    lines: usize,
    /// The status code's three digits, taken from the status line.
    status: [u8; 3],
}

impl Head {
    fn new() -> Head {
        Head {
            prev: 0,
            line_len: 0,
            lines: 0,
            status: [0; 3],
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Scan {
    Head(Head),
    /// In a body: nothing to check until the pool says a head comes next.
    Body,
    /// After a 101: another protocol.
    Opaque,
}

/// What one head byte did.
enum Step {
    More,
    /// The head ended; the status code's digits.
    End([u8; 3]),
}

fn step(h: &mut Head, b: u8) -> Result<Step, MalformedHead> {
    let prev = std::mem::replace(&mut h.prev, b);
    if prev == b'\r' && b != b'\n' {
        return Err(MalformedHead("CR"));
    }
    match b {
        b'\n' if prev != b'\r' => Err(MalformedHead("LF")),
        b'\n' if h.line_len == 0 && h.lines > 0 => Ok(Step::End(h.status)),
        b'\n' => {
            if h.line_len > 0 {
                h.lines += 1;
            }
            h.line_len = 0;
            Ok(Step::More)
        }
        b'\r' => Ok(Step::More),
        _ => {
            // "HTTP/1.1 200": the digits are bytes 9 to 11 of the status line.
            if h.lines == 0 && (9..12).contains(&h.line_len) {
                h.status[h.line_len - 9] = b;
            }
            h.line_len += 1;
            Ok(Step::More)
        }
    }
}

/// Scans `bytes` from state `scan`; returns the state after them.
fn scan(mut state: Scan, bytes: &[u8]) -> Result<Scan, MalformedHead> {
    let mut i = 0;
    while i < bytes.len() {
        let Scan::Head(h) = &mut state else {
            return Ok(state);
        };
        if let Step::End(status) = step(h, bytes[i])? {
            state = match &status {
                b"101" => Scan::Opaque,
                [b'1', _, _] => Scan::Head(Head::new()),
                _ => Scan::Body,
            };
        }
        i += 1;
    }
    Ok(state)
}

/// Where the first response head in `bytes` ends (just past its empty
/// line), or None while it has not ended; a bare LF or CR on the way is
/// refused exactly as `AppIo` refuses it on hyper's path (the lean path,
/// `proxy/lean/`, parses its heads with this rule first). Jumps from line
/// end to line end rather than stepping byte by byte: the same verdict as
/// `head_end_by_steps`, which the fuzz target checks.
pub fn head_end(bytes: &[u8]) -> Result<Option<usize>, MalformedHead> {
    let mut lines = 0usize;
    let mut line_start = 0usize;
    loop {
        let Some(off) = memchr::memchr2(b'\r', b'\n', &bytes[line_start..]) else {
            return Ok(None);
        };
        let at = line_start + off;
        if bytes[at] == b'\n' {
            return Err(MalformedHead("LF"));
        }
        match bytes.get(at + 1) {
            None => return Ok(None),
            Some(b'\n') => {}
            Some(_) => return Err(MalformedHead("CR")),
        }
        if at == line_start && lines > 0 {
            return Ok(Some(at + 2));
        }
        if at > line_start {
            lines += 1;
        }
        line_start = at + 2;
    }
}

/// `head_end` by the byte-stepping rules `AppIo` uses (the reference the
/// fuzz target compares it with).
pub(crate) fn head_end_by_steps(bytes: &[u8]) -> Result<Option<usize>, MalformedHead> {
    let mut h = Head::new();
    for (i, &b) in bytes.iter().enumerate() {
        if let Step::End(_) = step(&mut h, b)? {
            return Ok(Some(i + 1));
        }
    }
    Ok(None)
}

/// For the fuzz targets (`src/fuzzing.rs`): where each response head of a
/// connection's first bytes ends, found one byte at a time, and whether
/// scanning them in two reads split at `split` agrees.
pub(crate) fn head_ends(bytes: &[u8], split: usize) -> Result<Vec<usize>, MalformedHead> {
    let (a, b) = bytes.split_at(split.min(bytes.len()));
    let two = scan(Scan::Head(Head::new()), a).and_then(|s| scan(s, b));
    let mut ends = Vec::new();
    let mut state = Scan::Head(Head::new());
    for (i, byte) in bytes.iter().enumerate() {
        let before = matches!(state, Scan::Head(h) if h.lines > 0 || h.line_len > 0);
        state = match scan(state, std::slice::from_ref(byte)) {
            Ok(s) => s,
            Err(e) => {
                assert!(
                    two.is_err(),
                    "split reads accepted what one-byte reads refused"
                );
                return Err(e);
            }
        };
        let fresh =
            matches!(state, Scan::Head(h) if h.lines == 0 && h.line_len == 0 && h.prev == 0);
        if before && (fresh || !matches!(state, Scan::Head(_))) {
            ends.push(i + 1);
        }
    }
    assert!(
        two.is_ok(),
        "split reads refused what one-byte reads accepted"
    );
    Ok(ends)
}

pub struct AppIo {
    inner: TcpStream,
    scan: Scan,
    mark: HeadMark,
}

impl AppIo {
    pub fn new(inner: TcpStream, mark: HeadMark) -> AppIo {
        AppIo {
            inner,
            scan: Scan::Head(Head::new()),
            mark,
        }
    }

    pub fn into_inner(self) -> TcpStream {
        self.inner
    }
}

impl AsyncRead for AppIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if matches!(this.scan, Scan::Body) && this.mark.take() {
            this.scan = Scan::Head(Head::new());
        }
        let before = buf.filled().len();
        std::task::ready!(this.inner.poll_recv(cx, buf))?;
        if !matches!(this.scan, Scan::Head(_)) {
            return Poll::Ready(Ok(()));
        }
        this.scan = scan(this.scan, &buf.filled()[before..])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for AppIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().inner.poll_send(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().inner.poll_send_vectored(cx, bufs)
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

/// The malformed-head error inside a failed exchange, if that is what it was.
pub fn malformed_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a MalformedHead> {
    let mut src: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(m) = s
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<MalformedHead>())
        {
            return Some(m);
        }
        src = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Result<Scan, MalformedHead> {
        chunks
            .iter()
            .try_fold(Scan::Head(Head::new()), |s, c| scan(s, c))
    }

    #[test]
    fn good_heads_end_in_the_body() {
        let r = run(&[b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody\nwith\rbare ends"]);
        assert!(matches!(r, Ok(Scan::Body)));
        // Split anywhere, even between CR and LF.
        let r = run(&[b"HTTP/1.1 200 OK\r", b"\nA: b\r\n\r", b"\n\n\n"]);
        assert!(matches!(r, Ok(Scan::Body)));
    }

    #[test]
    fn informational_heads_are_followed_by_another() {
        let r = run(&[b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n"]);
        assert!(r.is_err());
        let r =
            run(&[b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"]);
        assert!(matches!(r, Ok(Scan::Body)));
        let r = run(&[b"HTTP/1.1 101 Switching Protocols\r\n\r\n\n\r\x00"]);
        assert!(matches!(r, Ok(Scan::Opaque)));
    }

    #[test]
    fn bare_line_ends_are_refused() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: evil=2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: evil=2\r\n\r\n",
            b"HTTP/1.1 200 OK\nA: b\n\n",
            b"HTTP/1.1 200 OK\r\n\n",
            b"\nHTTP/1.1 200 OK\r\n\r\n",
        ] {
            assert!(run(&[bad]).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // A leading empty line is not the end of a head.
        let r = run(&[b"\r\nHTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n"]);
        assert!(r.is_err());
    }

    #[test]
    fn head_end_agrees_with_the_byte_steps() {
        let cases: [&[u8]; 12] = [
            b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody",
            b"\r\nHTTP/1.1 200 OK\r\n\r\n",
            b"\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\r",
            b"HTTP/1.1 200 OK\r\nA: b\r\n\r",
            b"HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\rC: d\r\n\r\n",
            b"HTTP/1.1 200 OK\n",
            b"HTTP/1.1 200 OK",
            b"",
            b"\r",
            b"\rx",
        ];
        for c in cases {
            let fast = head_end(c).map_err(|e| e.0);
            let steps = head_end_by_steps(c).map_err(|e| e.0);
            assert_eq!(fast, steps, "{:?}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn the_mark_is_taken_once() {
        let m = HeadMark::default();
        assert!(!m.take());
        m.set();
        assert!(m.take());
        assert!(!m.take());
    }
}
