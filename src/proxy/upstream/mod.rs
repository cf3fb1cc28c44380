//! The one way to the app, shared by plain HTTP and WebSocket upgrades:
//! rewrite the head, pick a process, connect, send, and decide whose fault
//! a failure is.
//!
//! Phases, in order: `prepare` (Host from an absolute-form target,
//! hop-by-hop out, forwarding headers in), `send` (the Socket.IO session's
//! process or round-robin, a pooled connection for HTTP or a fresh one for
//! an upgrade, one re-pick when a connect fails, a second try when a
//! kept-alive connection turns out closed, the process-exit grace and the
//! `requestTimeout` inactivity guard), and `failed`/`explain_exit`, which
//! name the client, the app or hpgate as the cause. `clean_answer` fixes
//! the answer's head the same way for both paths.
//!
//! A request without a body takes the lean path (`lean.rs`: the same
//! phases around hpgate's own HTTP/1 client, `proxy/lean/`, after
//! `prepare_lean`, which leaves the forwarding fields to be written with
//! the head when the request has nothing to strip); the rest, and every
//! upgrade, go through hyper's client here.
//!
//! Owns nothing of what happens to the answer afterwards: `forward.rs`
//! streams an HTTP body, `websocket/` takes over a 101.

mod lean;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tokio::time::timeout;

use super::activity::Activity;
use super::affinity;
use super::app_io;
use super::error::{ProxyError, UnavailableDisplay};
use super::headers::{self, Peer};
use super::host;
use super::pool::{Conn, ConnectError};
use super::request_body::{ClientStalled, RequestBody};
use super::waits::{Clock, Gone, Waits};
use super::Gateway;
use crate::config::Config;
use crate::supervisor::{exit_seen, Backend, Seen};
pub use lean::{send_lean, takes_lean};

/// What a request goes to the app for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A request and its response; the connection is pooled.
    Http,
    /// A protocol switch: the connection is the request's own and becomes
    /// the WebSocket after a 101.
    Upgrade,
}

/// The app's answer and everything the response side needs.
pub struct Answer {
    pub resp: Response<Incoming>,
    pub conn: Conn,
    pub backend: Arc<Backend>,
    pub activity: Arc<Activity>,
    pub session: Session,
}

/// `requestTimeout`: how long the app may keep an exchange quiet.
pub fn request_limit(cfg: &Config) -> Option<Duration> {
    (!cfg.request_timeout.is_zero()).then_some(cfg.request_timeout)
}

/// `clientBodyTimeout`: how long the client may owe request body bytes.
fn client_body_limit(cfg: &Config) -> Option<Duration> {
    (!cfg.client_body_timeout.is_zero()).then_some(cfg.client_body_timeout)
}

/// Rewrites the head for the app: Host from an absolute-form target,
/// hop-by-hop out (Upgrade kept for an upgrade), forwarding headers in.
pub fn prepare(
    cfg: &Config,
    parts: &mut http::request::Parts,
    peer: &Peer,
    purpose: Purpose,
) -> Result<(), ProxyError> {
    host::from_target(&parts.uri, &mut parts.headers)?;
    headers::strip_hop_by_hop(&mut parts.headers, purpose == Purpose::Upgrade);
    headers::strip_spoofable(&mut parts.headers);
    headers::add_forwarded(&mut parts.headers, peer, cfg.trust_forwarded_headers);
    parts.version = Version::HTTP_11;
    Ok(())
}

/// Where a lean request's forwarding fields are.
pub enum Forwarding {
    /// `prepare` put them in the map (the request had fields to strip or
    /// forwarding fields of its own).
    InMap,
    /// To be written after the map's fields (`headers::write_forwarded`);
    /// whether the client sent a Host (read from the map when written: a
    /// clone here cost two atomic reference counts per request).
    Written { client_host: bool },
}

/// `prepare` for a request on the lean path. The common request carries
/// nothing to strip and no forwarding fields: its forwarding fields are
/// then written with its head, not inserted into its map (four map
/// insertions and two allocations fewer per request; the app gets the
/// same bytes).
pub fn prepare_lean(
    cfg: &Config,
    parts: &mut http::request::Parts,
    peer: &Peer,
) -> Result<Forwarding, ProxyError> {
    if !headers::nothing_to_strip(&parts.headers) || parts.uri.authority().is_some() {
        prepare(cfg, parts, peer, Purpose::Http)?;
        return Ok(Forwarding::InMap);
    }
    parts.version = Version::HTTP_11;
    Ok(Forwarding::Written {
        client_host: parts.headers.contains_key(header::HOST),
    })
}

/// Picks a process, connects and sends the prepared request; the answer's
/// head, or the failure with its cause.
pub async fn send(
    gw: &Gateway,
    cfg: &Config,
    mut parts: http::request::Parts,
    body: Incoming,
    purpose: Purpose,
) -> Result<Answer, ProxyError> {
    let session = Session::of(gw, cfg, &parts);
    let activity = Activity::new();
    let replay_ok = http_body::Body::is_end_stream(&body);
    let body = RequestBody::new(body, activity.clone(), client_body_limit(cfg))
        .counting(gw.sup.metrics().request_bytes.clone());
    let (backend, conn) = match purpose {
        Purpose::Http => {
            let seen = &mut Seen::default();
            pick_and_connect(gw, session.pid, seen, |a| gw.pool.get(a)).await?
        }
        Purpose::Upgrade => {
            let backend = pick(gw, session.pid).await?;
            // A connection of its own: after the 101 it becomes the WebSocket.
            let conn = gw.pool.connect(backend.addr, true).await;
            let conn = conn.map_err(|e| connect_error(e, &backend))?;
            (backend, conn)
        }
    };
    with_target(&mut parts, &backend)?;
    let replay = (purpose == Purpose::Http && replay_ok)
        .then(|| replayable(&parts, &conn))
        .flatten();
    let req = Request::from_parts(parts, body);
    let limit = request_limit(cfg);
    let r = guarded(gw, conn, req, replay, &backend, &activity, limit).await;
    let (resp, conn) = explain_exit(r, &backend).await?;
    Ok(Answer {
        resp,
        conn,
        backend,
        activity,
        session,
    })
}

/// The answer's head as the client gets it: the app's framing mistakes
/// undone, hop-by-hop headers out, HTTP/1.1 whatever the app spoke.
/// `hop_by_hop_gone` when they never entered the map (the lean path reads
/// them out while parsing, `proxy/lean/fields.rs`) but for a
/// Transfer-Encoding kept beside a Content-Length for `app_framing`.
pub fn clean_answer(parts: &mut http::response::Parts, pid: u32, hop_by_hop_gone: bool) {
    let both = app_framing(&mut parts.headers, pid);
    if !hop_by_hop_gone {
        headers::strip_hop_by_hop(&mut parts.headers, false);
    } else if both {
        headers::remove_all(&mut parts.headers, &header::TRANSFER_ENCODING);
    }
    parts.version = Version::HTTP_11;
}

/// A response that carries both Content-Length and Transfer-Encoding was
/// read by its Transfer-Encoding (RFC 9112 section 6.3: it overrides); its
/// Content-Length is the app's mistake and must not reach the client, who
/// would frame the body by it. True when it was dropped.
fn app_framing(headers: &mut http::HeaderMap, pid: u32) -> bool {
    let both = headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH);
    if both {
        // Not `HeaderMap::remove`: it moves the last field into the hole.
        headers::remove_all(headers, &header::CONTENT_LENGTH);
        tracing::warn!(
            pid,
            "the app sent a response with both Content-Length and Transfer-Encoding (RFC 9112 section 6.3 forbids it); hpgate read it by Transfer-Encoding and dropped Content-Length. Fix the app or its server."
        );
    }
    both
}

/// What a request says about its Socket.IO session.
pub struct Session {
    /// The process that holds the session (from `sid=`), if known.
    pub pid: Option<u32>,
    /// An Engine.IO polling handshake: its response names the new session.
    pub handshake: bool,
}

impl Session {
    fn of(gw: &Gateway, cfg: &Config, parts: &http::request::Parts) -> Session {
        let none = Session {
            pid: None,
            handshake: false,
        };
        if !cfg.socket_io_affinity || !parts.uri.path().starts_with(cfg.socket_io_path.as_str()) {
            return none;
        }
        let query = parts.uri.query().unwrap_or("");
        match affinity::query_param(query, "sid") {
            Some(sid) => Session {
                pid: gw.affinity.lookup(sid),
                handshake: false,
            },
            None => Session {
                pid: None,
                handshake: parts.method == http::Method::GET
                    && affinity::query_param(query, "transport") == Some("polling"),
            },
        }
    }
}

async fn pick(gw: &Gateway, prefer_pid: Option<u32>) -> Result<Arc<Backend>, ProxyError> {
    gw.sup
        .pick(prefer_pid)
        .await
        .map_err(|u| ProxyError::Unavailable(UnavailableDisplay(u)))
}

/// The head `service::respond` lends, taken for a path that needs it
/// owned (hyper's client, the WebSocket upgrade); an empty one is left in
/// its place.
pub fn take_head(head: &mut http::request::Parts) -> http::request::Parts {
    std::mem::replace(head, http::Request::new(()).into_parts().0)
}

/// Puts the request in origin form for the app (the path and query stay
/// byte-for-byte) and gives it a Host if the client sent none (HTTP/1.0):
/// HTTP/1.1 requires one.
fn with_target(parts: &mut http::request::Parts, backend: &Backend) -> Result<(), ProxyError> {
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = Uri::from(pq);
    }
    if !parts.headers.contains_key(header::HOST) {
        let host = http::HeaderValue::from_str(&backend.addr.to_string())
            .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))?;
        parts.headers.insert(header::HOST, host);
    }
    Ok(())
}

/// A ready process and a connection to it (`get` connects, from one pool
/// or the other). When the connect fails (the process went away between
/// the pick and the connect) another pick gets one more chance; the
/// request has not been touched yet.
async fn pick_and_connect<C, F>(
    gw: &Gateway,
    prefer_pid: Option<u32>,
    seen: &mut Seen,
    get: impl Fn(SocketAddr) -> F,
) -> Result<(Arc<Backend>, C), ProxyError>
where
    F: std::future::Future<Output = Result<C, ConnectError>>,
{
    let backend = gw
        .sup
        .pick_seen(prefer_pid, seen)
        .await
        .map_err(|u| ProxyError::Unavailable(UnavailableDisplay(u)))?;
    match get(backend.addr).await {
        Ok(conn) => Ok((backend, conn)),
        Err(first) => {
            // The process may be gone before the supervisor has heard:
            // nothing seen is kept.
            *seen = Seen::default();
            let again = pick(gw, None).await?;
            match get(again.addr).await {
                Ok(conn) => Ok((again, conn)),
                Err(e) => {
                    tracing::debug!(pid = backend.pid, "connect failed: {first}");
                    Err(connect_error(e, &again))
                }
            }
        }
    }
}

fn connect_error(e: ConnectError, backend: &Backend) -> ProxyError {
    ProxyError::Connect {
        pid: backend.pid,
        port: backend.addr.port(),
        reason: e.to_string(),
    }
}

/// A copy of the head of a request that may be sent again when a reused
/// app connection turns out to have been closed by the app just as the
/// request went out (the keep-alive race: the app's FIN was still on its
/// way). Only for requests that are safe to repeat (RFC 9110 section
/// 9.2.2) and carry no body, as nginx does; the copy costs a header map
/// clone, so it is made only on reused connections.
fn replayable(parts: &http::request::Parts, conn: &Conn) -> Option<Request<()>> {
    if !(conn.reused && safe_to_repeat(&parts.method)) {
        return None;
    }
    let mut head = Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = parts.uri.clone();
    *head.version_mut() = parts.version;
    *head.headers_mut() = parts.headers.clone();
    Some(head)
}

/// RFC 9110 section 9.2.2: methods whose repetition does no harm.
fn safe_to_repeat(method: &http::Method) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The app closed the connection under a request without answering it.
fn closed_unanswered(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() {
        return true;
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
        }
        src = s.source();
    }
    false
}

/// Sends on `conn` under the inactivity guard and the exit grace. If a kept-alive connection turns out to have been
/// closed by the app under the request, sends once more on a new connection
/// to the same process: when hyper hands the unsent request back, or when
/// a `replay` copy exists and the app answered nothing.
async fn guarded(
    gw: &Gateway,
    mut conn: Conn,
    req: Request<RequestBody>,
    replay: Option<Request<()>>,
    backend: &Arc<Backend>,
    activity: &Arc<Activity>,
    limit: Option<Duration>,
) -> Result<(Response<Incoming>, Conn), ProxyError> {
    let exchange = async {
        let mut e = match conn.tx.try_send_request(req).await {
            Ok(resp) => return Ok((resp, conn)),
            Err(e) => e,
        };
        // On a reused connection the app may have closed it as the request
        // went out: send it again on a new one if hyper never sent it, or
        // if it is safe to repeat and the app answered nothing.
        let again = match e.take_message() {
            Some(req) if conn.reused => req,
            None if closed_unanswered(e.error()) => match replay {
                Some(head) => head.map(|()| RequestBody::empty(activity.clone())),
                None => return Err(failed(e.error(), backend, activity)),
            },
            _ => return Err(failed(e.error(), backend, activity)),
        };
        let mut fresh = gw
            .pool
            .connect(backend.addr, false)
            .await
            .map_err(|e| connect_error(e, backend))?;
        let resp = fresh
            .tx
            .send_request(again)
            .await
            .map_err(|e| failed(&e, backend, activity))?;
        Ok((resp, fresh))
    };
    // hyper's client path waits per request (see `waits.rs`).
    let mut waits = Waits::default();
    watched(
        std::pin::pin!(exchange),
        backend,
        activity,
        limit,
        &mut waits,
    )
    .await
}

/// Runs an exchange under the process-exit grace and the `requestTimeout`
/// inactivity guard (both paths to the app), on the connection's `waits`.
///
/// Callers pass the exchange pinned in their own state (`pin!`): taken by
/// value, it would be moved into this future and again into `unless_gone`,
/// a copy of its whole state per request at each step.
async fn watched<T>(
    exchange: impl std::future::Future<Output = Result<T, ProxyError>>,
    backend: &Arc<Backend>,
    activity: &Activity,
    limit: Option<Duration>,
    waits: &mut Waits,
) -> Result<T, ProxyError> {
    let Waits { clock, gone, .. } = waits;
    let idle = async {
        match limit {
            Some(l) => app_idle(clock, activity, l).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        r = unless_gone(exchange, backend, gone) => r,
        _ = idle => Err(ProxyError::Timeout { secs: limit.map_or(0, |l| l.as_secs()) }),
    }
}

/// Resolves once nothing has moved for `limit` by the app's doing.
async fn app_idle(clock: &mut Clock, activity: &Activity, limit: Duration) {
    // The wait first: the exchange has just begun, and its first deadline
    // needs no clock reading to tell that it has not passed.
    loop {
        clock.until((activity.last() + limit).into()).await;
        if activity.app_idle_past(limit) {
            return;
        }
    }
}

/// A closed connection is usually the process dying on this request; the
/// supervisor hears of the exit a moment later. Say that, rather than what
/// the socket said.
async fn explain_exit<T>(r: Result<T, ProxyError>, backend: &Backend) -> Result<T, ProxyError> {
    match r {
        Err(ProxyError::Backend { .. } | ProxyError::Connect { .. })
            if Box::pin(exit_seen(&backend.gone)).await =>
        {
            Err(ProxyError::ProcessExited { pid: backend.pid })
        }
        r => r,
    }
}

/// How long an exchange with a process that has just exited may still end
/// on its own. The supervisor often sees the exit before the proxy has read
/// what the process wrote last (a response head, then a crash): that answer
/// is the app's and must reach the client, not a 502.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// Runs an exchange with `backend`; if the process exits meanwhile, the
/// exchange gets `EXIT_GRACE` to finish (its socket normally ends at once)
/// before the request fails as `ProcessExited`.
async fn unless_gone<T>(
    exchange: impl std::future::Future<Output = Result<T, ProxyError>>,
    backend: &Arc<Backend>,
    gone: &mut Gone,
) -> Result<T, ProxyError> {
    let mut exchange = std::pin::pin!(exchange);
    tokio::select! {
        biased;
        r = &mut exchange => r,
        _ = gone.wait(backend) => {
            timeout(EXIT_GRACE, exchange)
                .await
                .unwrap_or(Err(ProxyError::ProcessExited { pid: backend.pid }))
        }
    }
}

/// A failed exchange with the app, as the client will hear of it: a client
/// that stalled mid-body (408) or broke its body (400) is at fault itself;
/// otherwise the app is (502), naming a malformed answer as such.
fn failed(e: &hyper::Error, backend: &Backend, activity: &Activity) -> ProxyError {
    if activity.client_stalled() {
        let secs = in_chain::<ClientStalled>(e).map_or(0, |c| c.0);
        return ProxyError::ClientTimeout { secs };
    }
    if activity.client_failed() {
        return ProxyError::BadRequest("the request body is malformed or ended early");
    }
    if let Some(m) = app_io::malformed_in(e) {
        return ProxyError::BadResponse {
            pid: backend.pid,
            reason: m.to_string(),
        };
    }
    // hyper refused the answer's head (a status, a field, its framing): the
    // app answered wrongly, which no exit explains and no resend mends.
    if e.is_parse() {
        return ProxyError::BadResponse {
            pid: backend.pid,
            reason: format!("hyper's client could not read its head ({e})"),
        };
    }
    let mut reason = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        reason = format!("{reason}: {s}");
        src = s.source();
    }
    ProxyError::Backend {
        pid: backend.pid,
        reason,
    }
}

/// The first error of type `T` in `e`'s source chain.
fn in_chain<T: std::error::Error + 'static>(e: &hyper::Error) -> Option<&T> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(t) = s.downcast_ref::<T>() {
            return Some(t);
        }
        src = s.source();
    }
    None
}
