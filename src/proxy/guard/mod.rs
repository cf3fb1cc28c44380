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
//! After an upgrade request the guard holds what follows until the service
//! says (through `gate.rs`) whether the app switched protocols: only a 101
//! turns the guard off. Owns the connection's read side; must not look at
//! what hyper writes.

mod gate;
mod rules;
mod scanner;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use gate::{Decision, UpgradeGate};
use scanner::{Scanner, Step};

use super::error::ProxyError;

pub struct GuardedIo {
    inner: TcpStream,
    scanner: Scanner,
    gate: Arc<UpgradeGate>,
    /// Bytes read after an upgrade request, not yet given to hyper.
    held: Vec<u8>,
    held_at: usize,
    /// Waiting for the gate's answer before releasing anything more.
    paused: bool,
    rejected: bool,
}

impl GuardedIo {
    pub fn new(inner: TcpStream, gate: Arc<UpgradeGate>) -> GuardedIo {
        GuardedIo {
            inner,
            scanner: Scanner::default(),
            gate,
            held: Vec::new(),
            held_at: 0,
            paused: false,
            rejected: false,
        }
    }

    /// The socket and any bytes read but not yet given to hyper (after a
    /// 101 they belong to the new protocol).
    pub fn into_parts(self) -> (TcpStream, Bytes) {
        let rest = Bytes::copy_from_slice(&self.held[self.held_at..]);
        (self.inner, rest)
    }

    /// Scans what the socket gave (already in `buf` after `before`); holds
    /// the part after a finished upgrade request.
    fn scan_fresh(&mut self, buf: &mut ReadBuf<'_>, before: usize) -> io::Result<()> {
        let fresh = &buf.filled()[before..];
        match self.scanner.feed(fresh) {
            Err(e) => {
                buf.set_filled(before);
                Err(self.reject(e))
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
            Err(e) => return Err(self.reject(e)),
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

    /// Ends the connection. A refused head was never dispatched, so nobody
    /// else will answer it: write the refusal here (best effort, it is small).
    fn reject(&mut self, e: ProxyError) -> io::Error {
        self.rejected = true;
        tracing::info!("refused a request: {e}");
        if self.scanner.in_head() {
            let _ = self.inner.try_write(&e.to_wire());
        }
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.rejected {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request refused",
                )));
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
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
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

impl AsyncWrite for GuardedIo {
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
