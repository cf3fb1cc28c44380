//! The listener: accepts client connections and serves HTTP/1 on each.
//!
//! Owns connection-level limits (max concurrent connections, header read
//! timeout, head size), taken from the serving configuration for each new
//! connection, and the drain on shutdown: stop accepting, let in-flight
//! requests finish within shutdownTimeLimit, then return. It must
//! not look inside requests; `forward.rs` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::Client;
use super::forward::{handle, Gateway};
use super::guard::{GuardedIo, UpgradeGate};
use crate::config::Config;

/// Serves until `shutdown` is cancelled, then drains for up to
/// shutdownTimeLimit.
pub async fn serve(listener: TcpListener, gw: Arc<Gateway>, shutdown: CancellationToken) {
    let mut settings = AcceptSettings::new(gw.sup.config());
    let connections = TaskTracker::new();

    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // A recycle may have brought new limits: new connections get them.
        settings.follow(gw.sup.config());
        let Some(permit) = settings.place() else {
            tokio::spawn(reject_busy(stream, settings.cfg.max_connections));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        // The client owns its place under maxConnections from here on.
        let gate = Arc::new(UpgradeGate::default());
        let client = Arc::new(Client::new(peer, permit, gate.clone()));
        let svc = service_fn(move |req| handle(gw.clone(), req, client.clone()));
        let conn = settings
            .builder
            .serve_connection(TokioIo::new(GuardedIo::new(stream, gate)), svc)
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
    // The same deadline lifecycle.rs gives the WebSockets and the processes.
    let grace = Duration::from_secs(gw.sup.config().shutdown_time_limit);
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after shutdownTimeLimit; closing them");
    }
}

/// What accepting a connection takes from the configuration, kept in step
/// with the configuration serving (it changes when a recycle completes).
struct AcceptSettings {
    cfg: Arc<Config>,
    builder: http1::Builder,
    places: Arc<Semaphore>,
    /// Places still to take away: maxConnections was lowered below the
    /// number of connections open, so they go as those connections end.
    owed: usize,
}

impl AcceptSettings {
    fn new(cfg: Arc<Config>) -> AcceptSettings {
        AcceptSettings {
            builder: http1_builder(&cfg),
            places: Arc::new(Semaphore::new(cfg.max_connections as usize)),
            owed: 0,
            cfg,
        }
    }

    /// Takes up `cfg` unless it is the one in use.
    fn follow(&mut self, cfg: Arc<Config>) {
        if Arc::ptr_eq(&cfg, &self.cfg) {
            return;
        }
        let (old, new) = (
            self.cfg.max_connections as usize,
            cfg.max_connections as usize,
        );
        if new >= old {
            let repaid = (new - old).min(self.owed);
            self.owed -= repaid;
            self.places.add_permits(new - old - repaid);
        } else {
            self.owed += old - new;
        }
        self.builder = http1_builder(&cfg);
        self.cfg = cfg;
    }

    /// A place under maxConnections, if one is free.
    fn place(&mut self) -> Option<OwnedSemaphorePermit> {
        if self.owed > 0 {
            self.owed -= self.places.forget_permits(self.owed);
            // A place freed right now still goes to the debt first.
            if self.owed > 0 {
                return None;
            }
        }
        self.places.clone().try_acquire_owned().ok()
    }
}

fn http1_builder(cfg: &Config) -> http1::Builder {
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
        // A client that half-closes after a complete request still gets
        // its answer, and the guard's refusal of a later pipelined head
        // waits for the answers before it (the guard ends the stream there).
        .half_close(true);
    builder
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
