//! The app's response body on the lean path, read straight from the app's
//! socket in the client connection's task (no driver task, no channel).
//!
//! Owns the body's framing (`head::Framing`, `chunked.rs`) and the socket
//! while the body is read; hands the socket back to the pool when the body
//! ended cleanly and the app keeps it alive, closes it otherwise. Must not
//! time, count or log anything: `body.rs`'s `AppBody` wraps this as it
//! wraps hyper's body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::chunked::{Chunked, Decoded};
use super::head::Framing;
use super::passed::Passed;
use crate::proxy::direct_io::Direct;
use crate::proxy::pool::raw::{RawConn, RawPool};
use crate::proxy::request_body::BoxError;

/// Room made in the read buffer before each read.
const READ_ROOM: usize = 16 * 1024;

/// The app closed the connection before the body's framing said it ended.
#[derive(Debug, thiserror::Error)]
#[error("the app closed the connection before the end of the response body")]
pub struct EndedEarly;

pub struct LeanBody {
    /// The socket, while the body is being read.
    conn: Option<RawConn>,
    pool: Arc<RawPool>,
    /// Bytes read past what has been handed on.
    buf: BytesMut,
    framing: Framing,
    chunked: Chunked,
    keep_alive: bool,
    done: bool,
    /// A failure held back for one poll (see `fail`).
    failure: Option<BoxError>,
    /// The head's fields as bytes, when they are not in its map
    /// (`passed.rs`): they travel with the body to whoever writes the head.
    pub passed: Option<Passed>,
}

impl LeanBody {
    /// The body that follows a head; `buf` holds what was read past it.
    pub fn new(
        conn: RawConn,
        pool: Arc<RawPool>,
        buf: BytesMut,
        framing: Framing,
        keep_alive: bool,
    ) -> LeanBody {
        let mut body = LeanBody {
            conn: Some(conn),
            pool,
            buf,
            framing,
            chunked: Chunked::default(),
            keep_alive,
            done: false,
            failure: None,
            passed: None,
        };
        // hyper never polls a body that is already at its end.
        if matches!(framing, Framing::Empty | Framing::Length(0)) {
            body.finish();
        }
        body
    }

    /// The body ended: the socket goes back to the pool if the app keeps
    /// it and nothing unasked-for follows.
    fn finish(&mut self) {
        self.done = true;
        if let Some(mut conn) = self.conn.take() {
            if self.keep_alive && self.buf.is_empty() {
                // The buffer goes with the socket for its next exchange.
                conn.buf = std::mem::take(&mut self.buf);
                self.pool.put(conn);
            }
        }
    }

    /// The next piece of the body from what has been read, if any.
    fn take_buffered(&mut self) -> Result<Option<Bytes>, BoxError> {
        if self.buf.is_empty() && self.framing != Framing::Chunked {
            return Ok(None);
        }
        match self.framing {
            Framing::Empty => Ok(None),
            Framing::Length(left) => {
                let n = (left as usize).min(self.buf.len());
                self.framing = Framing::Length(left - n as u64);
                let data = self.buf.split_to(n).freeze();
                if left == n as u64 {
                    self.finish();
                }
                Ok(Some(data))
            }
            Framing::Close => Ok(Some(self.buf.split().freeze())),
            Framing::Chunked => match self.chunked.decode(&mut self.buf)? {
                Decoded::Data(d) => Ok(Some(d)),
                Decoded::More => Ok(None),
                Decoded::End => {
                    self.finish();
                    Ok(None)
                }
            },
        }
    }
}

impl LeanBody {
    /// The body broke (the app closed early or sent bad chunks). The error
    /// is held back for one poll: hyper ends the client connection at a
    /// body error without flushing what it already holds, and the head and
    /// data read in the same wake-up must still reach the client, as they
    /// do on hyper's path, where the error comes a wake-up later.
    fn fail<T>(&mut self, e: BoxError, cx: &mut Context<'_>) -> Poll<T> {
        self.conn = None;
        self.done = true;
        self.failure = Some(e);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Body for LeanBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(e) = this.failure.take() {
            return Poll::Ready(Some(Err(e)));
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.take_buffered() {
                Ok(Some(d)) if !d.is_empty() => return Poll::Ready(Some(Ok(Frame::data(d)))),
                Ok(_) if this.done => return Poll::Ready(None),
                Ok(_) => {}
                Err(e) => return this.fail(e, cx),
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            this.buf.reserve(READ_ROOM);
            let mut direct = Direct(&mut conn.stream);
            let read = tokio_util::io::poll_read_buf(Pin::new(&mut direct), cx, &mut this.buf);
            match ready!(read) {
                Ok(0) if this.framing == Framing::Close => {
                    this.keep_alive = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(EndedEarly.into(), cx),
                Ok(_) => {}
                Err(e) => return this.fail(e.into(), cx),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.failure.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
