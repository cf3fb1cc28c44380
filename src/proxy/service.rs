//! One client request in, one response out, whoever read it: `handle` is
//! hyper's service entry (HTTP/1.1 and HTTP/2), `respond` what the front
//! (`proxy/front/`) calls for the requests it reads itself.
//!
//! Phases: the upgrade decision for the guard, `check_limits` (414/431)
//! and the Host rules, then dispatch, once: a WebSocket handshake goes to
//! `websocket/`, everything else to `forward.rs`. Every failure is
//! rendered here by `error.rs`, logged by its source, and every response
//! gets its access-log line when its body ends. Must not talk to the app.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{header, request, Request, Response};
use hyper::body::Incoming;
use tracing::Instrument;

use super::body::{fields_into_map, AccessLog, ResponseBody};
use super::client::Client;
use super::error::ProxyError;
use super::guard::Decision;
use super::host;
use super::poll_clock;
use super::waits::Waits;
use super::{forward, upstream, websocket, Gateway};
use crate::config::Config;

/// hyper service entry point: never fails; errors are rendered as pages.
pub async fn handle(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
    client: Arc<Client>,
) -> Result<Response<ResponseBody>, Infallible> {
    // hyper's server path makes its waits per request; the front keeps
    // one set per connection.
    let mut waits = Waits::default();
    let (mut parts, body) = req.into_parts();
    let mut resp = respond(&gw, &mut parts, Some(body), &client, &mut waits).await;
    // hyper writes the head from the map.
    fields_into_map(&mut resp);
    Ok(resp)
}

/// One request to its response, whichever server read it: hyper's, or
/// the front's (`proxy/front/`), whose requests have no body (`None`).
/// The head is lent, not moved: it is copied at every phase otherwise,
/// and the front reuses its header map for the connection's next request.
pub async fn respond(
    gw: &Gateway,
    head: &mut request::Parts,
    body: Option<Incoming>,
    client: &Client,
    waits: &mut Waits,
) -> Response<ResponseBody> {
    let noted = Noted::of(gw, head, client, waits);
    // At debug level every line of one request is tied together (the
    // connection's span, at info, already names the connection).
    let span = tracing::debug_span!("request", method = %noted.method, path = %noted.path);
    let outcome = dispatch(gw, &noted, head, body, client, waits)
        .instrument(span)
        .await;
    // Plain functions before and after the one await: what they build is
    // not kept in this future's state, which every request moves.
    noted.finish(gw, client, outcome)
}

/// What a response needs from its request once the request is gone.
struct Noted<'c> {
    start: Instant,
    /// The guard holds what follows an upgrade request until it knows
    /// whether the protocol switched; dropped without a 101 it stays HTTP.
    upgrade: Option<Decision<'c>>,
    cfg: Arc<Config>,
    html: bool,
    method: http::Method,
    proto: http::Version,
    path: http::uri::PathAndQuery,
}

impl<'c> Noted<'c> {
    fn of(gw: &Gateway, req: &request::Parts, client: &'c Client, waits: &mut Waits) -> Noted<'c> {
        Noted {
            start: poll_clock::now(),
            upgrade: req
                .headers
                .contains_key(header::UPGRADE)
                .then(|| Decision::new(&client.gate)),
            cfg: gw.sup.config_seen(&mut waits.seen),
            html: accepts_html(req),
            method: req.method.clone(),
            proto: req.version,
            path: req
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        }
    }

    /// The response, or the failure's page; metrics, HSTS, access log.
    fn finish(
        self,
        gw: &Gateway,
        client: &Client,
        outcome: Result<(Response<ResponseBody>, Option<u32>), ProxyError>,
    ) -> Response<ResponseBody> {
        let cfg = &self.cfg;
        let (mut resp, pid) = match outcome {
            Ok(ok) => ok,
            Err(e) => {
                e.log(client.tag, &self.method, &self.path);
                let kind = e.kind();
                let resp = e.into_response(self.html, cfg.detailed_errors);
                gw.sup.metrics().unavailable(resp.status().as_u16(), kind);
                (resp, None)
            }
        };
        let status = resp.status().as_u16();
        gw.sup.metrics().request(
            status,
            &self.method,
            self.proto,
            poll_clock::now().saturating_duration_since(self.start),
        );
        if let Some(d) = self.upgrade.filter(|_| status == 101) {
            d.switched();
        }
        if client.peer.tls && !cfg.hsts.is_zero() {
            // Replaces the app's own, which must be in the map for that.
            fields_into_map(&mut resp);
            let value = format!("max-age={}", cfg.hsts.as_secs());
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                resp.headers_mut()
                    .insert(header::STRICT_TRANSPORT_SECURITY, v);
            }
        }
        resp.body_mut().set_log(AccessLog {
            conn: client.tag,
            method: self.method,
            path: self.path,
            status,
            proto: self.proto,
            pid,
            start: self.start,
            bytes: 0,
            complete: false,
            counted: Some(gw.sup.metrics().response_bytes.clone()),
        });
        resp
    }
}

/// The checks every request passes, then its one path.
async fn dispatch(
    gw: &Gateway,
    noted: &Noted<'_>,
    req: &mut request::Parts,
    body: Option<Incoming>,
    client: &Client,
    waits: &mut Waits,
) -> Result<(Response<ResponseBody>, Option<u32>), ProxyError> {
    let cfg = &*noted.cfg;
    if let Some(answer) = acme_answer(gw, req) {
        return Ok((answer, None));
    }
    check_limits(cfg, req)?;
    host::check(req.version, &req.headers)?;
    if cfg.https_redirect && !client.peer.tls && !is_acme_challenge(req) {
        return Err(ProxyError::HttpsRedirect(https_location(gw, req)));
    }
    // `Noted` has looked for an Upgrade field already.
    let websocket = websocket::is_websocket(req, noted.upgrade.is_some());
    if req.method == http::Method::CONNECT && !websocket {
        // HTTP/2 lets a client ask for a tunnel; hpgate is not a forward
        // proxy (HTTP/1.1 CONNECT never gets past the guard).
        return Err(ProxyError::MethodNotImplemented("CONNECT"));
    }
    if websocket {
        // The front hands upgrades to hyper: a handshake always has a body.
        let body = body.ok_or(ProxyError::BadRequest("an upgrade without hyper's body"))?;
        let req = Request::from_parts(upstream::take_head(req), body);
        // Boxed: a handshake is rare beside plain requests, and its large
        // future would otherwise be part of every request's.
        Box::pin(websocket::handle(gw, cfg, req, client)).await
    } else {
        forward::handle(gw, cfg, req, body, client, waits).await
    }
}

/// ACME HTTP-01 challenges must be answered on plain HTTP (RFC 8555
/// section 8.3), so `httpsRedirect` leaves them alone.
fn is_acme_challenge(req: &request::Parts) -> bool {
    req.uri.path().starts_with("/.well-known/acme-challenge/")
}

/// The key authorization for an open ACME HTTP-01 challenge (RFC 8555
/// section 8.3), before anything else: the app never sees these.
fn acme_answer(gw: &Gateway, req: &request::Parts) -> Option<Response<ResponseBody>> {
    let challenges = gw.acme.as_ref()?;
    if req.method != http::Method::GET {
        return None;
    }
    let token = req
        .uri
        .path()
        .strip_prefix("/.well-known/acme-challenge/")?;
    let answer = challenges.http_answer(token)?;
    let mut resp = Response::new(ResponseBody::full(answer.into()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    Some(resp)
}

/// The same host and target on the https listener (its port left out when
/// it is 443).
fn https_location(gw: &Gateway, req: &request::Parts) -> String {
    let host = req
        .uri
        .host()
        .map(str::to_string)
        .or_else(|| {
            let h = req.headers.get(header::HOST)?.to_str().ok()?;
            // Host without its port (an IPv6 literal keeps its brackets).
            Some(match h.rfind(':') {
                Some(i) if !h[i..].contains(']') => h[..i].to_string(),
                _ => h.to_string(),
            })
        })
        .unwrap_or_else(|| "localhost".into());
    let port = match gw.https_port {
        Some(443) | None => String::new(),
        Some(p) => format!(":{p}"),
    };
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    format!("https://{host}{port}{target}")
}

fn accepts_html(req: &request::Parts) -> bool {
    req.headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Limits hyper does not enforce with the statuses RFC 9110 names.
fn check_limits(cfg: &Config, req: &request::Parts) -> Result<(), ProxyError> {
    // The request line as sent: method, target, " HTTP/1.1\r\n".
    let target = req.uri.path_and_query().map_or(1, |p| p.as_str().len())
        + req.uri.authority().map_or(0, |a| a.as_str().len() + 7);
    let line = req.method.as_str().len() + target + 11;
    if line as u64 > cfg.max_request_line_bytes {
        return Err(ProxyError::UriTooLong(format!(
            "{line} bytes, over maxRequestLineBytes ({})",
            cfg.max_request_line_bytes
        )));
    }
    let count = req.headers.len();
    if count as u64 > cfg.max_request_headers {
        return Err(ProxyError::HeadersTooLarge(format!(
            "{count} header fields, over maxRequestHeaders ({})",
            cfg.max_request_headers
        )));
    }
    let size: usize = req
        .headers
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
