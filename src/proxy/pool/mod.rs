//! Keep-alive connections to the app processes.
//!
//! Owns connecting (with a time limit), the HTTP/1 handshake, one driver
//! task per connection, and the idle connections per address (`idle.rs`;
//! `raw.rs` keeps the lean path's plain sockets the same way). A connection
//! goes back to its idle list only once its response body has been read to
//! the end (through a `Lease`, which the response body releases), so nothing has to watch it
//! become ready again; a checkout waits the moment it may take for hyper to
//! notice. Must not look at requests or responses.
//!
//! Written for hpgate instead of hyper-util's pooled client, which spawns a
//! task per request to return the connection and hops through a channel to
//! a separate checkout: together about a tenth of hpgate's own CPU per small
//! request (docs/benchmarks.md).

mod idle;
pub mod raw;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::app_io::{AppIo, HeadMark};
use super::request_body::RequestBody;
use crate::admin::metrics::Metrics;
use idle::{IdleLists, Reusable};

/// How long a checkout waits for a kept-alive connection to become free.
const READY_WAIT: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[from] hyper::Error),
}

impl ConnectError {
    /// The `cause` label of `hpgate_app_connect_errors_total`.
    pub fn cause(&self) -> &'static str {
        use std::io::ErrorKind as K;
        match self {
            ConnectError::Timeout(_) => "timeout",
            ConnectError::Io(e) => match e.kind() {
                K::ConnectionRefused => "refused",
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => "reset",
                K::TimedOut => "timeout",
                _ => "other",
            },
            ConnectError::Handshake(_) => "handshake",
        }
    }
}

/// How both pools reach an app process: a TCP connect under a time limit,
/// Nagle off (heads and small bodies go out at once); failures counted.
#[derive(Clone)]
pub struct Dialer {
    timeout: Duration,
    metrics: Option<Arc<Metrics>>,
}

impl Dialer {
    pub async fn dial(&self, addr: SocketAddr) -> Result<TcpStream, ConnectError> {
        let made = self.try_dial(addr).await;
        if let (Err(e), Some(m)) = (&made, &self.metrics) {
            m.app_connect_error(e.cause());
        }
        made
    }

    async fn try_dial(&self, addr: SocketAddr) -> Result<TcpStream, ConnectError> {
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout(self.timeout))??;
        super::tcp_tuning::tune(&stream, addr);
        Ok(stream)
    }
}

/// A connection to one app process, ready for one request.
pub struct Conn {
    pub tx: SendRequest<RequestBody>,
    pub addr: SocketAddr,
    /// Taken from the idle list (it may have been closed by the app since).
    pub reused: bool,
    /// Tells the connection's head check that a new response comes next.
    mark: HeadMark,
}

/// A connection lent to one response: `release` hands it back to its pool
/// (the response was read to the end); dropped, the connection closes.
pub struct Lease {
    pool: Arc<Pool>,
    conn: Conn,
}

impl Lease {
    pub fn new(pool: Arc<Pool>, conn: Conn) -> Lease {
        Lease { pool, conn }
    }

    pub fn release(self) {
        self.pool.put(self.conn);
    }
}

struct Idle {
    tx: SendRequest<RequestBody>,
    mark: HeadMark,
}

impl Reusable for Idle {
    fn closed(&self) -> bool {
        self.tx.is_closed()
    }
}

pub struct Pool {
    idle: IdleLists<Idle>,
    dialer: Dialer,
}

impl Pool {
    pub fn new(idle_timeout: Duration, connect_timeout: Duration) -> Pool {
        Pool {
            idle: IdleLists::new(idle_timeout),
            dialer: Dialer {
                timeout: connect_timeout,
                metrics: None,
            },
        }
    }

    /// Counts failed connects in `metrics`.
    pub fn counting(mut self, metrics: Arc<Metrics>) -> Pool {
        self.dialer.metrics = Some(metrics);
        self
    }

    /// How this pool connects (shared with the lean path's pool).
    pub fn dialer(&self) -> Dialer {
        self.dialer.clone()
    }

    /// An idle connection to `addr` if one is alive, else a new one.
    pub async fn get(&self, addr: SocketAddr) -> Result<Conn, ConnectError> {
        while let Some(Idle { mut tx, mark }) = self.idle.pop(addr) {
            // Ready at once, or within the moment hyper takes to finish the
            // previous exchange; an error means the app closed it. One that
            // stays busy (the app answered before reading a long upload,
            // which is still going out) is not worth waiting for.
            if tx.is_ready()
                || matches!(
                    tokio::time::timeout(READY_WAIT, tx.ready()).await,
                    Ok(Ok(()))
                )
            {
                // The last response was read to the end: a head comes next.
                mark.set();
                return Ok(Conn {
                    tx,
                    addr,
                    reused: true,
                    mark,
                });
            }
        }
        self.connect(addr, false).await
    }

    /// A new connection. `upgrades`: the driver hands the socket over after
    /// a 101 (WebSocket); such connections are never pooled.
    pub async fn connect(&self, addr: SocketAddr, upgrades: bool) -> Result<Conn, ConnectError> {
        let stream = self.dialer.dial(addr).await?;
        let mark = HeadMark::default();
        let io = AppIo::new(stream, mark.clone());
        let handshake = http1::Builder::new().handshake(TokioIo::new(io)).await;
        let (tx, conn) = match handshake {
            Ok(pair) => pair,
            Err(e) => {
                let e = ConnectError::Handshake(e);
                if let Some(m) = &self.dialer.metrics {
                    m.app_connect_error(e.cause());
                }
                return Err(e);
            }
        };
        if upgrades {
            tokio::spawn(async move {
                let _ = conn.with_upgrades().await;
            });
        } else {
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        Ok(Conn {
            tx,
            addr,
            reused: false,
            mark,
        })
    }

    /// Takes a connection back after its response was read to the end.
    pub fn put(&self, conn: Conn) {
        if conn.tx.is_closed() {
            return;
        }
        let idle = Idle {
            tx: conn.tx,
            mark: conn.mark,
        };
        self.idle.put(conn.addr, idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::net::TcpListener;

    /// A listener that accepts and holds connections (no HTTP needed: the
    /// pool only connects and hands back).
    async fn holder() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        (addr, task)
    }

    /// Failed connects are counted by cause (the label of
    /// `hpgate_app_connect_errors_total`).
    #[tokio::test]
    async fn failed_connects_are_counted_by_cause() {
        use std::io::{Error, ErrorKind};
        let metrics = Arc::new(Metrics::new());
        let pool =
            Pool::new(Duration::from_secs(1), Duration::from_secs(2)).counting(metrics.clone());
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        assert!(pool.connect(addr, false).await.is_err());
        let text = metrics.render(&Default::default());
        let refused = r#"hpgate_app_connect_errors_total{cause="refused"} 1"#;
        assert!(text.contains(refused), "{text}");
        let cause = |e: ConnectError| e.cause();
        assert_eq!(cause(ConnectError::Timeout(Duration::ZERO)), "timeout");
        let reset = Error::from(ErrorKind::ConnectionReset);
        assert_eq!(cause(ConnectError::Io(reset)), "reset");
        let other = Error::from(ErrorKind::AddrNotAvailable);
        assert_eq!(cause(ConnectError::Io(other)), "other");
    }

    #[tokio::test]
    async fn reuses_then_forgets_a_process_that_went_away() {
        let pool = Pool::new(Duration::from_millis(200), Duration::from_secs(2));
        let (a, server_a) = holder().await;
        let first = pool.get(a).await.unwrap();
        assert!(!first.reused);
        pool.put(first);
        let again = pool.get(a).await.unwrap();
        assert!(again.reused, "an idle connection is taken again");
        pool.put(again);
        assert_eq!(pool.idle.addresses(), 1);

        // The process behind `a` goes away; its connections close.
        server_a.abort();
        let _ = server_a.await;
        let closed = || pool.idle.all_closed(a);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !closed() {
            assert!(
                Instant::now() < deadline,
                "the closed connection was never noticed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A later hand-back sweeps the dead list out; sweeps run once per
        // idle timeout (200 ms here), so the first hand-backs may come early.
        let (b, _server_b) = holder().await;
        loop {
            let other = pool.get(b).await.unwrap();
            pool.put(other);
            let only_b = pool.idle.only(b);
            if only_b {
                break;
            }
            assert!(Instant::now() < deadline, "the dead list was never swept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
