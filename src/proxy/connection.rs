//! One client connection, from the accepted socket to its end: the TLS
//! handshake on an https listener, then HTTP/2 (when ALPN chose `h2`) or
//! HTTP/1.1 (the front, `front/`, then hyper's server behind the smuggling
//! guard if the front hands over), and the graceful close on shutdown.
//!
//! Owns the per-protocol hyper settings (built from the configuration that
//! serves, once per change) and the TLS handshake's time limit. Must not
//! look inside requests: `service.rs` does.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::client::Client;
use super::conn_tag::ConnTag;
use super::front;
use super::guard::{GuardedIo, Stream, UpgradeGate};
use super::poll_clock::Fresh;
use super::service::handle;
use super::Gateway;
use crate::config::Config;

/// Streams one HTTP/2 client may have open at once: enough for a browser's
/// page and its Socket.IO connection, few enough that one client cannot
/// hold a large share of the app's connections.
const H2_MAX_STREAMS: u32 = 128;

/// Spawns HTTP/2 stream tasks inside the span of the connection that
/// spawns them, so their log lines name the connection like HTTP/1.1's do.
#[derive(Clone, Copy, Debug)]
pub struct InSpan;

impl<F> hyper::rt::Executor<F> for InSpan
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(Fresh::new(fut).in_current_span());
    }
}

/// hyper's settings for each protocol, from one configuration.
pub struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<InSpan>,
    /// The front's limits (`proxy/front/`); None when keep-alive is off
    /// (`keepAliveTimeout` 0): hyper's server then serves every request.
    front: Option<front::Limits>,
    /// A client gets this long for its TLS handshake (as for a head).
    handshake_limit: Duration,
}

impl Protocols {
    pub fn new(cfg: &Config) -> Protocols {
        let mut h2 = http2::Builder::new(InSpan);
        h2.timer(TokioTimer::new())
            // RFC 8441: WebSockets over HTTP/2 (extended CONNECT).
            .enable_connect_protocol()
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_header_list_size(
                (cfg.max_request_header_bytes + cfg.max_request_line_bytes) as u32,
            );
        let front = (!cfg.keep_alive_timeout.is_zero()).then(|| front::Limits {
            head_timeout: head_timeout(cfg),
            max_head: max_buf(cfg),
        });
        Protocols {
            h1: http1_builder(cfg),
            h2,
            front,
            handshake_limit: cfg.header_read_timeout,
        }
    }
}

/// What one accepted connection needs to be served.
pub struct Connection {
    pub gw: Arc<Gateway>,
    pub protocols: Arc<Protocols>,
    pub tls: Option<TlsAcceptor>,
    /// Its number and peer, for the log.
    pub tag: ConnTag,
    /// Its place under maxConnections (a WebSocket takes it along).
    pub place: OwnedSemaphorePermit,
    pub shutdown: CancellationToken,
}

impl Connection {
    pub async fn serve(self, stream: TcpStream) {
        super::tcp_tuning::tune(&stream, self.tag.peer);
        let Some(acceptor) = self.tls.clone() else {
            return self.http1(stream).await;
        };
        let limit = self.protocols.handshake_limit;
        let tls = match tokio::time::timeout(limit, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return tracing::debug!("TLS handshake failed: {e}"),
            Err(_) => return tracing::debug!("TLS handshake not done within {limit:?}"),
        };
        let alpn = tls.get_ref().1.alpn_protocol();
        if alpn == Some(crate::tls::acme::ACME_TLS_ALPN) {
            // A TLS-ALPN-01 validation: the handshake was the answer.
            return tracing::debug!("ACME tls-alpn-01 validation answered");
        }
        if alpn == Some(b"h2") {
            self.http2(tls).await
        } else {
            self.http1(tls).await
        }
    }

    /// HTTP/1.1: the front serves while it can, then hyper (`front/`).
    async fn http1<S: Stream>(self, stream: S) {
        let gate = Arc::new(UpgradeGate::default());
        let (gw, protocols, stop) = (self.gw, self.protocols, self.shutdown);
        let client = Arc::new(Client::new(
            self.tag,
            self.place,
            gate.clone(),
            self.tls.is_some(),
        ));
        let io = match protocols.front {
            Some(limits) => match front::serve(stream, &gw, &client, limits, &stop).await {
                front::Ended::Closed => return,
                // Unboxed: the WebSocket path finds the stream by its type.
                front::Ended::HandOff(io) => *io,
            },
            None => GuardedIo::new(stream, gate, self.tag),
        };
        let svc = service_fn(move |req| handle(gw.clone(), req, client.clone()));
        let conn = protocols
            .h1
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = stop.cancelled() => {
                // Finish the request in flight, then close (no keep-alive).
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!("connection ended: {e}");
        }
    }

    async fn http2<S: Stream>(self, stream: S) {
        // HTTP/2 framing is binary and hyper's h2 checks it: no guard, and
        // no upgrade gate (WebSockets come as extended CONNECT streams).
        let gate = Arc::new(UpgradeGate::default());
        let (gw, protocols, stop) = (self.gw, self.protocols, self.shutdown);
        let client = Arc::new(Client::new(self.tag, self.place, gate, true));
        let websockets = client.websockets.clone();
        let svc = service_fn(move |req| handle(gw.clone(), req, client.clone()));
        let conn = protocols.h2.serve_connection(TokioIo::new(stream), svc);
        let mut conn = std::pin::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = stop.cancelled() => {
                // The WebSockets' close handshakes (1001) first, while the
                // connection still carries them; then GOAWAY: streams in
                // flight finish, no new ones.
                websockets.close();
                tokio::select! {
                    _ = websockets.wait() => {}
                    r = conn.as_mut() => return log_end(r),
                }
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        log_end(result);
    }
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!("HTTP/2 connection ended: {e}");
    }
}

/// hyper uses one timer for a request head and for the wait for the next
/// request on a kept-alive connection; the shorter of the two limits wins.
/// The front keeps the same one.
fn head_timeout(cfg: &Config) -> Duration {
    cfg.header_read_timeout
        .min(cfg.keep_alive_timeout.max(Duration::from_secs(1)))
}

/// Room for the request line and headers; exact limits (414/431) are
/// checked per request so each gets its own status.
fn max_buf(cfg: &Config) -> usize {
    (cfg.max_request_header_bytes + cfg.max_request_line_bytes + 1024).max(8192) as usize
}

fn http1_builder(cfg: &Config) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout(cfg))
        .keep_alive(!cfg.keep_alive_timeout.is_zero())
        .max_headers(cfg.max_request_headers as usize + 1)
        .max_buf_size(max_buf(cfg))
        // A client that half-closes after a complete request (`nc -N`, load
        // balancers' health checks) still gets its answer, and the guard's
        // refusal of a later pipelined head waits for the answers before it
        // (the guard ends the stream there). The price, as in HAProxy
        // without abortonclose: a client that closes completely while the
        // app works is noticed when the answer is written, not before.
        .half_close(true);
    builder
}
