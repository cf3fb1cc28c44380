//! Plain HTTP: a request forwarded over `upstream.rs` and the app's
//! response streamed back.
//!
//! Owns the response side of a plain request: the cleaned head, an
//! Engine.IO polling handshake read whole to learn its session id, and
//! otherwise the body streamed frame by frame under `requestTimeout`, its
//! connection handed back to the pool when the body has ended. Must not
//! handle upgrades (`websocket/` does) or render errors (`error.rs` does).

use http::{Request, Response};
use hyper::body::Incoming;

use super::body::{AppBody, ResponseBody};
use super::client::Client;
use super::error::ProxyError;
use super::pool::Lease;
use super::upstream::{self, Answer, Purpose};
use super::{affinity, Gateway};
use crate::config::Config;

/// An Engine.IO open packet is small; more is not a handshake answer.
const OPEN_PACKET_MAX: usize = 64 * 1024;

pub async fn handle(
    gw: &Gateway,
    cfg: &Config,
    req: Request<Incoming>,
    client: &Client,
) -> Result<(Response<ResponseBody>, Option<u32>), ProxyError> {
    let (mut parts, body) = req.into_parts();
    upstream::prepare(cfg, &mut parts, &client.peer, Purpose::Http)?;
    let answer = upstream::send(gw, cfg, parts, body, Purpose::Http).await?;
    let pid = answer.backend.pid;
    let resp = if answer.session.handshake && answer.resp.status() == http::StatusCode::OK {
        learn_session(gw, answer).await?
    } else {
        stream(gw, cfg, answer)
    };
    Ok((resp, Some(pid)))
}

/// The app's body streamed to the client; the connection goes back to the
/// pool when the body has been read to the end.
fn stream(gw: &Gateway, cfg: &Config, a: Answer) -> Response<ResponseBody> {
    let (mut parts, body) = a.resp.into_parts();
    upstream::clean_answer(&mut parts, a.backend.pid);
    let lease = a.backend.requests.token();
    let body = AppBody::new(body, a.activity, upstream::request_limit(cfg), lease)
        .reuse(Lease::new(gw.pool.clone(), a.conn));
    Response::from_parts(parts, ResponseBody::app(body))
}

/// An Engine.IO polling handshake: its open packet names the session,
/// which later requests with `sid=` must reach on the same process.
async fn learn_session(gw: &Gateway, a: Answer) -> Result<Response<ResponseBody>, ProxyError> {
    let (mut parts, body) = a.resp.into_parts();
    upstream::clean_answer(&mut parts, a.backend.pid);
    let limited = http_body_util::Limited::new(body, OPEN_PACKET_MAX);
    let bytes = http_body_util::BodyExt::collect(limited)
        .await
        .map_err(|e| ProxyError::Backend {
            pid: a.backend.pid,
            reason: e.to_string(),
        })?
        .to_bytes();
    if let Some((sid, ttl)) = affinity::parse_open_packet(&bytes) {
        gw.affinity.learn(sid, a.backend.pid, ttl);
    }
    gw.pool.put(a.conn);
    Ok(Response::from_parts(parts, ResponseBody::full(bytes)))
}
