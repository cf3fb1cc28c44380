//! The listener: accepts client connections and serves HTTP/1 on each.
//!
//! Owns connection-level limits (max concurrent connections, header read
//! timeout, head size) and the drain on shutdown: stop accepting, let
//! in-flight requests finish within the grace period, then return. It must
//! not look inside requests; `forward.rs` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::Client;
use super::forward::{handle, Gateway};
use super::strict_io::StrictIo;

/// Serves until `shutdown` is cancelled, then drains for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let cfg = gw.sup.config();
    let mut builder = http1::Builder::new();
    // hyper uses one timer for a request head and for the wait for the next
    // request on a kept-alive connection; the shorter of the two limits wins.
    let head_timeout = cfg.header_read_timeout.min(cfg.keep_alive_timeout.max(1));
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(head_timeout))
        .keep_alive(cfg.keep_alive_timeout > 0)
        .max_headers(cfg.max_request_headers as usize + 1)
        // Room for the line and headers; exact limits (414/431) are
        // checked per request so each gets its own status.
        .max_buf_size(
            (cfg.max_request_header_bytes + cfg.max_request_line_bytes + 1024).max(8192) as usize,
        )
        // A client may shut its sending side once its request is out (`nc
        // -N`, load balancers' health checks): it still gets its answer. An
        // incomplete request is abandoned all the same (hyper sees the EOF
        // while it still needs bytes). The price, as in HAProxy without
        // abortonclose: a client that closes completely while the app works
        // is noticed when the answer is written, not before.
        .half_close(true);
    let permits = Arc::new(Semaphore::new(cfg.max_connections as usize));
    let connections = TaskTracker::new();
    let mut accept_errors = AcceptErrors::default();

    while let Some((stream, peer)) = accept(&listener, &shutdown, &mut accept_errors).await {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(reject_busy(stream, cfg.max_connections));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        // The client owns its place under maxConnections from here on.
        let client = Arc::new(Client::new(peer, permit));
        let svc = service_fn(move |req| handle(gw.clone(), req, client.clone()));
        let conn = builder
            .serve_connection(TokioIo::new(StrictIo::new(stream)), svc)
            .with_upgrades();
        let stop = shutdown.clone();
        connections.spawn(async move {
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
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after shutdownTimeLimit; closing them");
    }
}

/// The next client connection; None once `shutdown` is cancelled. Out of
/// file descriptors (and the like) every retry fails until one frees up:
/// it backs off instead of spinning, and the log gets a count per interval
/// rather than a line per retry.
async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
    errors: &mut AcceptErrors,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let report_at = errors.report_at();
        let report = async {
            match report_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return None,
            _ = report => {
                errors.report(Instant::now());
                continue;
            }
        };
        match accepted {
            Ok(x) => return Some(x),
            Err(e) => {
                errors.failed(&e, Instant::now());
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// How often repeated accept failures are summed up in the log.
const ACCEPT_REPORT_EVERY: Duration = Duration::from_secs(5);

/// Accept failures in bursts: the first is logged at once, later ones as
/// one line with their count at the end of each `ACCEPT_REPORT_EVERY`; a
/// quiet interval ends the burst.
#[derive(Default)]
struct AcceptErrors {
    /// When the current interval began (None: no burst).
    since: Option<Instant>,
    /// Failures in the current interval not logged yet.
    count: u64,
    last_error: String,
}

impl AcceptErrors {
    fn failed(&mut self, e: &std::io::Error, now: Instant) {
        if self.since.is_none() {
            tracing::warn!(
                "accept failed: {e}; retrying every {} ms (repeats are counted and logged every {} s)",
                ACCEPT_RETRY.as_millis(),
                ACCEPT_REPORT_EVERY.as_secs()
            );
            self.since = Some(now);
        } else {
            self.count += 1;
            self.last_error = e.to_string();
        }
    }

    fn report_at(&self) -> Option<Instant> {
        self.since.map(|s| s + ACCEPT_REPORT_EVERY)
    }

    /// Ends an interval: logs its count, or ends the burst if it had none.
    fn report(&mut self, now: Instant) {
        if self.count == 0 {
            self.since = None;
            return;
        }
        tracing::warn!(
            "accept failed {} more times in the last {} s: {}",
            self.count,
            ACCEPT_REPORT_EVERY.as_secs(),
            self.last_error
        );
        self.count = 0;
        self.since = Some(now);
    }
}

/// Over maxConnections: a short 503 and close, without parsing anything.
async fn reject_busy(mut stream: TcpStream, max: u64) {
    let body = format!(
        "503 Service Unavailable\nhpgate is at maxConnections ({max}); try again shortly.\n"
    );
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(resp.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// Binds the listener, with a message that says what to change on failure.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another program uses this port; pick another with --listen)"
            }
            std::io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need extra privileges; use a higher port)"
            }
            _ => "",
        };
        format!("cannot listen on {addr}: {e}{hint}")
    })
}
