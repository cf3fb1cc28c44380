//! The forwarding service: one client request in, one app response out.
//!
//! Phases, in order: `check_limits` and framing (431/414/400 before
//! anything reaches the app), `prepare_upstream_head` (headers rewritten),
//! `pick_and_connect` (a ready process and a pooled connection to it),
//! `with_target`, `send` (inactivity limit, the retries a closed keep-alive
//! connection allows, the exit grace), then the response: hop-by-hop
//! removed, body streamed by `Upstream`, which hands the connection back to
//! the pool when the body has ended. Errors become pages in `error.rs`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tokio::time::timeout;

use super::affinity::{self, Affinity};
use super::app_io;
use super::body::{AccessLog, Activity, ClientStalled, RequestBody, ResponseBody, Upstream};
use super::client::Client;
use super::error::{ProxyError, UnavailableDisplay};
use super::guard::Decision;
use super::headers::{self, Peer};
use super::host;
use super::pool::{Conn, ConnectError, Pool};
use super::websocket;
use crate::config::Config;
use crate::supervisor::{exit_seen, Backend, Supervisor};

/// Shared by every connection.
pub struct Gateway {
    pub sup: Supervisor,
    pub pool: Arc<Pool>,
    pub ws: websocket::Registry,
    pub affinity: Affinity,
}

impl Gateway {
    pub fn new(sup: Supervisor, ws: websocket::Registry) -> Gateway {
        Gateway {
            sup,
            pool: Arc::new(Pool::new(Duration::from_secs(30), Duration::from_secs(5))),
            ws,
            affinity: Affinity::default(),
        }
    }
}

/// hyper service entry point: never fails; errors are rendered as pages.
pub async fn handle(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
    client: Arc<Client>,
) -> Result<Response<ResponseBody>, Infallible> {
    let start = Instant::now();
    // The guard holds what follows an upgrade request until it knows
    // whether the protocol switched; dropped without a 101 it stays HTTP.
    let upgrade = req
        .headers()
        .contains_key(header::UPGRADE)
        .then(|| Decision::new(&client.gate));
    let cfg = gw.sup.config();
    let html = accepts_html(&req);
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let (mut resp, pid) = match forward(&gw, &cfg, req, &client).await {
        Ok(ok) => ok,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::error!(%method, %path, "{e}");
            } else {
                tracing::info!(%method, %path, "{e}");
            }
            (e.into_response(html, cfg.detailed_errors), None)
        }
    };
    let status = resp.status().as_u16();
    if let Some(d) = upgrade.filter(|_| status == 101) {
        d.switched();
    }
    resp.body_mut().set_log(AccessLog {
        method,
        path,
        status,
        pid,
        start,
        bytes: 0,
        complete: false,
    });
    Ok(resp)
}

fn accepts_html(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

async fn forward(
    gw: &Gateway,
    cfg: &Config,
    req: Request<Incoming>,
    client: &Client,
) -> Result<(Response<ResponseBody>, Option<u32>), ProxyError> {
    check_limits(cfg, &req)?;
    host::check(req.version(), req.headers())?;
    if websocket::is_upgrade(&req) {
        return websocket::handle(gw, cfg, req, client).await;
    }
    let peer = &client.peer;

    let limit = (!cfg.request_timeout.is_zero()).then_some(cfg.request_timeout);
    let activity = Activity::new();
    let (mut parts, body) = req.into_parts();
    prepare_upstream_head(cfg, &mut parts, peer, false)?;

    let session = Session::of(gw, cfg, &parts);
    let (backend, conn) = pick_and_connect(gw, session.pid).await?;
    let lease = backend.requests.token();
    let parts = with_target(parts, &backend)?;
    let replay = replayable(&parts, &body, &conn);
    let body = RequestBody::new(body, activity.clone(), client_body_limit(cfg));
    let up = Request::from_parts(parts, body);
    let (resp, conn) = send(gw, conn, up, replay, &backend, &activity, limit).await?;

    let (mut parts, body) = resp.into_parts();
    app_framing(&mut parts.headers, backend.pid);
    headers::strip_hop_by_hop(&mut parts.headers, false);
    // hpgate speaks HTTP/1.1 to the client whatever the app spoke.
    parts.version = Version::HTTP_11;
    if session.handshake && parts.status == http::StatusCode::OK {
        // The open packet is small: read it to learn the session id.
        let bytes = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 64 * 1024))
            .await
            .map_err(|e| ProxyError::Backend {
                pid: backend.pid,
                reason: e.to_string(),
            })?
            .to_bytes();
        if let Some((sid, ttl)) = affinity::parse_open_packet(&bytes) {
            gw.affinity.learn(sid, backend.pid, ttl);
        }
        gw.pool.put(conn);
        return Ok((
            Response::from_parts(parts, ResponseBody::full(bytes)),
            Some(backend.pid),
        ));
    }
    let body = Upstream::new(body, activity, limit, lease).reuse(gw.pool.clone(), conn);
    Ok((
        Response::from_parts(parts, ResponseBody::upstream(body)),
        Some(backend.pid),
    ))
}

/// `clientBodyTimeout`: how long the client may owe request body bytes.
pub(super) fn client_body_limit(cfg: &Config) -> Option<Duration> {
    (!cfg.client_body_timeout.is_zero()).then_some(cfg.client_body_timeout)
}

/// A response that carries both Content-Length and Transfer-Encoding was
/// read by its Transfer-Encoding (RFC 9112 section 6.3: it overrides); its
/// Content-Length is the app's mistake and must not reach the client, who
/// would frame the body by it.
pub(super) fn app_framing(headers: &mut http::HeaderMap, pid: u32) {
    if headers.contains_key(header::TRANSFER_ENCODING)
        && headers.remove(header::CONTENT_LENGTH).is_some()
    {
        tracing::warn!(
            pid,
            "the app sent a response with both Content-Length and Transfer-Encoding (RFC 9112 section 6.3 forbids it); hpgate read it by Transfer-Encoding and dropped Content-Length. Fix the app or its server."
        );
    }
}

/// What a request says about its Socket.IO session.
pub(super) struct Session {
    /// The process that holds the session (from `sid=`), if known.
    pub pid: Option<u32>,
    /// An Engine.IO polling handshake: its response names the new session.
    pub handshake: bool,
}

impl Session {
    pub(super) fn of(gw: &Gateway, cfg: &Config, parts: &http::request::Parts) -> Session {
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

pub(super) async fn pick(gw: &Gateway, prefer_pid: Option<u32>) -> Result<Backend, ProxyError> {
    gw.sup
        .pick(prefer_pid)
        .await
        .map_err(|u| ProxyError::Unavailable(UnavailableDisplay(u)))
}

/// Rewrites the head for the app: hop-by-hop out, forwarding headers in.
pub(super) fn prepare_upstream_head(
    cfg: &Config,
    parts: &mut http::request::Parts,
    peer: &Peer,
    keep_upgrade: bool,
) -> Result<(), ProxyError> {
    host::from_target(&parts.uri, &mut parts.headers)?;
    headers::strip_hop_by_hop(&mut parts.headers, keep_upgrade);
    headers::strip_spoofable(&mut parts.headers);
    headers::add_forwarded(&mut parts.headers, peer, cfg.trust_forwarded_headers);
    parts.version = Version::HTTP_11;
    Ok(())
}

/// Puts the request in origin form for the app (the path and query stay
/// byte-for-byte) and gives it a Host if the client sent none (HTTP/1.0):
/// HTTP/1.1 requires one.
pub(super) fn with_target(
    mut parts: http::request::Parts,
    backend: &Backend,
) -> Result<http::request::Parts, ProxyError> {
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
    Ok(parts)
}

/// A ready process and a connection to it. When the connect fails (the
/// process went away between the pick and the connect) another pick gets
/// one more chance; the request has not been touched yet.
pub(super) async fn pick_and_connect(
    gw: &Gateway,
    prefer_pid: Option<u32>,
) -> Result<(Backend, Conn), ProxyError> {
    let backend = pick(gw, prefer_pid).await?;
    match gw.pool.get(backend.addr).await {
        Ok(conn) => Ok((backend, conn)),
        Err(first) => {
            let again = pick(gw, None).await?;
            match gw.pool.get(again.addr).await {
                Ok(conn) => Ok((again, conn)),
                Err(e) => {
                    tracing::debug!(pid = backend.pid, "connect failed: {first}");
                    Err(connect_error(e, &again))
                }
            }
        }
    }
}

pub(super) fn connect_error(e: ConnectError, backend: &Backend) -> ProxyError {
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
fn replayable(parts: &http::request::Parts, body: &Incoming, conn: &Conn) -> Option<Request<()>> {
    use http::Method;
    let safe = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !(conn.reused && safe && http_body::Body::is_end_stream(body)) {
        return None;
    }
    let mut head = Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = parts.uri.clone();
    *head.version_mut() = parts.version;
    *head.headers_mut() = parts.headers.clone();
    Some(head)
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

/// Sends on `conn`. If a kept-alive connection turns out to have been
/// closed by the app under the request, sends once more on a new connection
/// to the same process: when hyper hands the unsent request back, or when
/// a `replay` copy exists and the app answered nothing.
async fn send(
    gw: &Gateway,
    mut conn: Conn,
    req: Request<RequestBody>,
    replay: Option<Request<()>>,
    backend: &Backend,
    activity: &Arc<Activity>,
    limit: Option<Duration>,
) -> Result<(Response<Incoming>, Conn), ProxyError> {
    let idle = async {
        match limit {
            Some(l) => activity.idle_for(l).await,
            None => std::future::pending().await,
        }
    };
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
    let r = tokio::select! {
        r = unless_gone(exchange, backend) => r,
        _ = idle => Err(ProxyError::Timeout { secs: limit.map_or(0, |l| l.as_secs()) }),
    };
    match r {
        // A closed connection is usually the process dying on this request;
        // the supervisor hears of the exit a moment later. Say that, rather
        // than what the socket said.
        Err(ProxyError::Backend { .. } | ProxyError::Connect { .. })
            if exit_seen(&backend.gone).await =>
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
pub(super) async fn unless_gone<T>(
    exchange: impl std::future::Future<Output = Result<T, ProxyError>>,
    backend: &Backend,
) -> Result<T, ProxyError> {
    let mut exchange = std::pin::pin!(exchange);
    tokio::select! {
        biased;
        r = &mut exchange => r,
        _ = backend.gone.cancelled() => {
            timeout(EXIT_GRACE, exchange)
                .await
                .unwrap_or(Err(ProxyError::ProcessExited { pid: backend.pid }))
        }
    }
}

/// A failed exchange with the app, as the client will hear of it: a client
/// that stalled mid-body (408) or broke its body (400) is at fault itself;
/// otherwise the app is (502), naming a malformed answer as such.
pub(super) fn failed(e: &hyper::Error, backend: &Backend, activity: &Activity) -> ProxyError {
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

/// Limits hyper does not enforce with the statuses RFC 9110 names.
fn check_limits(cfg: &Config, req: &Request<Incoming>) -> Result<(), ProxyError> {
    // The request line as sent: method, target, " HTTP/1.1\r\n".
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len() + 7);
    let line = req.method().as_str().len() + target + 11;
    if line as u64 > cfg.max_request_line_bytes {
        return Err(ProxyError::UriTooLong(format!(
            "{line} bytes, over maxRequestLineBytes ({})",
            cfg.max_request_line_bytes
        )));
    }
    let count = req.headers().len();
    if count as u64 > cfg.max_request_headers {
        return Err(ProxyError::HeadersTooLarge(format!(
            "{count} header fields, over maxRequestHeaders ({})",
            cfg.max_request_headers
        )));
    }
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size as u64 > cfg.max_request_header_bytes {
        return Err(ProxyError::HeadersTooLarge(format!(
            "{size} bytes of header fields, over maxRequestHeaderBytes ({})",
            cfg.max_request_header_bytes
        )));
    }
    Ok(())
}
