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
use super::walk::process;
use super::{Settings, GOING_AWAY, INTERNAL, SERVICE_RESTART};
use crate::supervisor::exit_seen;

/// The write buffer kept between bursts, at most (a small message's
/// worth); a larger one is freed once written.
const KEEP_OUT: usize = 1024;

/// What the loop does after an event.
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
    mut dir: Dir<W>,
    mut src: R,
    pre: Bytes,
    shared: &'a Shared,
    settings: &'a Settings,
    gone: &'a CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'a
where
    W: AsyncWrite + Send + Unpin + 'a,
    R: AsyncRead + Send + Unpin + 'a,
{
    async move {
        let mut ordered = false;
        let mut out = Vec::new();
        if !pre.is_empty() {
            process(&mut dir, &pre, &mut out, shared, settings);
        }
        // Even when empty, these bytes share hyper's connection read buffer:
        // holding them would keep that buffer alive for the connection's life.
        drop(pre);
        if write(&mut dir, &mut out).await.is_err() {
            return;
        }
        let timers = Timers::new(dir.side, settings);
        let mut tick = timers.interval();
        loop {
            // Orders first, so a busy source cannot starve them.
            let step = tokio::select! {
                biased;
                _ = shared.ordered(), if !dir.close_to_dst && !ordered => {
                    ordered = true;
                    on_order(&mut dir, shared, &mut out)
                }
                _ = next_tick(&mut tick) => timers.on_tick(&dir, shared, &mut out),
                step = poll_fn(|cx| burst(cx, &mut src, &mut dir, &mut out, shared, settings)) => step,
            };
            if matches!(step, Step::Stop) || write(&mut dir, &mut out).await.is_err() {
                break;
            }
        }
        finish(&mut dir, &mut out, gone).await;
    }
}

/// Reads a burst into a buffer on this call's stack, walks it, and writes
/// what the destination takes at once; `Stop` once the source ends or
/// either side fails. (tokio's read notes a short read as
/// "drained", which saves the EAGAIN read that would follow every message.)
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
    if !dir.failed {
        process(dir, buf.filled(), out, shared, s);
    }
    Poll::Ready(write_now(cx, dir, out))
}

/// A close order: close now if between frames (otherwise `walk` closes
/// at the end of the current frame). `run` times the grace.
fn on_order<W>(dir: &mut Dir<W>, shared: &Shared, out: &mut Vec<u8>) -> Step {
    if dir.at_boundary() {
        dir.inject_order(shared, out);
    }
    Step::Go
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

    fn on_tick<W>(&self, dir: &Dir<W>, shared: &Shared, out: &mut Vec<u8>) -> Step {
        if let Some(limit) = self.idle {
            if shared.idle_for() >= limit {
                shared.issue(Order::IDLE);
                return Step::Go;
            }
        }
        if self.ping.is_some() && dir.at_boundary() && !dir.close_to_dst {
            out.extend_from_slice(&frame::build(OP_PING, 0, b"hpgate", None));
        }
        Step::Go
    }
}

async fn next_tick(tick: &mut Option<Interval>) {
    match tick.as_mut() {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending::<()>().await,
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

/// Writes what the destination takes now, in the poll that read the
/// burst: most bursts go out whole, with no write future. The rest waits
/// in `out` for `write`.
fn write_now<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    dir: &mut Dir<W>,
    out: &mut Vec<u8>,
) -> Step {
    if out.is_empty() {
        return Step::Go;
    }
    match Pin::new(&mut dir.dst).poll_write(cx, out) {
        Poll::Ready(Ok(n)) if n == out.len() => emptied(out),
        Poll::Ready(Ok(n)) => drop(out.drain(..n)),
        Poll::Ready(Err(_)) => return Step::Stop,
        Poll::Pending => {}
    }
    Step::Go
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
