//! The request smuggling guard: a strict reader in front of hyper's HTTP/1
//! parser.
//!
//! hyper is lenient where a gateway must not be: it accepts bare LF line
//! ends, folds two identical Content-Length headers into one, and lets
//! Transfer-Encoding override Content-Length. Two parsers that disagree on
//! where a request ends are how requests get smuggled, so every byte a
//! client sends passes `scanner.rs` before hyper sees it, and the first
//! ambiguity ends the connection with the refusal `error.rs` renders.
//!
//! A refused head was never dispatched, so hyper cannot answer it: the
//! guard lets the requests before it finish (hyper sees the end of the
//! stream where the refused head began) and writes the refusal itself when
//! hyper closes the connection. A refusal inside a body fails that body
//! (the service answers 400) and ends the connection.
//!
//! After an upgrade request the guard holds what follows until the service
//! says (through `gate.rs`) whether the app switched protocols: only a 101
//! turns the guard off. Owns the connection's read side; must not look at
//! what hyper writes.

mod gate;
mod plain_head;
mod rules;
mod scanner;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use gate::{Decision, UpgradeGate};
pub(crate) use scanner::{Phase, Scanner, Step};

use super::conn_tag::ConnTag;
use super::direct_io::Socket;
use super::error::ProxyError;

/// What the guard can sit on: a TCP stream, or TLS over one.
pub trait Stream: Socket + Send + 'static {
    /// Writes what fits at once without waiting, for the last words of a
    /// connection being dropped; a stream that cannot (TLS) does nothing.
    fn write_now(&self, _bytes: &[u8]) {}
}

impl Stream for TcpStream {
    fn write_now(&self, bytes: &[u8]) {
        let _ = self.try_write(bytes);
    }
}

impl Stream for tokio_rustls::server::TlsStream<TcpStream> {}

pub struct GuardedIo<S: Stream = TcpStream> {
    /// Always present; taken only by `into_parts`, which consumes self
    /// (a `Drop` type cannot give a field away otherwise).
    inner: Option<S>,
    scanner: Scanner,
    gate: Arc<UpgradeGate>,
    /// The connection a refusal is logged for.
    tag: ConnTag,
    /// Bytes read after an upgrade request, not yet given to hyper.
    held: Vec<u8>,
    held_at: usize,
    /// Waiting for the gate's answer before releasing anything more.
    paused: bool,
    state: Refused,
    /// Bytes the front (`proxy/front/`) read and scanned but did not
    /// serve: hyper gets them first, unscanned a second time.
    prefix: Bytes,
}

/// The last scan the front made before handing its connection to hyper,
/// and where in its buffer that scan's bytes began.
pub struct LastScan {
    pub from: usize,
    pub step: Result<Step, ProxyError>,
}

/// Where the connection is after a refusal.
enum Refused {
    No,
    /// In a head: hyper sees the end of the stream; these bytes (the
    /// refusal) go out when it closes, from `written` on.
    Head {
        wire: Vec<u8>,
        written: usize,
    },
    /// In a body: reads fail.
    Body,
}

impl<S: Stream> GuardedIo<S> {
    pub fn new(inner: S, gate: Arc<UpgradeGate>, tag: ConnTag) -> GuardedIo<S> {
        GuardedIo {
            inner: Some(inner),
            scanner: Scanner::default(),
            gate,
            tag,
            held: Vec::new(),
            held_at: 0,
            paused: false,
            state: Refused::No,
            prefix: Bytes::new(),
        }
    }

    /// Takes over a connection from the front: `buf` holds what it read
    /// and did not serve, scanned by `scanner`; `last` is its last scan,
    /// whose pause or refusal applies here as if this guard had met it.
    pub fn resume(
        inner: S,
        gate: Arc<UpgradeGate>,
        tag: ConnTag,
        scanner: Scanner,
        mut buf: BytesMut,
        last: LastScan,
    ) -> GuardedIo<S> {
        let mut io = GuardedIo::new(inner, gate, tag);
        io.scanner = scanner;
        match last.step {
            Ok(Step::All) => {}
            Ok(Step::Pause(n)) => {
                io.held = buf.split_off(last.from + n).to_vec();
                io.paused = true;
            }
            Err(e) => match io.reject(e) {
                Ok(keep) => buf.truncate(last.from + keep),
                Err(_) => buf.truncate(last.from),
            },
        }
        if io.scanner.take_expect() {
            io.gate.expect();
        }
        io.prefix = buf.freeze();
        io
    }

    /// The socket and any bytes read but not yet given to hyper (after a
    /// 101 they belong to the new protocol).
    pub fn into_parts(mut self) -> Option<(S, Bytes)> {
        let mut rest = BytesMut::from(&self.prefix[..]);
        rest.extend_from_slice(&self.held[self.held_at..]);
        let rest = rest.freeze();
        Some((self.inner.take()?, rest))
    }

    fn sock(&mut self) -> io::Result<Pin<&mut S>> {
        match self.inner.as_mut() {
            Some(s) => Ok(Pin::new(s)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Scans what the socket gave (already in `buf` after `before`); holds
    /// the part after a finished upgrade request.
    fn scan_fresh(&mut self, buf: &mut ReadBuf<'_>, before: usize) -> io::Result<()> {
        let fresh = &buf.filled()[before..];
        match self.scanner.feed(fresh) {
            Err(e) => {
                let keep = self.reject(e)?;
                buf.set_filled(before + keep);
                Ok(())
            }
            Ok(Step::All) => Ok(()),
            Ok(Step::Pause(n)) => {
                self.held.clear();
                self.held.extend_from_slice(&fresh[n..]);
                self.held_at = 0;
                buf.set_filled(before + n);
                self.paused = true;
                Ok(())
            }
        }
    }

    /// Gives held bytes to hyper, scanning them as they go.
    fn release_held(&mut self, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
        let avail = &self.held[self.held_at..];
        let k = avail.len().min(buf.remaining());
        let n = match self.scanner.feed(&avail[..k]) {
            Err(e) => {
                let held = std::mem::take(&mut self.held);
                let keep = self.reject(e)?;
                buf.put_slice(&held[self.held_at..self.held_at + keep]);
                self.held_at = 0;
                return Ok(keep);
            }
            Ok(Step::All) => k,
            Ok(Step::Pause(n)) => {
                self.paused = true;
                n
            }
        };
        buf.put_slice(&avail[..n]);
        self.held_at += n;
        if self.held_at == self.held.len() {
            // Free it: a held burst is rare and may be large.
            self.held = Vec::new();
            self.held_at = 0;
        }
        Ok(n)
    }

    /// Ends the connection after the bytes that may still go to hyper
    /// (returned: the complete requests before a refused head).
    fn reject(&mut self, e: ProxyError) -> io::Result<usize> {
        let ConnTag { id, peer } = self.tag;
        tracing::info!(conn = id, %peer, "refused a request: {e}");
        let Some(keep) = self.scanner.undispatched() else {
            self.state = Refused::Body;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
        };
        self.state = Refused::Head {
            wire: e.to_wire(),
            written: 0,
        };
        Ok(keep)
    }

    /// Writes what is left of a refusal; Ready once it is all out.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Refused::Head { wire, written } = &mut self.state {
            if *written == wire.len() {
                break;
            }
            let n = ready!(self
                .inner
                .as_mut()
                .map_or(Poll::Ready(Err(io::ErrorKind::NotConnected.into())), |s| {
                    Pin::new(s).poll_write(cx, &wire[*written..])
                }))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: Stream> AsyncRead for GuardedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.state {
                Refused::No => {}
                // hyper finishes what it has, then closes.
                Refused::Head { .. } => return Poll::Ready(Ok(())),
                Refused::Body => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "request refused",
                    )))
                }
            }
            if this.paused {
                let switched = ready!(this.gate.poll_decision(cx));
                this.scanner.resume(switched);
                this.paused = false;
            }
            let released = if this.held_at < this.held.len() {
                this.release_held(buf)?
            } else {
                let before = buf.filled().len();
                ready!(this.sock()?.get_mut().poll_recv(cx, buf))?;
                let got = buf.filled().len() - before;
                this.scan_fresh(buf, before)?;
                if got == 0 {
                    return Poll::Ready(Ok(())); // end of stream
                }
                buf.filled().len() - before
            };
            if this.scanner.take_expect() {
                this.gate.expect();
            }
            if released > 0 {
                return Poll::Ready(Ok(()));
            }
            // Everything read so far is held: wait for the gate.
        }
    }
}

impl<S: Stream> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().sock()?.get_mut().poll_send(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .sock()?
            .get_mut()
            .poll_send_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().sock()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_refusal(cx))?;
        this.sock()?.poll_shutdown(cx)
    }
}

impl<S: Stream> Drop for GuardedIo<S> {
    fn drop(&mut self) {
        // hyper may drop the connection without shutting it down (after an
        // error): the refusal still goes out, best effort.
        if let Refused::Head { wire, written } = &self.state {
            let rest = wire.get(*written..).unwrap_or_default();
            if let (Some(sock), false) = (&self.inner, rest.is_empty()) {
                sock.write_now(rest);
            }
        }
    }
}
