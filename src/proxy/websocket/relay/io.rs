//! What the relay needs from a stream: two halves that read into a buffer
//! the caller lends.
//!
//! The relay reads each burst into a buffer on the stack of the call that
//! polls the read (`pump`), so no buffer is held while a connection is
//! idle and none is allocated per burst. `TcpStream` splits into owned
//! halves that read and write with the system calls themselves
//! (`direct_io`); any other `AsyncRead + AsyncWrite` stream (TLS, HTTP/2,
//! `tokio::io::duplex` in tests) is wrapped in `Generic` and split with
//! `tokio::io::split`.

use std::task::Context;

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::proxy::direct_io::{self, RecvHalf, SendHalf};

/// Bytes read per burst, at most.
pub const BURST: usize = 16 * 1024;

/// A stream the relay can run over.
pub trait Io: Send + 'static {
    type Read: AsyncRead + Send + Unpin;
    type Write: AsyncWrite + Send + Unpin;
    /// Puts `cx`'s waker in the stream's readiness slots, releasing the
    /// wakers a previous owner left there (see `run`).
    fn adopt(&mut self, cx: &mut Context<'_>);
    fn split(self) -> (Self::Read, Self::Write);
}

impl Io for TcpStream {
    type Read = RecvHalf;
    type Write = SendHalf;

    fn adopt(&mut self, cx: &mut Context<'_>) {
        let _ = self.poll_read_ready(cx);
        let _ = self.poll_write_ready(cx);
    }

    fn split(self) -> (RecvHalf, SendHalf) {
        direct_io::split(self)
    }
}

/// Any `AsyncRead + AsyncWrite` stream (TLS, an HTTP/2 stream), split
/// with `tokio::io::split`.
pub struct Generic<T>(pub T);

impl<T: AsyncRead + AsyncWrite + Send + 'static> Io for Generic<T> {
    type Read = ReadHalf<T>;
    type Write = WriteHalf<T>;

    /// Nothing to do: such a stream has no readiness slot of its own.
    fn adopt(&mut self, _cx: &mut Context<'_>) {}

    fn split(self) -> (ReadHalf<T>, WriteHalf<T>) {
        tokio::io::split(self.0)
    }
}
