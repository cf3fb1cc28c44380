//! The frame-aware relay between a client and the app.
//!
//! Two directions run concurrently (so neither side's backpressure can
//! stall the other); each reads frame headers as bytes pass, copies
//! payload bytes through untouched (passthrough and disable), and only in
//! `offload` decodes messages to inflate or deflate them. Frame boundaries
//! are tracked so hpgate can inject its own close or ping frames cleanly.
//!
//! No buffer is held while a connection is idle: each direction waits for
//! readiness and allocates its read buffer only for the burst it reads.
//!
//! Close rules: close frames are relayed with their code and reason; on a
//! close order (shutdown 1001, process retirement 1012, protocol error
//! 1002, message too big 1009, idle) hpgate sends its own close to each
//! side at the next frame boundary and drops what that side's peer sends
//! afterwards; when a side's TCP ends without a close frame the other side
//! gets one (1012 if the app process went away, 1011 or 1001 otherwise).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::both::both;
use super::deflate::{Agreement, Codec};
use super::frame::{self, FrameError, Header, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT};
use crate::supervisor::exit_seen;

/// Bytes read per readiness event; allocated per burst, freed when idle.
const BURST: usize = 16 * 1024;
/// How long a side gets to answer a close before the TCP connection is dropped.
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
}

/// Signals from outside the relay.
pub struct Signals {
    pub shutdown: CancellationToken,
    pub retiring: CancellationToken,
    pub gone: CancellationToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Order {
    to_client: u16,
    to_app: u16,
    reason: &'static str,
}

struct Shared {
    order: watch::Sender<Option<Order>>,
    last_activity: AtomicU64,
    base: Instant,
}

impl Shared {
    fn issue(&self, o: Order) {
        self.order.send_if_modified(|cur| {
            if cur.is_none() {
                *cur = Some(o);
                true
            } else {
                false
            }
        });
    }

    fn touch(&self) {
        self.last_activity
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        self.base.elapsed().saturating_sub(Duration::from_millis(
            self.last_activity.load(Ordering::Relaxed),
        ))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Frames from the client, written to the app.
    Upstream,
    /// Frames from the app, written to the client.
    Downstream,
}

/// Per-direction state: where in the frame stream we are.
struct Dir {
    side: Side,
    dst: OwnedWriteHalf,
    hdr: [u8; frame::MAX_HEADER],
    hdr_len: usize,
    cur: Option<Header>,
    remaining: u64,
    offset: u64,
    /// A data message is in progress (a non-final data frame was seen).
    in_message: bool,
    /// Control payload collected (close codes are read from it).
    ctrl: Vec<u8>,
    /// Offload: the message being decoded; `compressed` when RSV1 was set.
    message: Option<(u8, bool, Vec<u8>)>,
    /// Boxed: most connections never compress, and this keeps the
    /// per-connection future small.
    codec: Option<Box<Codec>>,
    close_to_dst: bool,
    failed: bool,
}

/// Relays until both directions end. (A fn returning an `async move`
/// block, like `pump`, so the arguments are not kept twice.)
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn run(
    client: TcpStream,
    client_pre: Bytes,
    app: TcpStream,
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
            for s in [&client, &app] {
                let _ = s.poll_read_ready(cx);
                let _ = s.poll_write_ready(cx);
            }
            std::task::Poll::Ready(())
        })
        .await;
        let (client_rd, client_wr) = client.into_split();
        let (app_rd, app_wr) = app.into_split();
        let shared = Arc::new(Shared {
            order: watch::Sender::new(None),
            last_activity: AtomicU64::new(0),
            base: Instant::now(),
        });
        let settings = Arc::new(settings);
        let codec = |s: &Settings| match &s.mode {
            Mode::Offload {
                agreement, level, ..
            } => Some(Box::new(Codec::new(*agreement, *level))),
            Mode::Relay { .. } => None,
        };
        let up = Dir::new(Side::Upstream, app_wr, codec(&settings));
        let down = Dir::new(Side::Downstream, client_wr, codec(&settings));

        let watch_signals = async {
            tokio::select! {
                _ = signals.shutdown.cancelled() => shared.issue(Order { to_client: GOING_AWAY, to_app: GOING_AWAY, reason: "server shutting down" }),
                _ = signals.retiring.cancelled() => shared.issue(Order { to_client: SERVICE_RESTART, to_app: GOING_AWAY, reason: "app restarting" }),
            }
            std::future::pending::<()>().await
        };
        // The pumps are built in place (no named locals): every future kept in
        // a local would take its own room in this task for the connection's life.
        tokio::select! {
            _ = both(
                pump(up, client_rd, client_pre, &shared, &settings, &signals.gone),
                pump(down, app_rd, app_pre, &shared, &settings, &signals.gone),
            ) => {}
            _ = watch_signals => {}
        }
    }
}

impl Dir {
    fn new(side: Side, dst: OwnedWriteHalf, codec: Option<Box<Codec>>) -> Dir {
        Dir {
            side,
            dst,
            hdr: [0; frame::MAX_HEADER],
            hdr_len: 0,
            cur: None,
            remaining: 0,
            offset: 0,
            in_message: false,
            ctrl: Vec::new(),
            message: None,
            codec,
            close_to_dst: false,
            failed: false,
        }
    }

    fn at_boundary(&self) -> bool {
        self.cur.is_none() && self.hdr_len == 0
    }

    fn mask(&self) -> Option<[u8; 4]> {
        (self.side == Side::Upstream).then(frame::new_mask)
    }

    fn close_frame(&self, o: &Order) -> Vec<u8> {
        let code = match self.side {
            Side::Upstream => o.to_app,
            Side::Downstream => o.to_client,
        };
        frame::close(code, o.reason, self.mask())
    }
}

/// One direction: read `src`, write `dir.dst`, until `src` ends.
///
/// A plain fn returning an `async move` block rather than an `async fn`:
/// an async fn keeps a second copy of its arguments in its state, and this
/// state lives as long as the connection.
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn pump<'a>(
    mut dir: Dir,
    mut src: OwnedReadHalf,
    pre: Bytes,
    shared: &'a Shared,
    settings: &'a Settings,
    gone: &'a CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'a {
    async move {
        let mut orders = shared.order.subscribe();
        let mut out = Vec::new();
        if !pre.is_empty() {
            process(&mut dir, &pre, &mut out, shared, settings);
            if write(&mut dir, &mut out).await.is_err() {
                return;
            }
        }
        // Even when empty, these bytes share hyper's connection read buffer:
        // holding them would keep that buffer alive for the connection's life.
        drop(pre);
        let ping = settings
            .ping_interval
            .filter(|_| dir.side == Side::Downstream);
        let idle = settings
            .idle_timeout
            .filter(|_| dir.side == Side::Downstream);
        // A timer only when pings or the idle limit are on: idle connections
        // are the common case and each timer costs memory.
        let mut tick = ping.or(idle).map(|every| {
            let mut t = tokio::time::interval(every);
            t.reset();
            t
        });
        // Boxed and only made once a close is under way, so an idle
        // connection does not carry a timer.
        let mut deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            tokio::select! {
                r = src.readable() => {
                    if r.is_err() { break; }
                    let mut buf = Vec::with_capacity(BURST);
                    // One poll of tokio's read path (no await on it, so no
                    // buffer is held while waiting): unlike try_read, it
                    // notes a short read as "drained", which saves the
                    // EAGAIN read that would follow every message.
                    let read = std::future::poll_fn(|cx| {
                        std::task::Poll::Ready(tokio_util::io::poll_read_buf(
                            std::pin::Pin::new(&mut src),
                            cx,
                            &mut buf,
                        ))
                    })
                    .await;
                    match read {
                        std::task::Poll::Ready(Ok(0)) => break,
                        std::task::Poll::Ready(Ok(n)) => {
                            // Only the idle limit (watched from the other
                            // direction too) reads this clock.
                            if settings.idle_timeout.is_some() {
                                shared.touch();
                            }
                            if !dir.failed {
                                process(&mut dir, &buf[..n], &mut out, shared, settings);
                            }
                            if write(&mut dir, &mut out).await.is_err() { break; }
                        }
                        std::task::Poll::Pending => {}
                        std::task::Poll::Ready(Err(_)) => break,
                    }
                }
                r = orders.changed(), if !dir.close_to_dst => {
                    if r.is_err() { break; }
                    deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(CLOSE_GRACE)));
                    if dir.at_boundary() {
                        inject_order(&mut dir, shared, &mut out);
                        if write(&mut dir, &mut out).await.is_err() { break; }
                    }
                }
                _ = async {
                    match tick.as_mut() {
                        Some(t) => {
                            t.tick().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                } => {
                    if let Some(limit) = idle {
                        if shared.idle_for() >= limit {
                            shared.issue(Order { to_client: GOING_AWAY, to_app: GOING_AWAY, reason: "idle timeout" });
                            continue;
                        }
                    }
                    if ping.is_some() && dir.at_boundary() && !dir.close_to_dst {
                        out.extend_from_slice(&frame::build(OP_PING, 0, b"hpgate", None));
                        if write(&mut dir, &mut out).await.is_err() { break; }
                    }
                }
                _ = async { if let Some(d) = deadline.as_mut() { d.await } }, if deadline.is_some() => break,
            }
        }
        // The source ended. If its peer never got a close frame, send one.
        if !dir.close_to_dst {
            if dir.side == Side::Downstream {
                // The kernel closes a dead process's sockets before the
                // supervisor reaps it: give the exit a moment to be seen.
                exit_seen(gone).await;
            }
            let code = match dir.side {
                Side::Downstream if gone.is_cancelled() => SERVICE_RESTART,
                Side::Downstream => INTERNAL,
                Side::Upstream => GOING_AWAY,
            };
            let reason = match dir.side {
                Side::Downstream => "the app closed the connection",
                Side::Upstream => "the client went away",
            };
            if dir.at_boundary() {
                out.extend_from_slice(&frame::close(code, reason, dir.mask()));
            }
            let _ = write(&mut dir, &mut out).await;
        }
        let _ = dir.dst.shutdown().await;
    }
}

fn inject_order(dir: &mut Dir, shared: &Shared, out: &mut Vec<u8>) {
    let order = *shared.order.borrow();
    if let Some(o) = order {
        out.extend_from_slice(&dir.close_frame(&o));
        dir.close_to_dst = true;
    }
}

async fn write(dir: &mut Dir, out: &mut Vec<u8>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let r = dir.dst.write_all(out).await;
    out.clear();
    if out.capacity() > BURST {
        *out = Vec::new();
    }
    r
}

/// Walks `data` frame by frame, appending what goes to the destination.
fn process(dir: &mut Dir, mut data: &[u8], out: &mut Vec<u8>, shared: &Shared, s: &Settings) {
    while !data.is_empty() && !dir.failed {
        if dir.cur.is_none() {
            let take = (frame::MAX_HEADER - dir.hdr_len).min(data.len());
            dir.hdr[dir.hdr_len..dir.hdr_len + take].copy_from_slice(&data[..take]);
            let have = dir.hdr_len + take;
            match Header::parse(&dir.hdr[..have]) {
                Ok(None) => {
                    dir.hdr_len = have;
                    data = &data[take..];
                    continue;
                }
                Ok(Some((h, n))) => {
                    // Bytes past the header go back to `data`.
                    let used_from_data = n - dir.hdr_len;
                    let hdr = dir.hdr;
                    dir.hdr_len = 0;
                    data = &data[used_from_data..];
                    if let Err(reason) = check(dir, &h, s) {
                        fail(dir, shared, reason, out);
                        return;
                    }
                    start_frame(dir, h, &hdr[..n], out, s, shared);
                    if dir.failed {
                        return;
                    }
                    if h.len == 0 {
                        end_frame(dir, out, shared, s);
                    }
                }
                Err(e) => {
                    fail(dir, shared, frame_error_text(e), out);
                    return;
                }
            }
        } else {
            let k = (dir.remaining.min(data.len() as u64)) as usize;
            payload(dir, &data[..k], out, s);
            if dir.failed {
                return;
            }
            dir.remaining -= k as u64;
            dir.offset += k as u64;
            data = &data[k..];
            if dir.remaining == 0 {
                end_frame(dir, out, shared, s);
            }
        }
    }
}

fn frame_error_text(e: FrameError) -> &'static str {
    match e {
        FrameError::ReservedOpcode(_) => "reserved opcode",
        FrameError::BadControl => "invalid control frame",
        FrameError::BadLength => "invalid payload length",
    }
}

/// RFC 6455 rules hpgate enforces on each leg.
fn check(dir: &Dir, h: &Header, s: &Settings) -> Result<(), &'static str> {
    match (dir.side, h.mask.is_some()) {
        (Side::Upstream, false) => return Err("client frames must be masked"),
        (Side::Downstream, true) => return Err("server frames must not be masked"),
        _ => {}
    }
    let data_start = matches!(h.opcode, OP_TEXT | OP_BINARY);
    if h.opcode == OP_CONT && !dir.in_message {
        return Err("continuation frame without a message");
    }
    if data_start && dir.in_message {
        return Err("new message before the previous one ended");
    }
    let rsv_ok = match &s.mode {
        Mode::Relay {
            other_extensions: true,
            ..
        } => true,
        Mode::Relay { deflate, .. } => h.rsv == 0 || (*deflate && h.rsv == 0b100 && data_start),
        // Offload: the client may compress; the app negotiated nothing.
        Mode::Offload { .. } => {
            h.rsv == 0 || (dir.side == Side::Upstream && h.rsv == 0b100 && data_start)
        }
    };
    if !rsv_ok {
        return Err("reserved bits set without a negotiated extension");
    }
    Ok(())
}

fn fail(dir: &mut Dir, shared: &Shared, reason: &'static str, out: &mut Vec<u8>) {
    dir.failed = true;
    let o = match dir.side {
        Side::Upstream => Order {
            to_client: PROTOCOL_ERROR,
            to_app: GOING_AWAY,
            reason,
        },
        Side::Downstream => Order {
            to_client: GOING_AWAY,
            to_app: PROTOCOL_ERROR,
            reason,
        },
    };
    tracing::info!(
        side = if dir.side == Side::Upstream {
            "client"
        } else {
            "app"
        },
        "WebSocket protocol error: {reason}"
    );
    shared.issue(o);
    // Frames already forwarded ended at a boundary or mid-frame; only in
    // the first case can a close frame follow cleanly.
    if dir.at_boundary() || dir.cur.is_none() {
        inject_order(dir, shared, out);
    }
}

fn decoding(dir: &Dir, h: &Header, s: &Settings) -> bool {
    matches!(s.mode, Mode::Offload { .. })
        && !h.is_control()
        && (dir.side == Side::Downstream
            || dir.message.as_ref().is_some_and(|m| m.1)
            || h.rsv & 0b100 != 0)
}

fn start_frame(
    dir: &mut Dir,
    h: Header,
    raw: &[u8],
    out: &mut Vec<u8>,
    s: &Settings,
    shared: &Shared,
) {
    dir.cur = Some(h);
    dir.remaining = h.len;
    dir.offset = 0;
    dir.ctrl.clear();
    if !h.is_control() {
        dir.in_message = !h.fin;
    }
    if decoding(dir, &h, s) {
        if h.opcode != OP_CONT {
            dir.message = Some((h.opcode, h.rsv & 0b100 != 0, Vec::new()));
        }
        let size = dir.message.as_ref().map_or(0, |m| m.2.len() as u64) + h.len;
        if size > s.max_message {
            too_big(dir, shared, out);
        }
        return;
    }
    if dir.close_to_dst {
        return; // the destination already has our close: drop the rest
    }
    out.extend_from_slice(raw);
}

fn too_big(dir: &mut Dir, shared: &Shared, out: &mut Vec<u8>) {
    dir.failed = true;
    shared.issue(Order {
        to_client: TOO_BIG,
        to_app: GOING_AWAY,
        reason: "message too big",
    });
    if dir.message.is_some() {
        dir.cur = None;
        dir.message = None;
        inject_order(dir, shared, out);
    }
}

fn payload(dir: &mut Dir, bytes: &[u8], out: &mut Vec<u8>, s: &Settings) {
    let Some(h) = dir.cur else { return };
    if h.is_control() {
        dir.ctrl.extend_from_slice(bytes);
    }
    if decoding(dir, &h, s) {
        let start = dir.message.as_ref().map_or(0, |m| m.2.len());
        if let Some(m) = dir.message.as_mut() {
            m.2.extend_from_slice(bytes);
            if let Some(mask) = h.mask {
                frame::apply_mask(&mut m.2[start..], mask, dir.offset);
            }
        }
        return;
    }
    if !dir.close_to_dst {
        out.extend_from_slice(bytes);
    }
}

fn end_frame(dir: &mut Dir, out: &mut Vec<u8>, shared: &Shared, s: &Settings) {
    let Some(h) = dir.cur.take() else { return };
    if h.opcode == OP_CLOSE && !dir.close_to_dst {
        // The close frame was forwarded as is; the destination now has a close.
        dir.close_to_dst = true;
        let mut p = dir.ctrl.clone();
        if let Some(mask) = h.mask {
            frame::apply_mask(&mut p, mask, 0);
        }
        if p.len() >= 2 {
            tracing::debug!(
                code = u16::from_be_bytes([p[0], p[1]]),
                "WebSocket close relayed"
            );
        }
    }
    if decoding(dir, &h, s) && h.fin {
        if let Some((opcode, compressed, data)) = dir.message.take() {
            if !dir.close_to_dst {
                emit_message(dir, opcode, compressed, data, out, shared, s);
            }
        }
    }
    // A close order that arrived mid-frame goes out now, at the boundary.
    if !dir.close_to_dst && shared.order.borrow().is_some() {
        inject_order(dir, shared, out);
    }
}

/// Offload: turns one decoded message into the frame for the destination.
fn emit_message(
    dir: &mut Dir,
    opcode: u8,
    compressed: bool,
    data: Vec<u8>,
    out: &mut Vec<u8>,
    shared: &Shared,
    s: &Settings,
) {
    let Mode::Offload { min_size, .. } = s.mode else {
        return;
    };
    let mask = dir.mask();
    let Some(codec) = dir.codec.as_mut() else {
        return;
    };
    match dir.side {
        Side::Upstream => {
            let plain = if compressed {
                match codec.inflate(&data, s.max_message) {
                    Ok(p) => p,
                    Err(super::deflate::CodecError::TooBig(_)) => {
                        too_big(dir, shared, out);
                        return;
                    }
                    Err(e) => {
                        tracing::info!("WebSocket message from the client does not inflate: {e}");
                        fail(dir, shared, "invalid compressed message", out);
                        return;
                    }
                }
            } else {
                data
            };
            out.extend_from_slice(&frame::build(opcode, 0, &plain, mask));
        }
        Side::Downstream => {
            if (data.len() as u64) < min_size {
                out.extend_from_slice(&frame::build(opcode, 0, &data, None));
                return;
            }
            match codec.deflate(&data) {
                Ok(z) => out.extend_from_slice(&frame::build(opcode, 0b100, &z, None)),
                Err(_) => out.extend_from_slice(&frame::build(opcode, 0, &data, None)),
            }
        }
    }
}
