//! WebSocket upgrades: validate the handshake at the gateway, forward it to
//! a ready process, relay the 101 and join the two connections.
//!
//! Owns the handshake rewriting for the compression modes and the registry
//! of live WebSockets (count limit, close on shutdown). The HTTP forwarding
//! path hands upgrade requests here and must not touch them otherwise.

mod both;
mod deflate;
mod frame;
mod handshake;
mod relay;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::app_io::AppIo;
use super::guard::GuardedIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::body::{Activity, RequestBody, ResponseBody};
use super::client::Client;
use super::error::ProxyError;
use super::forward::{
    app_framing, client_body_limit, connect_error, failed, pick, prepare_upstream_head,
    unless_gone, with_target, Gateway, Session,
};
use crate::config::{Compression, Config};

pub use handshake::is_upgrade;

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

fn plain(status: StatusCode, msg: &str) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub async fn handle(
    gw: &Gateway,
    cfg: &Config,
    mut req: Request<Incoming>,
    client: &Client,
) -> Result<(Response<ResponseBody>, Option<u32>), ProxyError> {
    let peer = &client.peer;
    if let Err(rej) = handshake::validate(&req) {
        let mut r = plain(rej.status, rej.reason);
        if rej.status == StatusCode::UPGRADE_REQUIRED {
            r.headers_mut()
                .insert(handshake::SEC_VERSION, HeaderValue::from_static("13"));
        }
        return Ok((r, None));
    }
    let Some(slot) = gw.ws.reserve(cfg.max_web_sockets) else {
        return Ok((
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many WebSocket connections (maxWebSockets); try again shortly",
            ),
            None,
        ));
    };

    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    prepare_upstream_head(cfg, &mut parts, peer, true)?;
    let mode = cfg.web_socket_compression;
    let offers = handshake::parse_extensions(&parts.headers);
    let offload = match mode {
        Compression::Offload => deflate::negotiate(&offers),
        _ => None,
    };
    if mode != Compression::Passthrough {
        handshake::remove_deflate(&mut parts.headers);
    }

    let session = Session::of(gw, cfg, &parts);
    let backend = pick(gw, session.pid).await?;
    // A connection of its own: after the 101 it becomes the WebSocket.
    let mut conn = gw
        .pool
        .connect(backend.addr, true)
        .await
        .map_err(|e| connect_error(e, &backend))?;
    let activity = Activity::new();
    let up = Request::from_parts(
        with_target(parts, &backend)?,
        RequestBody::new(body, activity.clone(), client_body_limit(cfg)),
    );
    let exchange = async {
        conn.tx
            .send_request(up)
            .await
            .map_err(|e| failed(&e, &backend, &activity))
    };
    let resp = unless_gone(exchange, &backend).await?;

    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The app said no (403, 404, Engine.IO's 400): the client hears it as is.
        let (mut parts, body) = resp.into_parts();
        app_framing(&mut parts.headers, backend.pid);
        super::headers::strip_hop_by_hop(&mut parts.headers, false);
        let lease = backend.requests.token();
        let body = ResponseBody::upstream(super::body::Upstream::new(
            body,
            Activity::new(),
            None,
            lease,
        ));
        return Ok((Response::from_parts(parts, body), Some(backend.pid)));
    }

    let agreed_deflate = handshake::parse_extensions(resp.headers())
        .iter()
        .any(|o| o.name == handshake::DEFLATE);
    if mode != Compression::Passthrough && agreed_deflate {
        return Err(ProxyError::Backend {
            pid: backend.pid,
            reason: "the app accepted permessage-deflate although hpgate removed it from the offer (the app misbehaves: RFC 7692 lets a server accept only what was offered)".into(),
        });
    }

    let app_extensions = handshake::parse_extensions(resp.headers());
    let mut to_client = Response::new(ResponseBody::full(Bytes::new()));
    *to_client.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *to_client.headers_mut() = resp.headers().clone();
    let relay_mode = match offload {
        Some((agreement, server_bits)) => {
            let mut answer = app_extensions.clone();
            let ours = handshake::parse_extensions(&{
                let mut h = http::HeaderMap::new();
                if let Ok(v) = HeaderValue::from_str(&agreement.response(server_bits)) {
                    h.insert(handshake::SEC_EXTENSIONS, v);
                }
                h
            });
            answer.extend(ours);
            if let Ok(v) = HeaderValue::from_str(&handshake::render_extensions(&answer)) {
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
        mode: relay_mode,
        max_message: cfg.web_socket_max_message_size,
        ping_interval: nonzero(cfg.web_socket_ping_interval),
        idle_timeout: nonzero(cfg.web_socket_idle_timeout),
    };
    let app_upgrade = hyper::upgrade::on(resp);

    // The client connection's place under maxConnections stays taken for
    // as long as the WebSocket lives.
    let place = client.take_place();
    let shutdown = gw.ws.shutdown.clone();
    let pid = backend.pid;
    gw.ws.tasks.spawn(async move {
        let _slot = slot;
        let _place = place;
        let (c, a) = match tokio::try_join!(client_upgrade, app_upgrade) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(pid, "WebSocket upgrade did not complete: {e}");
                return;
            }
        };
        let Some((client, client_pre, app, app_pre)) = into_streams(c, a) else {
            tracing::error!(pid, "WebSocket connection is not a TCP stream; closing it");
            return;
        };
        let signals = relay::Signals {
            shutdown,
            retiring: backend.retiring.clone(),
            gone: backend.gone.clone(),
        };
        relay::run(client, client_pre, app, app_pre, settings, signals).await;
        tracing::debug!(pid, "WebSocket closed");
    });
    Ok((to_client, Some(pid)))
}

/// The TCP streams (and bytes already read) under both upgraded
/// connections. A plain fn so the upgrade wrappers do not stay in the
/// relay task's state for the connection's life.
fn into_streams(
    client: hyper::upgrade::Upgraded,
    app: hyper::upgrade::Upgraded,
) -> Option<(TcpStream, Bytes, TcpStream, Bytes)> {
    let c = client.downcast::<TokioIo<GuardedIo>>().ok()?;
    let a = app.downcast::<TokioIo<AppIo>>().ok()?;
    let (client, held) = c.io.into_inner().into_parts()?;
    // What hyper had read past the head comes first, then what the guard
    // still held back.
    let client_pre = match (c.read_buf.is_empty(), held.is_empty()) {
        (_, true) => c.read_buf,
        (true, false) => held,
        (false, false) => [c.read_buf, held].concat().into(),
    };
    Some((
        client,
        client_pre,
        a.io.into_inner().into_inner(),
        a.read_buf,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
