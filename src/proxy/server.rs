//! The listener: accepts client connections and serves HTTP/1 on each.
//!
//! Owns connection-level limits (max concurrent connections, header read
//! timeout, head size), taken from the serving configuration for each new
//! connection, and the drain on shutdown: stop accepting, let in-flight
//! requests finish within shutdownTimeLimit, then return. It must
//! not look inside requests; `forward.rs` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use tokio_rustls::TlsAcceptor;

use super::conn_tag::ConnTag;
use super::connection::{Connection, Protocols};
use super::error::ProxyError;
use super::poll_clock::Fresh;
use super::Gateway;
use crate::config::Config;

/// One listening socket, and the TLS it terminates if it is an https one.
pub struct Endpoint {
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

/// Serves until `shutdown` is cancelled, then drains for up to
/// shutdownTimeLimit.
pub async fn serve(ep: Endpoint, gw: Arc<Gateway>, shutdown: CancellationToken) {
    let Endpoint { listener, tls } = ep;
    let mut settings = AcceptSettings::new(gw.sup.config());
    let connections = TaskTracker::new();
    let mut accept_errors = AcceptErrors::default();
    let mut conn_id: u64 = 0;

    while let Some((stream, peer)) = accept(&listener, &shutdown, &mut accept_errors).await {
        // A recycle may have brought new limits: new connections get them.
        settings.follow(gw.sup.config());
        let Some(permit) = settings.place() else {
            tokio::spawn(reject_busy(stream, settings.cfg.max_connections));
            continue;
        };
        conn_id += 1;
        let tag = ConnTag { id: conn_id, peer };
        // The lines that matter name the connection themselves (`ConnTag`);
        // at debug level this span ties every other line to it too.
        let span = tracing::debug_span!("conn", id = conn_id, %peer);
        let conn = Connection {
            gw: gw.clone(),
            protocols: settings.protocols.clone(),
            tls: tls.clone(),
            tag,
            place: permit,
            shutdown: shutdown.clone(),
        };
        let conn = conn.serve(stream);
        let open = gw.sup.metrics().connections.clone();
        open.inc();
        connections.spawn(
            Fresh::new(async move {
                conn.await;
                open.dec();
            })
            .instrument(span),
        );
    }
    drop(listener);
    connections.close();
    // The same deadline lifecycle.rs gives the WebSockets and the processes.
    let grace = gw.sup.config().shutdown_time_limit;
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

/// What accepting a connection takes from the configuration, kept in step
/// with the configuration serving (it changes when a recycle completes).
struct AcceptSettings {
    cfg: Arc<Config>,
    protocols: Arc<Protocols>,
    places: Arc<Semaphore>,
    /// Places still to take away: maxConnections was lowered below the
    /// number of connections open, so they go as those connections end.
    owed: usize,
}

impl AcceptSettings {
    fn new(cfg: Arc<Config>) -> AcceptSettings {
        AcceptSettings {
            protocols: Arc::new(Protocols::new(&cfg)),
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
        self.protocols = Arc::new(Protocols::new(&cfg));
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

/// Over maxConnections: a short 503 and close, without parsing anything.
async fn reject_busy(mut stream: TcpStream, max: u64) {
    let resp = ProxyError::TooManyConnections(max).to_wire();
    let _ = tokio::time::timeout(BUSY_WRITE_LIMIT, stream.write_all(&resp)).await;
    let _ = stream.shutdown().await;
}

/// A refused client that does not read its 503 gets no more of our time.
const BUSY_WRITE_LIMIT: Duration = Duration::from_secs(2);

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

/// Takes over a socket that is already listening (socket activation):
/// tokio needs it non-blocking.
pub fn adopt(listener: std::net::TcpListener) -> Result<TcpListener, String> {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "a passed socket".to_string(), |a| a.to_string());
    listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
        .map_err(|e| format!("cannot serve on {addr} (passed by systemd): {e}"))
}
