//! The lean path's turn through `upstream`: a request without a body goes
//! to the app over hpgate's own HTTP/1 client (`proxy/lean/`) with the
//! same phases as hyper's path in `mod.rs`: the session's process or
//! round-robin, one re-pick when a connect fails, the process-exit grace,
//! the `requestTimeout` guard, and whose fault a failure is.
//!
//! The second try mirrors hyper's path: a reused connection the app had
//! closed gets the request again on a new one when the head never went
//! out, or when it went out unanswered and the method is safe to repeat.

use std::sync::Arc;

use http::{header, request, response, Method};
use hyper::body::Incoming;

use super::{
    connect_error, explain_exit, pick_and_connect, request_limit, safe_to_repeat, watched,
    with_target, Forwarding, Session,
};
use crate::config::Config;
use crate::proxy::activity::Activity;
use crate::proxy::error::ProxyError;
use crate::proxy::headers::{self, Peer};
use crate::proxy::lean::{self, ExchangeError, LeanBody};
use crate::proxy::pool::raw::RawConn;
use crate::proxy::waits::Waits;
use crate::proxy::Gateway;
use crate::supervisor::Backend;

/// The app's answer on the lean path: its head, and its body still on the
/// socket.
pub struct LeanAnswer {
    pub parts: response::Parts,
    pub body: Box<LeanBody>,
    pub backend: Arc<Backend>,
    pub activity: Arc<Activity>,
    pub session: Session,
}

/// Whether a plain HTTP request takes the lean path: its body is known to
/// be empty (no Content-Length or zero, no chunked body). Upgrades never
/// do (`websocket/` sends them through `send`).
pub fn takes_lean(body: &Incoming) -> bool {
    http_body::Body::is_end_stream(body)
}

/// Picks a process, connects, sends the prepared bodiless request and
/// reads the answer's head.
pub async fn send_lean(
    gw: &Gateway,
    cfg: &Config,
    parts: &mut request::Parts,
    forwarding: Forwarding,
    peer: &Peer,
    waits: &mut Waits,
) -> Result<LeanAnswer, ProxyError> {
    let session = Session::of(gw, cfg, parts);
    let activity = Activity::new();
    let (backend, conn) =
        pick_and_connect(gw, session.pid, &mut waits.seen, |a| gw.raw.get(a)).await?;
    // A Host read for the forwarding fields means origin form and a Host
    // already (`prepare_lean`): nothing for `with_target` to do.
    if !matches!(forwarding, Forwarding::Written { client_host: true }) {
        with_target(parts, &backend)?;
    }
    let mut head = Vec::with_capacity(512);
    lean::write_request(parts, &mut head, |out| {
        if let Forwarding::Written { client_host } = forwarding {
            // The client's Host, not one `with_target` added for the app.
            let host = client_host
                .then(|| parts.headers.get(header::HOST))
                .flatten();
            headers::write_forwarded(out, peer, host);
        }
    });
    let r = {
        let exchange = std::pin::pin!(send_head(gw, conn, &head, &parts.method, &backend));
        watched(exchange, &backend, &activity, request_limit(cfg), waits).await
    };
    let (parts, body) = explain_exit(r, &backend).await?;
    Ok(LeanAnswer {
        parts,
        body,
        backend,
        activity,
        session,
    })
}

/// One exchange, and the second try on a new connection when a reused one
/// turns out to have been closed by the app under the request.
async fn send_head(
    gw: &Gateway,
    conn: RawConn,
    head: &[u8],
    method: &Method,
    backend: &Backend,
) -> Result<(response::Parts, Box<LeanBody>), ProxyError> {
    let head_request = method == Method::HEAD;
    let reused = conn.reused;
    match lean::exchange(conn, gw.raw.clone(), head, head_request).await {
        Err(ExchangeError::Unanswered { sent, .. })
            if reused && (!sent || safe_to_repeat(method)) =>
        {
            let fresh = Box::pin(gw.raw.connect(backend.addr))
                .await
                .map_err(|e| connect_error(e, backend))?;
            Box::pin(lean::exchange(fresh, gw.raw.clone(), head, head_request))
                .await
                .map_err(|e| failed(e, backend))
        }
        r => r.map_err(|e| failed(e, backend)),
    }
}

/// A failed exchange as the client hears of it: a head the app got wrong
/// is a malformed response, a broken connection an incomplete answer
/// (`explain_exit` then says whether the process died).
fn failed(e: ExchangeError, backend: &Backend) -> ProxyError {
    match e {
        ExchangeError::Head(h) => ProxyError::BadResponse {
            pid: backend.pid,
            reason: h.to_string(),
        },
        e => ProxyError::Backend {
            pid: backend.pid,
            reason: e.to_string(),
        },
    }
}
