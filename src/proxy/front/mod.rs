//! The front: hpgate's own HTTP/1.1 server side for the common request,
//! as `proxy/lean/` is its own client side.
//!
//! A plain connection starts here. Each request head is read into one
//! buffer, passes the smuggling guard's scanner (the same one hyper's path
//! reads through) and is parsed once (`request.rs`); a GET or HEAD
//! without a body goes through `service::respond` like any request, and
//! its response is written by `response.rs`. The first request the front
//! does not serve itself (a body, an upgrade, `Expect`, HTTP/1.0, a head
//! httparse refuses, a refusal by the guard) hands the connection to
//! hyper for the rest of its life, with every byte read so far
//! (`GuardedIo::resume`): hyper's server stays the one that answers
//! everything unusual. Why: hyper's server costs a dispatcher, a second
//! buffer and a HeaderMap round trip per request; for small requests that
//! was a large part of hpgate's CPU (docs/benchmarks.md, issue 19).
//!
//! Owns the connection's keep-alive loop while it serves: the head timer
//! (the same limit hyper's server gets; it and the shutdown wait are the
//! connection's `Waits`, lent to each request), parsing a head only once its
//! blank line has arrived (a head trickled in byte by byte costs one parse,
//! not one per read), the close on shutdown between
//! requests, and `connection: close`. Must not check limits, Host or
//! anything else `service.rs` checks, and must not talk to the app.

mod request;
mod response;

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::Client;
use super::direct_io::Direct;
use super::guard::{GuardedIo, LastScan, Scanner, Step, Stream};
use super::poll_clock;
use super::service;
use super::waits::Waits;
use super::Gateway;
use request::Parsed;

/// The first read's room: most request heads fit many times over.
const READ_ROOM: usize = 8 * 1024;
/// Gathered response bytes kept between requests; more is freed.
const OUT_KEEP: usize = 64 * 1024;

/// The limits the front keeps, the same as hyper's server's.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a head (or the wait for the next one) may take.
    pub head_timeout: Duration,
    /// A head longer than this goes to hyper, which answers 431.
    pub max_head: usize,
}

/// How the front's part of a connection ended.
pub enum Ended<S: Stream> {
    /// The connection is done (closed, timed out, shut down, or failed).
    Closed,
    /// hyper serves the rest (boxed: rare, and large).
    HandOff(Box<GuardedIo<S>>),
}

/// Serves requests on `stream` until the connection ends or needs hyper.
pub async fn serve<S: Stream>(
    mut stream: S,
    gw: &Gateway,
    client: &Client,
    limits: Limits,
    stop: &CancellationToken,
) -> Ended<S> {
    let mut conn = Conn {
        buf: BytesMut::with_capacity(READ_ROOM),
        scanner: Scanner::default(),
        out: Vec::new(),
        waits: Waits::until_stopped(stop),
        scratch: request::Scratch::default(),
    };
    loop {
        let close = match conn.next_head(&mut stream, limits).await {
            Next::Request(close) => close,
            Next::Closed => return Ended::Closed,
            Next::HandOff(last) => {
                let gate = client.gate.clone();
                let tag = client.tag;
                let io = GuardedIo::resume(stream, gate, tag, conn.scanner, conn.buf, last);
                return Ended::HandOff(Box::new(io));
            }
        };
        let parts = &mut conn.scratch.parts;
        let head_request = parts.method == http::Method::HEAD;
        let resp = service::respond(gw, parts, None, client, &mut conn.waits).await;
        let close = close || conn.waits.stop.begun();
        let (parts, mut body) = resp.into_parts();
        let started = response::start(&mut conn.out, &parts, &body, head_request, close);
        drop(parts);
        // Written: the fields' bytes share the app connection's read
        // buffer, which can then take the body's next read in place.
        drop(body.take_passed());
        let body = std::pin::pin!(body);
        match response::send(&mut Direct(&mut stream), &mut conn.out, body, started).await {
            Ok(true) if !conn.waits.stop.begun() => {}
            Ok(_) => return Ended::Closed,
            Err(e) => {
                tracing::debug!("connection ended: {e}");
                return Ended::Closed;
            }
        }
        if conn.out.capacity() > OUT_KEEP {
            conn.out = Vec::new();
        }
    }
}

/// What the front holds between requests.
struct Conn {
    /// Read and scanned, not yet served.
    buf: BytesMut,
    scanner: Scanner,
    /// The response being gathered (kept for the next one).
    out: Vec<u8>,
    /// The connection's timer and cancellation waits, lent to each request.
    waits: Waits,
    scratch: request::Scratch,
}

enum Next {
    /// A request, in `scratch.parts`; whether the client asked to close.
    Request(bool),
    Closed,
    HandOff(LastScan),
}

impl Conn {
    /// The next head the front serves, or why there is none.
    async fn next_head<S: Stream>(&mut self, stream: &mut S, limits: Limits) -> Next {
        let deadline = Instant::from_std(poll_clock::now()) + limits.head_timeout;
        // Where a head's end not yet looked for may begin: a head sent a
        // byte at a time must not be parsed again from its start per byte.
        let mut unseen = 0;
        loop {
            if may_end_head(&self.buf[unseen..]) {
                match request::parse(&mut self.buf, &mut self.scratch) {
                    Parsed::Lean(close) => return Next::Request(close),
                    Parsed::Other => return Next::HandOff(all_scanned()),
                    Parsed::Partial => {}
                }
            }
            if self.buf.len() > limits.max_head {
                return Next::HandOff(all_scanned());
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(READ_ROOM);
            }
            let from = self.buf.len();
            let mut direct = Direct(&mut *stream);
            let read = tokio::select! {
                biased;
                r = direct.read_buf(&mut self.buf) => r,
                _ = self.waits.clock.until(deadline) => {
                    tracing::debug!("no request head within {:?}", limits.head_timeout);
                    return Next::Closed;
                }
                _ = self.waits.stop.wait() => return Next::Closed,
            };
            match read {
                Ok(0) => return Next::Closed,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("connection ended: {e}");
                    return Next::Closed;
                }
            }
            match self.scanner.feed(&self.buf[from..]) {
                Ok(Step::All) => {}
                step => return Next::HandOff(LastScan { from, step }),
            }
            // A CRLFCRLF may straddle the old bytes and the new.
            unseen = from.saturating_sub(3);
        }
    }
}

/// Whether these bytes hold the blank line that ends a head (the guard
/// lets only CRLF line ends through, so no bare-LF form needs looking for).
fn may_end_head(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == b"\r\n\r\n")
}

/// A hand-off with everything in the buffer scanned and accepted.
fn all_scanned() -> LastScan {
    LastScan {
        from: 0,
        step: Ok(Step::All),
    }
}
