//! What the relay needs from a stream: two halves, and reads that hold no
//! buffer while they wait.
//!
//! `TcpStream` waits on its readiness and allocates the read buffer only
//! once bytes are there. Any other `AsyncRead + AsyncWrite` stream (TLS,
//! HTTP/2, `tokio::io::duplex` in tests) is wrapped in `Generic`: it has no
//! readiness to wait on, so each poll allocates the burst buffer and frees
//! it again when nothing was read. Idle connections still hold no buffer;
//! the cost is an allocation per wake-up.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::io::poll_read_buf;

/// Bytes read per burst; allocated per burst, freed when idle.
pub const BURST: usize = 16 * 1024;

/// A stream the relay can run over.
pub trait Io: Send + 'static {
    type Read: Source;
    type Write: AsyncWrite + Send + Unpin;
    /// Puts `cx`'s waker in the stream's readiness slots, releasing the
    /// wakers a previous owner left there (see `run`).
    fn adopt(&mut self, cx: &mut Context<'_>);
    fn split(self) -> (Self::Read, Self::Write);
}

/// The read half: one burst at a time.
pub trait Source: Send + Unpin {
    /// `Ok(None)` at the end of the stream.
    fn poll_burst(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Vec<u8>>>>;
}

impl Io for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;

    fn adopt(&mut self, cx: &mut Context<'_>) {
        let _ = self.poll_read_ready(cx);
        let _ = self.poll_write_ready(cx);
    }

    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
}

impl Source for OwnedReadHalf {
    fn poll_burst(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Vec<u8>>>> {
        ready!(self.as_ref().poll_read_ready(cx))?;
        // tokio's read path rather than try_read: it notes a short read as
        // "drained", which saves the EAGAIN read that would follow every
        // message.
        read_burst(Pin::new(self), cx)
    }
}

/// Any `AsyncRead + AsyncWrite` stream, split with `tokio::io::split`.
// For TLS and HTTP/2 streams; only the unit tests build one yet.
#[cfg_attr(not(test), allow(dead_code))]
pub struct Generic<T>(pub T);

/// The read half of a `Generic` stream.
#[cfg_attr(not(test), allow(dead_code))]
pub struct GenericRead<T>(ReadHalf<T>);

impl<T: AsyncRead + AsyncWrite + Send + 'static> Io for Generic<T> {
    type Read = GenericRead<T>;
    type Write = WriteHalf<T>;

    /// Nothing to do: such a stream has no readiness slot of its own.
    fn adopt(&mut self, _cx: &mut Context<'_>) {}

    fn split(self) -> (GenericRead<T>, WriteHalf<T>) {
        let (rd, wr) = tokio::io::split(self.0);
        (GenericRead(rd), wr)
    }
}

impl<T: AsyncRead + Send> Source for GenericRead<T> {
    fn poll_burst(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Vec<u8>>>> {
        read_burst(Pin::new(&mut self.0), cx)
    }
}

/// One poll of `src` into a fresh burst buffer, dropped unless bytes came.
fn read_burst<R: AsyncRead>(
    src: Pin<&mut R>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Option<Vec<u8>>>> {
    let mut buf = Vec::with_capacity(BURST);
    match ready!(poll_read_buf(src, cx, &mut buf)) {
        Ok(0) => Poll::Ready(Ok(None)),
        Ok(_) => Poll::Ready(Ok(Some(buf))),
        Err(e) => Poll::Ready(Err(e)),
    }
}
