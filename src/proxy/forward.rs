//! Plain HTTP: a request forwarded over `upstream.rs` and the app's
//! response streamed back.
//!
//! Owns the response side of a plain request: the cleaned head, an
//! Engine.IO polling handshake read whole to learn its session id, and
//! otherwise the body streamed frame by frame under `requestTimeout`, its
//! connection handed back to the pool when the body has ended. Must not
//! handle upgrades (`websocket/` does) or render errors (`error.rs` does).

use std::sync::Arc;

use http::{request, Response};
use hyper::body::Incoming;

use super::activity::Activity;
use super::body::{AppBody, AppSource, ResponseBody};
use super::client::Client;
use super::error::ProxyError;
use super::pool::Lease;
use super::upstream::{self, Purpose, Session};
use super::waits::Waits;
use super::{affinity, Gateway};
use crate::config::Config;
use crate::supervisor::Backend;

/// An Engine.IO open packet is small; more is not a handshake answer.
const OPEN_PACKET_MAX: usize = 64 * 1024;

/// The app's answer, whichever client fetched it.
struct Reply {
    parts: http::response::Parts,
    body: AppSource,
    /// hyper's connection, back to its pool after the body; None on the
    /// lean path, whose body hands its socket back itself and whose head
    /// never held hop-by-hop fields.
    lease: Option<Lease>,
    backend: Arc<Backend>,
    activity: Arc<Activity>,
    session: Session,
}

pub async fn handle(
    gw: &Gateway,
    cfg: &Config,
    head: &mut request::Parts,
    body: Option<Incoming>,
    client: &Client,
    waits: &mut Waits,
) -> Result<(Response<ResponseBody>, Option<u32>), ProxyError> {
    let body = body.filter(|b| !upstream::takes_lean(b));
    let reply = if let Some(body) = body {
        let mut parts = upstream::take_head(head);
        upstream::prepare(cfg, &mut parts, &client.peer, Purpose::Http)?;
        // Boxed: hyper's path is the rarer one here, and its future's size
        // would otherwise be moved with every bodiless request's.
        let a = Box::pin(upstream::send(gw, cfg, parts, body, Purpose::Http)).await?;
        let (parts, body) = a.resp.into_parts();
        Reply {
            parts,
            body: body.into(),
            lease: Some(Lease::new(gw.pool.clone(), a.conn)),
            backend: a.backend,
            activity: a.activity,
            session: a.session,
        }
    } else {
        let forwarding = upstream::prepare_lean(cfg, head, &client.peer)?;
        let a = upstream::send_lean(gw, cfg, head, forwarding, &client.peer, waits).await?;
        Reply {
            parts: a.parts,
            body: a.body.into(),
            lease: None,
            backend: a.backend,
            activity: a.activity,
            session: a.session,
        }
    };
    let pid = reply.backend.pid;
    let resp = if reply.session.handshake && reply.parts.status == http::StatusCode::OK {
        // Boxed: only Engine.IO handshakes take it.
        Box::pin(learn_session(gw, reply)).await?
    } else {
        stream(cfg, reply)
    };
    Ok((resp, Some(pid)))
}

/// The app's body streamed to the client; the connection goes back to the
/// pool when the body has been read to the end.
fn stream(cfg: &Config, mut r: Reply) -> Response<ResponseBody> {
    upstream::clean_answer(&mut r.parts, r.backend.pid, r.lease.is_none());
    let token = r.backend.requests.token();
    let body = AppBody::new(r.body, r.activity, upstream::request_limit(cfg), token).reuse(r.lease);
    Response::from_parts(r.parts, ResponseBody::app(body))
}

/// An Engine.IO polling handshake: its open packet names the session,
/// which later requests with `sid=` must reach on the same process.
async fn learn_session(gw: &Gateway, mut r: Reply) -> Result<Response<ResponseBody>, ProxyError> {
    // The answer gets a body of its own: the fields go into its map.
    if let Some(passed) = r.body.take_passed() {
        passed.into_map(&mut r.parts.headers);
    }
    upstream::clean_answer(&mut r.parts, r.backend.pid, r.lease.is_none());
    let limited = http_body_util::Limited::new(r.body, OPEN_PACKET_MAX);
    let bytes = http_body_util::BodyExt::collect(limited)
        .await
        .map_err(|e| ProxyError::Backend {
            pid: r.backend.pid,
            reason: e.to_string(),
        })?
        .to_bytes();
    if let Some((sid, ttl)) = affinity::parse_open_packet(&bytes) {
        gw.affinity.learn(sid, r.backend.pid, ttl);
    }
    if let Some(lease) = r.lease {
        lease.release();
    }
    Ok(Response::from_parts(r.parts, ResponseBody::full(bytes)))
}
