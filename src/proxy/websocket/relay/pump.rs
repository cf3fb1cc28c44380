//! One direction's loop: read a burst, walk it, write what goes on; act on
//! close orders, pings and the idle limit; close the far side when the
//! source ends.

use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Interval;
use tokio_util::sync::CancellationToken;

use super::super::frame::{self, OP_PING};
use super::direction::{Dir, Side};
use super::io::BURST;
use super::order::{Order, Shared};
use super::walk::{process, Walked};
use super::{Settings, GOING_AWAY, INTERNAL, SERVICE_RESTART};
use crate::supervisor::exit_seen;

/// The write buffer kept between bursts, at most (a small message's
/// worth); a larger one is freed once written.
const KEEP_OUT: usize = 1024;

/// What the loop does after a burst.
enum Step {
    Go,
    Stop,
}

/// One direction: read `src`, write `dir.dst`, until `src` ends.
///
/// A plain fn returning an `async move` block rather than an `async fn`:
/// an async fn keeps a second copy of its arguments in its state, and this
/// state lives as long as the connection.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn pump<'a, W, R>(
    dir: Dir<W>,
    src: R,
    pre: Bytes,
    shared: &'a Shared,
    settings: &'a Settings,
    gone: &'a CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'a
where
    W: AsyncWrite + Send + Unpin + 'a,
    R: AsyncRead + Send + Unpin + 'a,
{
    let mut p = Pump {
        timers: Timers::new(dir.side, settings),
        tick: None,
        dir,
        src,
        out: Vec::new(),
        shared,
        settings,
        ordered: false,
    };
    if !pre.is_empty() && process(&mut p.dir, &pre, &mut p.out, shared, settings) == Walked::AsIs {
        p.out.extend_from_slice(&pre);
    }
    // Even when empty, these bytes share hyper's connection read buffer:
    // holding them would keep that buffer alive for the connection's life.
    drop(pre);
    async move {
        // Made in the task: a timer needs the runtime.
        p.tick = p.timers.interval();
        poll_fn(|cx| p.poll(cx)).await;
        finish(&mut p.dir, &mut p.out, gone).await;
    }
}

/// One direction's state while it relays. Built before the future that
/// owns it, so the future keeps one copy of it, and polled by one closure
/// that borrows it whole.
struct Pump<'a, W, R> {
    dir: Dir<W>,
    src: R,
    /// What the destination has not taken yet.
    out: Vec<u8>,
    shared: &'a Shared,
    settings: &'a Settings,
    timers: Timers,
    tick: Option<Interval>,
    /// The close order was acted on.
    ordered: bool,
}

impl<W: AsyncWrite + Unpin, R: AsyncRead + Unpin> Pump<'_, W, R> {
    /// Relays until the source ends or either side fails. One hand-written
    /// loop rather than a `select!` in an async loop: each wake reads a
    /// burst and, in the same pass, polls the read again to wait, without
    /// building the branch futures twice.
    ///
    /// Order of each pass: what is left to write goes first (nothing else
    /// until it is written), then a close order (so a busy source cannot
    /// starve it), then the timers, then the next burst.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (dir, out, shared) = (&mut self.dir, &mut self.out, self.shared);
        loop {
            if !out.is_empty() && ready!(flush(cx, dir, out)).is_err() {
                return Poll::Ready(());
            }
            if !self.ordered && !dir.close_to_dst && shared.current().is_some() {
                self.ordered = true;
                on_order(dir, shared, out);
                continue;
            }
            if let Some(tick) = self.tick.as_mut() {
                if tick.poll_tick(cx).is_ready() {
                    self.timers.on_tick(dir, shared, out);
                    continue;
                }
            }
            let step = ready!(burst(cx, &mut self.src, dir, out, shared, self.settings));
            if let Step::Stop = step {
                return Poll::Ready(());
            }
        }
    }
}

/// Reads a burst into a buffer on this call's stack and walks it; `Stop`
/// once the source ends or the destination fails. (tokio's read notes a
/// short read as "drained", so the next poll waits without an EAGAIN read.)
fn burst<W: AsyncWrite + Unpin, R: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    src: &mut R,
    dir: &mut Dir<W>,
    out: &mut Vec<u8>,
    shared: &Shared,
    s: &Settings,
) -> Poll<Step> {
    let mut space = [MaybeUninit::<u8>::uninit(); BURST];
    let mut buf = ReadBuf::uninit(&mut space);
    let read = ready!(Pin::new(src).poll_read(cx, &mut buf));
    if read.is_err() || buf.filled().is_empty() {
        return Poll::Ready(Step::Stop);
    }
    // Only the idle limit (watched from the other direction too) reads
    // this clock.
    if s.idle_timeout.is_some() {
        shared.touch();
    }
    if dir.failed || process(dir, buf.filled(), out, shared, s) == Walked::Into {
        return Poll::Ready(Step::Go);
    }
    // The usual read, whole frames passed as they are: written from where
    // they were read; only what the destination does not take is copied.
    let data = buf.filled();
    match Pin::new(&mut dir.dst).poll_write(cx, data) {
        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Step::Stop),
        Poll::Ready(Ok(n)) => out.extend_from_slice(&data[n..]),
        Poll::Pending => out.extend_from_slice(data),
    }
    Poll::Ready(Step::Go)
}

/// Writes `out` until it is empty, in the poll that filled it: most bursts
/// go out whole, at once. A write of zero bytes is a failure, as in
/// `write_all`.
fn flush<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    dir: &mut Dir<W>,
    out: &mut Vec<u8>,
) -> Poll<std::io::Result<()>> {
    while !out.is_empty() {
        match ready!(Pin::new(&mut dir.dst).poll_write(cx, out)) {
            Ok(n) if n == out.len() => emptied(out),
            Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => drop(out.drain(..n)),
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

/// A close order: close now if between frames (otherwise `walk` closes
/// at the end of the current frame). `run` times the grace.
fn on_order<W>(dir: &mut Dir<W>, shared: &Shared, out: &mut Vec<u8>) {
    if dir.at_boundary() {
        dir.inject_order(shared, out);
    }
}

/// Pings and the idle limit; both only on the app-to-client direction.
struct Timers {
    ping: Option<Duration>,
    idle: Option<Duration>,
}

impl Timers {
    fn new(side: Side, s: &Settings) -> Timers {
        let downstream = side == Side::Downstream;
        Timers {
            ping: s.ping_interval.filter(|_| downstream),
            idle: s.idle_timeout.filter(|_| downstream),
        }
    }

    /// A timer only when pings or the idle limit are on: idle connections
    /// are the common case and each timer costs memory.
    fn interval(&self) -> Option<Interval> {
        self.ping.or(self.idle).map(|every| {
            let mut t = tokio::time::interval(every);
            t.reset();
            t
        })
    }

    fn on_tick<W>(&self, dir: &Dir<W>, shared: &Shared, out: &mut Vec<u8>) {
        if let Some(limit) = self.idle {
            if shared.idle_for() >= limit {
                shared.issue(Order::IDLE);
                return;
            }
        }
        if self.ping.is_some() && dir.at_boundary() && !dir.close_to_dst {
            out.extend_from_slice(&frame::build(OP_PING, 0, b"hpgate", None));
        }
    }
}

/// The source ended: if the destination never got a close frame, send
/// one, then end the destination's stream.
async fn finish<W: AsyncWrite + Unpin>(
    dir: &mut Dir<W>,
    out: &mut Vec<u8>,
    gone: &CancellationToken,
) {
    if !dir.close_to_dst {
        if dir.side == Side::Downstream {
            // The kernel closes a dead process's sockets before the
            // supervisor reaps it: give the exit a moment to be seen.
            exit_seen(gone).await;
        }
        let (code, reason) = match dir.side {
            Side::Downstream if gone.is_cancelled() => {
                (SERVICE_RESTART, "the app closed the connection")
            }
            Side::Downstream => (INTERNAL, "the app closed the connection"),
            Side::Upstream => (GOING_AWAY, "the client went away"),
        };
        if dir.at_boundary() {
            out.extend_from_slice(&frame::close(code, reason, dir.mask()));
        }
        let _ = write(dir, out).await;
    }
    let _ = dir.dst.shutdown().await;
}

/// Writes and empties `out`: what `burst` could not write at once.
async fn write<W: AsyncWrite + Unpin>(dir: &mut Dir<W>, out: &mut Vec<u8>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let r = dir.dst.write_all(out).await;
    emptied(out);
    r
}

/// Clears `out`, and frees it unless it is small: an idle connection keeps
/// at most `KEEP_OUT` bytes per direction.
fn emptied(out: &mut Vec<u8>) {
    out.clear();
    if out.capacity() > KEEP_OUT {
        *out = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_buffer_grown_past_keep_out_is_freed_once_empty() {
        let mut small = Vec::with_capacity(64);
        small.extend_from_slice(b"a message");
        emptied(&mut small);
        assert!(
            small.is_empty() && small.capacity() >= 64,
            "a small one is kept"
        );
        let mut large = vec![0u8; BURST];
        emptied(&mut large);
        assert_eq!(large.capacity(), 0, "a burst-sized one is freed");
    }
}
