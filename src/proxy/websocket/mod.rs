//! WebSocket upgrades: validate the handshake at the gateway, forward it to
//! a ready process, relay the 101 and join the two connections.
//!
//! Owns the handshake rewriting for the compression modes and the registry
//! of live WebSockets (count limit, close on shutdown). The HTTP forwarding
//! path hands upgrade requests here and must not touch them otherwise.

mod deflate;
mod frame;
mod handshake;
mod on_wake;
mod over_h2;
mod parts;
mod relay;

/// What `crate::fuzzing` drives; not an API.
pub(crate) mod fuzz {
    pub(crate) use super::deflate::{Agreement, Codec, CodecError};
    pub(crate) use super::frame::{apply_mask, Header, MAX_HEADER, OP_CLOSE};
    pub(crate) use super::relay::fuzz as relay;
}

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::app_io::AppIo;
use super::guard::{GuardedIo, Stream};
/// Frames for `hpgate check`'s WebSocket probe of the app.
pub(crate) use frame::{build as build_frame, new_mask};
use relay::Generic;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::activity::Activity;
use super::body::{AppBody, ResponseBody};
use super::client::Client;
use super::conn_tag::ConnTag;
use super::error::ProxyError;
use super::upstream::{self, Answer, Purpose};
use super::Gateway;
use crate::admin::metrics::WsStats;
use crate::config::{Compression, Config};

/// A WebSocket handshake: an HTTP/1.1 upgrade or an HTTP/2 extended
/// CONNECT. `has_upgrade` says whether the request has an Upgrade field
/// (the caller has looked already): without one, only the extended
/// CONNECT is left to ask for a WebSocket.
pub fn is_websocket(req: &http::request::Parts, has_upgrade: bool) -> bool {
    (has_upgrade && handshake::is_upgrade(&req.headers))
        || over_h2::is_extended_connect(&req.method, req.version, &req.extensions)
}

/// Zero means "off" for the WebSocket timers.
fn nonzero(d: std::time::Duration) -> Option<std::time::Duration> {
    (!d.is_zero()).then_some(d)
}

/// Live WebSockets: how many, and the signal that closes them on shutdown.
#[derive(Clone, Default)]
pub struct Registry {
    count: Arc<AtomicUsize>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

impl Registry {
    pub fn active(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Takes one of `max` places, checked and counted in one atomic step:
    /// handshakes in flight together cannot all pass the check before any
    /// is counted. The place is freed when the slot drops (a handshake
    /// that fails, or the relay when the WebSocket ends).
    fn reserve(&self, max: u64) -> Option<Slot> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                ((n as u64) < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.count.clone()))
    }
}

/// One place under maxWebSockets; freed on drop.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A validated handshake: the place it holds and what compression will do.
struct Plan {
    slot: Slot,
    mode: Compression,
    /// Offload: what hpgate agreed with the client, and whether the client
    /// offered server_max_window_bits.
    offload: Option<(deflate::Agreement, bool)>,
}

/// The upgrade flow: refuse early (bad handshake, maxWebSockets), send the
/// handshake through `upstream.rs`, relay a refusal as it is, or answer 101
/// and start the relay.
pub async fn handle(
    gw: &Gateway,
    cfg: &Config,
    mut req: Request<Incoming>,
    client: &Client,
) -> Result<(Response<ResponseBody>, Option<u32>), ProxyError> {
    let h2 = over_h2::is_extended_connect(req.method(), req.version(), req.extensions());
    let checked = if h2 {
        over_h2::validate(&req)
    } else {
        handshake::validate(&req)
    };
    checked.map_err(|r| ProxyError::Handshake {
        status: r.status,
        reason: r.reason,
    })?;
    let slot = gw
        .ws
        .reserve(cfg.max_web_sockets)
        .ok_or(ProxyError::TooManyWebSockets)?;
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    if h2 {
        over_h2::to_app(&mut parts);
    }
    upstream::prepare(cfg, &mut parts, &client.peer, Purpose::Upgrade)?;
    let plan = plan(cfg, &mut parts.headers, slot);
    let answer = upstream::send(gw, cfg, parts, body, Purpose::Upgrade).await?;
    let pid = answer.backend.pid;
    if answer.resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok((refused(answer), Some(pid)));
    }
    let stats = gw.sup.metrics().websocket(plan.mode);
    let (mut to_client, settings) = accept(cfg, &answer, &plan, stats, client.tag)?;
    if h2 {
        over_h2::to_client(&mut to_client);
    }
    start_relay(gw, client, answer, plan.slot, client_upgrade, settings);
    Ok((to_client, Some(pid)))
}

/// What compression will do, with the offer to the app rewritten for it:
/// passthrough leaves it, disable and offload remove permessage-deflate.
fn plan(cfg: &Config, headers: &mut http::HeaderMap, slot: Slot) -> Plan {
    let mode = cfg.web_socket_compression;
    let offload = match mode {
        Compression::Offload => deflate::negotiate(&handshake::parse_extensions(headers)),
        _ => None,
    };
    if mode != Compression::Passthrough {
        handshake::remove_deflate(headers);
    }
    Plan {
        slot,
        mode,
        offload,
    }
}

/// The app said no (403, 404, Engine.IO's 400): the client hears it as is.
fn refused(a: Answer) -> Response<ResponseBody> {
    let (mut parts, body) = a.resp.into_parts();
    upstream::clean_answer(&mut parts, a.backend.pid, false);
    let lease = a.backend.requests.token();
    let body = AppBody::new(body, Activity::new(), None, lease);
    Response::from_parts(parts, ResponseBody::app(body))
}

/// The 101 for the client and the relay's settings, from the app's 101.
fn accept(
    cfg: &Config,
    answer: &Answer,
    plan: &Plan,
    stats: WsStats,
    conn: ConnTag,
) -> Result<(Response<ResponseBody>, relay::Settings), ProxyError> {
    let app_extensions = handshake::parse_extensions(answer.resp.headers());
    let agreed_deflate = app_extensions.iter().any(|o| o.name == handshake::DEFLATE);
    if plan.mode != Compression::Passthrough && agreed_deflate {
        return Err(ProxyError::BadResponse {
            pid: answer.backend.pid,
            reason: "the app accepted permessage-deflate although hpgate removed it from the offer (the app misbehaves: RFC 7692 lets a server accept only what was offered)".into(),
        });
    }
    let mut to_client = Response::new(ResponseBody::full(Bytes::new()));
    *to_client.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *to_client.headers_mut() = answer.resp.headers().clone();
    let mode = match plan.offload {
        Some((agreement, server_bits)) => {
            // The app's own extensions, then hpgate's deflate agreement.
            let mut value = handshake::render_extensions(&app_extensions);
            if !value.is_empty() {
                value.push_str(", ");
            }
            value.push_str(&agreement.response(server_bits));
            if let Ok(v) = HeaderValue::from_str(&value) {
                to_client.headers_mut().insert(handshake::SEC_EXTENSIONS, v);
            }
            relay::Mode::Offload {
                agreement,
                level: cfg.web_socket_compression_level as u32,
                min_size: cfg.web_socket_compression_min_size,
            }
        }
        None => relay::Mode::Relay {
            deflate: agreed_deflate,
            other_extensions: app_extensions.iter().any(|o| o.name != handshake::DEFLATE),
        },
    };
    let settings = relay::Settings {
        mode,
        max_message: cfg.web_socket_max_message_size,
        ping_interval: nonzero(cfg.web_socket_ping_interval),
        idle_timeout: nonzero(cfg.web_socket_idle_timeout),
        stats,
        conn,
    };
    Ok((to_client, settings))
}

/// Once both sides have switched, the relay runs in the registry's task
/// set, holding the maxWebSockets place and the client connection's place
/// under maxConnections for as long as the WebSocket lives.
fn start_relay(
    gw: &Gateway,
    client: &Client,
    answer: Answer,
    slot: Slot,
    client_upgrade: hyper::upgrade::OnUpgrade,
    settings: relay::Settings,
) {
    let held = Held {
        _slot: slot,
        _place: client.take_place(),
        _on_connection: client.websockets.token(),
    };
    let backend = answer.backend;
    let signals = relay::Signals {
        shutdown: gw.ws.shutdown.clone(),
        retiring: backend.retiring.clone(),
        gone: backend.gone.clone(),
    };
    let upgrades = (client_upgrade, hyper::upgrade::on(answer.resp));
    let task = relay_task(held, upgrades, settings, signals, backend.pid);
    // The relay's lines stay tied to the connection that opened it.
    gw.ws.tasks.spawn(task.instrument(tracing::Span::current()));
}

/// What a WebSocket holds for as long as it lives: its maxWebSockets place,
/// the client connection's place under maxConnections, and its place among
/// the connection's WebSockets (HTTP/2 closes them before its GOAWAY).
struct Held {
    _slot: Slot,
    _place: Option<tokio::sync::OwnedSemaphorePermit>,
    _on_connection: tokio_util::task::task_tracker::TaskTrackerToken,
}

/// The relay's task: waits for both sides to switch, then relays. Its
/// state lives as long as the WebSocket, so it holds only what it must
/// (a plain fn returning an `async move` block: the arguments are not kept
/// twice; the upgraded connections live only inside the match).
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn relay_task(
    held: Held,
    upgrades: (hyper::upgrade::OnUpgrade, hyper::upgrade::OnUpgrade),
    settings: relay::Settings,
    signals: relay::Signals,
    pid: u32,
) -> impl Future<Output = ()> + Send {
    async move {
        let _held = held;
        let (_open, relay) = match tokio::try_join!(upgrades.0, upgrades.1) {
            Ok((c, a)) => (
                settings.stats.opened(),
                relay_for(c, a, settings, signals, pid),
            ),
            Err(e) => {
                return tracing::debug!(pid, "WebSocket upgrade did not complete: {e}");
            }
        };
        if let Some(relay) = relay {
            relay.await;
        }
        tracing::debug!(pid, "WebSocket closed");
    }
}

/// The relay on the streams under both upgraded connections: plain TCP
/// where it can (the leanest idle WebSocket), TLS or an HTTP/2 stream
/// otherwise.
///
/// A plain fn, and the relay boxed: in an async fn, the upgrade wrappers
/// (with the guard's and the app reader's state) and a relay future per
/// stream type each kept their own room in the task for the connection's
/// life, 6.4 KB in all where the relay needs 1.8 KB.
fn relay_for(
    client: hyper::upgrade::Upgraded,
    app: hyper::upgrade::Upgraded,
    settings: relay::Settings,
    signals: relay::Signals,
    pid: u32,
) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
    let Ok(a) = app.downcast::<TokioIo<AppIo>>() else {
        tracing::error!(pid, "the app's WebSocket connection is not a TCP stream");
        return None;
    };
    let (app, app_pre) = (a.io.into_inner().into_inner(), a.read_buf);
    let client = match client.downcast::<TokioIo<GuardedIo<TcpStream>>>() {
        Ok(c) => {
            let (tcp, pre) = guarded_parts(c)?;
            return Some(Box::pin(relay::run(
                tcp, pre, app, app_pre, settings, signals,
            )));
        }
        Err(other) => other,
    };
    let client = match client.downcast::<TokioIo<GuardedIo<TlsStream<TcpStream>>>>() {
        Ok(c) => {
            let (tls, pre) = guarded_parts(c)?;
            let relay = relay::run(Generic(tls), pre, app, app_pre, settings, signals);
            return Some(Box::pin(relay));
        }
        Err(other) => other,
    };
    // An HTTP/2 stream (RFC 8441): hyper's own type, used as it is.
    let stream = Generic(TokioIo::new(client));
    Some(Box::pin(relay::run(
        stream,
        Bytes::new(),
        app,
        app_pre,
        settings,
        signals,
    )))
}

/// The stream under the guard, and the bytes already read past the
/// handshake: what hyper had read first, then what the guard held back.
fn guarded_parts<S: Stream>(c: hyper::upgrade::Parts<TokioIo<GuardedIo<S>>>) -> Option<(S, Bytes)> {
    let (stream, held) = c.io.into_inner().into_parts()?;
    let pre = match (c.read_buf.is_empty(), held.is_empty()) {
        (_, true) => c.read_buf,
        (true, false) => held,
        (false, false) => [c.read_buf, held].concat().into(),
    };
    Some((stream, pre))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relay task's own state, beside its boxed relay, lives as long as
    /// the WebSocket (docs/benchmarks.md, idle WebSocket memory). Built as
    /// an async fn it held the upgrade wrappers and a relay per stream
    /// type: 6.4 KB.
    #[test]
    fn the_relay_task_holds_little_beside_the_relay() {
        let reg = Registry::default();
        let held = Held {
            _slot: reg.reserve(1).expect("a place"),
            _place: None,
            _on_connection: TaskTracker::new().token(),
        };
        let upgrade = || hyper::upgrade::on(http::Request::new(()));
        let settings = relay::Settings::for_tests(relay::Mode::Relay {
            deflate: false,
            other_extensions: false,
        });
        let signals = relay::Signals {
            shutdown: CancellationToken::new(),
            retiring: CancellationToken::new(),
            gone: CancellationToken::new(),
        };
        let task = relay_task(held, (upgrade(), upgrade()), settings, signals, 1);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 512, "the relay task's state grew to {size} bytes");
    }

    #[test]
    fn places_are_reserved_up_to_the_limit_and_freed_on_drop() {
        let reg = Registry::default();
        let held: Vec<Slot> = (0..5).filter_map(|_| reg.reserve(5)).collect();
        assert_eq!(held.len(), 5);
        assert!(reg.reserve(5).is_none());
        drop(held);
        assert_eq!(reg.active(), 0);
        assert!(reg.reserve(5).is_some());
    }
}
