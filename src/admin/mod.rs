//! The admin listener: `/metrics`, `/livez`, `/readyz`, `/status` on an
//! address of its own (`adminListen`), never on the public listeners.
//!
//! A small HTTP/1.1 server: it reads the supervisor's state and the
//! metrics, and must not forward anything to the app. It stops with the
//! same cancellation token as the public listeners.

pub mod client;
pub mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::proxy::affinity::Affinity;
use crate::proxy::websocket;
use crate::supervisor::{ProcessStatus, Supervisor};
use crate::tls::Resolver;

/// What the admin endpoints read.
pub struct Admin {
    pub sup: Supervisor,
    pub ws: websocket::Registry,
    /// The public listeners as bound (`scheme://addr`).
    pub listeners: Vec<String>,
    /// The Socket.IO affinity table the public listeners share.
    pub affinity: Arc<Affinity>,
    /// The certificates served, when a listener is https.
    pub tls: Option<Arc<Resolver>>,
}

/// `/status` as JSON (also what `hpgate status` reads).
#[derive(Serialize, serde::Deserialize, Debug)]
pub struct Status {
    pub version: String,
    pub ready: bool,
    pub not_ready_reason: Option<String>,
    pub listeners: Vec<String>,
    pub config_file: Option<String>,
    pub site_root: String,
    pub open_websockets: usize,
    pub processes: Vec<ProcessJson>,
}

/// One process in `/status`.
#[derive(Serialize, serde::Deserialize, Debug)]
pub struct ProcessJson {
    pub slot: usize,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub state: String,
    pub uptime_seconds: Option<u64>,
    pub restarts: u64,
    pub last_exit: Option<String>,
    pub last_exit_cause: Option<String>,
    pub open_requests: usize,
}

impl From<ProcessStatus> for ProcessJson {
    fn from(p: ProcessStatus) -> Self {
        ProcessJson {
            slot: p.slot,
            pid: p.pid,
            port: p.port,
            state: p.state.into(),
            uptime_seconds: p.uptime_seconds,
            restarts: p.restarts,
            last_exit: p.last_exit,
            last_exit_cause: p.last_exit_cause.map(str::to_string),
            open_requests: p.open_requests,
        }
    }
}

/// Binds the admin address; Err is the message for the log.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on the admin address {addr} (adminListen): {e}"))
}

/// Serves until `stop` is cancelled.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!("admin accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let admin = admin.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.answer(&req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
            }
        });
    }
}

type Answer = Response<Full<Bytes>>;

impl Admin {
    pub fn new(sup: &Supervisor, ws: &websocket::Registry, listeners: Vec<String>) -> Admin {
        Admin {
            sup: sup.clone(),
            ws: ws.clone(),
            listeners,
            affinity: Arc::default(),
            tls: None,
        }
    }

    fn answer(&self, req: &Request<Incoming>) -> Answer {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match req.uri().path() {
            "/metrics" => self.metrics(wants_openmetrics(req)),
            "/livez" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match self.sup.readiness() {
                Ok(()) => text(StatusCode::OK, "ok\n"),
                Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{why}\n")),
            },
            "/status" => self.status_json(),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; the admin listener serves /metrics, /livez, /readyz and /status\n",
            ),
        }
    }

    fn metrics(&self, openmetrics: bool) -> Answer {
        let procs = self.sup.processes();
        let now = metrics::Snapshot {
            states: metrics::STATES
                .iter()
                .map(|s| (*s, procs.iter().filter(|p| p.state == *s).count() as i64))
                .collect(),
            affinity: self.affinity.len(),
            certificates: self.tls.as_ref().map(|r| r.expiries()).unwrap_or_default(),
        };
        let body = self.sup.metrics().render(&now);
        let (body, kind) = if openmetrics {
            (
                body,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            (
                metrics::to_prometheus_text(&body),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
        resp
    }

    pub fn status(&self) -> Status {
        let cfg = self.sup.config();
        let readiness = self.sup.readiness();
        Status {
            version: env!("CARGO_PKG_VERSION").into(),
            ready: readiness.is_ok(),
            not_ready_reason: readiness.err(),
            listeners: self.listeners.clone(),
            config_file: cfg.config_file.as_ref().map(|p| p.display().to_string()),
            site_root: cfg.site_root.display().to_string(),
            open_websockets: self.ws.active(),
            processes: self.sup.processes().into_iter().map(Into::into).collect(),
        }
    }

    fn status_json(&self) -> Answer {
        let body = serde_json::to_string_pretty(&self.status()).unwrap_or_else(|e| format!("{e}"));
        let mut resp = Response::new(Full::new(Bytes::from(body + "\n")));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// Prometheus asks for OpenMetrics; curl and older scrapers get the
/// Prometheus text format.
fn wants_openmetrics(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

fn text(status: StatusCode, body: &str) -> Answer {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
