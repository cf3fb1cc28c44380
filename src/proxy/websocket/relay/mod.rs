//! The frame-aware relay between a client and the app.
//!
//! Two directions run concurrently (so neither side's backpressure can
//! stall the other); each reads frame headers as bytes pass, copies
//! payload bytes through untouched (passthrough and disable), and only in
//! `offload` decodes messages to inflate or deflate them. Frame boundaries
//! are tracked so hpgate can inject its own close or ping frames cleanly.
//!
//! No buffer is held while a connection is idle: each direction reads a
//! burst into a buffer on the stack of the poll that reads it, walks it
//! there (whole frames that pass as they are are written from there), and
//! keeps only what could not be written yet. The directions run in one
//! task, each polled only when its own waker fired (`OnWake`).
//!
//! Close rules: close frames are relayed with their code and reason; on a
//! close order (shutdown 1001, process retirement 1012, protocol error
//! 1002, message too big 1009, idle) hpgate sends its own close to each
//! side at the next frame boundary and drops what that side's peer sends
//! afterwards; when a side's TCP ends without a close frame the other side
//! gets one (1012 if the app process went away, 1011 or 1001 otherwise).
//!
//! Files: `io` (what a stream must offer), `order` (close orders shared by
//! both directions), `direction` (one direction's state), `walk` (frame
//! walking and the RFC checks), `offload` (re-framing decoded messages),
//! `pump` (one direction's loop). The close grace is timed here, for the
//! whole relay, so a peer that stops reading cannot hold it open.

mod direction;
mod io;
mod offload;
mod order;
mod pump;
#[cfg(test)]
mod tests;
mod walk;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::deflate::{Agreement, Codec};
use super::on_wake::{OnWake, Wakes};
use super::parts::parts;
use crate::admin::metrics::WsStats;
use crate::proxy::conn_tag::ConnTag;
use direction::{Dir, Side};
use order::{Order, Shared};
use pump::pump;

pub use io::{Generic, Io};

/// What `crate::fuzzing` drives (the frame walk of one direction); not an API.
pub(crate) mod fuzz {
    pub(crate) use super::super::on_wake::Wakes;
    pub(crate) use super::direction::{Dir, Side};
    pub(crate) use super::order::{Order, Shared};
    pub(crate) use super::walk::{process, Walked};
    pub(crate) use super::{codec, Mode, Settings};
    pub(crate) use crate::proxy::conn_tag::ConnTag;
}

/// How long the sides get to answer a close before the relay drops them.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const TOO_BIG: u16 = 1009;
pub const INTERNAL: u16 = 1011;
pub const SERVICE_RESTART: u16 = 1012;

/// How frames are treated, fixed at the handshake.
pub enum Mode {
    /// Bytes untouched. `deflate`: RSV1 allowed on first data frames;
    /// `other_extensions`: RSV bits are the extensions' business.
    Relay {
        deflate: bool,
        other_extensions: bool,
    },
    /// hpgate compresses toward the client and inflates from it.
    Offload {
        agreement: Agreement,
        level: u32,
        min_size: u64,
    },
}

pub struct Settings {
    pub mode: Mode,
    pub max_message: u64,
    pub ping_interval: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    /// Messages and bytes are counted here, by direction.
    pub stats: WsStats,
    /// The client connection, for the log.
    pub conn: ConnTag,
}

#[cfg(test)]
impl Settings {
    /// No timers, a 1 MiB message limit, detached metrics: what tests
    /// start from.
    pub fn for_tests(mode: Mode) -> Settings {
        Settings {
            mode,
            max_message: 1 << 20,
            ping_interval: None,
            idle_timeout: None,
            stats: crate::admin::metrics::WsStats::detached(),
            conn: ConnTag {
                id: 1,
                peer: ([127, 0, 0, 1], 1).into(),
            },
        }
    }
}

/// Signals from outside the relay.
pub struct Signals {
    pub shutdown: CancellationToken,
    pub retiring: CancellationToken,
    pub gone: CancellationToken,
}

/// Relays until both directions end. (A fn returning an `async move`
/// block, like `pump`, so the arguments are not kept twice.)
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn run<C: Io, A: Io>(
    mut client: C,
    client_pre: Bytes,
    mut app: A,
    app_pre: Bytes,
    settings: Settings,
    signals: Signals,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        // The streams come from hyper's connection tasks, whose wakers are
        // still parked in the streams' readiness slots: each would keep its
        // finished task's memory (about 1.7 KB) alive for as long as the
        // WebSocket lasts. Polling readiness once here puts this task's waker
        // in their place.
        std::future::poll_fn(|cx| {
            client.adopt(cx);
            app.adopt(cx);
            std::task::Poll::Ready(())
        })
        .await;
        let (client_rd, client_wr) = client.split();
        let (app_rd, app_wr) = app.split();
        let wakes = Wakes::new();
        let flags = [wakes.flag(), wakes.flag(), wakes.flag()];
        let shared = Arc::new(Shared::new(settings.conn, flags.clone()));
        let settings = Arc::new(settings);
        let up = Dir::new(Side::Upstream, app_wr, codec(&settings));
        let down = Dir::new(Side::Downstream, client_wr, codec(&settings));
        let [up_flag, down_flag, grace_flag] = flags;
        // The pumps are built in place (no named locals): every future kept in
        // a local would take its own room in this task for the connection's life.
        // Each part is polled only when its own waker fired or an order came
        // (`OnWake`), not for the other direction's bursts. `drive` hands the
        // task's waker to all three flags before any part is polled.
        wakes
            .drive(parts(
                OnWake::with_flag(
                    pump(up, client_rd, client_pre, &shared, &settings, &signals.gone),
                    up_flag,
                ),
                OnWake::with_flag(
                    pump(down, app_rd, app_pre, &shared, &settings, &signals.gone),
                    down_flag,
                ),
                OnWake::with_flag(end_after_grace(&signals, &shared), grace_flag),
            ))
            .await;
    }
}

/// Offload keeps one codec per direction; boxed because most connections
/// never compress, and this keeps the per-connection future small.
pub(crate) fn codec(s: &Settings) -> Option<Box<Codec>> {
    match &s.mode {
        Mode::Offload {
            agreement, level, ..
        } => Some(Box::new(Codec::new(*agreement, *level))),
        Mode::Relay { .. } => None,
    }
}

/// Turns shutdown or retirement into a close order; once any order is
/// given, returns after the close grace, which ends the relay even if a
/// direction is stuck writing to a peer that stopped reading.
async fn end_after_grace(signals: &Signals, shared: &Shared) {
    tokio::select! {
        biased;
        _ = shared.ordered() => {}
        _ = signals.shutdown.cancelled() => shared.issue(Order::SHUTDOWN),
        _ = signals.retiring.cancelled() => shared.issue(Order::RETIRING),
    }
    // Boxed so an idle connection's future does not carry a timer.
    Box::pin(tokio::time::sleep(CLOSE_GRACE)).await
}
