//! Keep-alive connections to the app processes.
//!
//! Owns connecting (with a time limit), the HTTP/1 handshake, one driver
//! task per connection, and the idle connections per address. A connection
//! goes back to its idle list only once its response body has been read to
//! the end (through a `Lease`, which the response body releases), so nothing has to watch it
//! become ready again; a checkout waits the moment it may take for hyper to
//! notice. Must not look at requests or responses.
//!
//! Written for hpgate instead of hyper-util's pooled client, which spawns a
//! task per request to return the connection and hops through a channel to
//! a separate checkout: together about a tenth of hpgate's own CPU per small
//! request (docs/benchmarks.md).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::app_io::{AppIo, HeadMark};
use super::request_body::RequestBody;

/// Idle connections kept per app process; more are closed when released.
const MAX_IDLE_PER_PROCESS: usize = 128;
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
    since: Instant,
}

pub struct Pool {
    idle: Mutex<Lists>,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

#[derive(Default)]
struct Lists {
    by_addr: HashMap<SocketAddr, VecDeque<Idle>>,
    /// Each app process has its own port, so a restarted app leaves its
    /// old list behind; a sweep every idle timeout drops dead lists.
    last_sweep: Option<Instant>,
}

impl Pool {
    pub fn new(idle_timeout: Duration, connect_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(Lists::default()),
            idle_timeout,
            connect_timeout,
        }
    }

    /// An idle connection to `addr` if one is alive, else a new one.
    pub async fn get(&self, addr: SocketAddr) -> Result<Conn, ConnectError> {
        while let Some((mut tx, mark)) = self.pop(addr) {
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
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout(self.connect_timeout))??;
        stream.set_nodelay(true)?;
        let mark = HeadMark::default();
        let io = AppIo::new(stream, mark.clone());
        let (tx, conn) = http1::Builder::new().handshake(TokioIo::new(io)).await?;
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
        let now = Instant::now();
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        if idle
            .last_sweep
            .is_none_or(|s| now.duration_since(s) >= self.idle_timeout)
        {
            idle.last_sweep = Some(now);
            let limit = self.idle_timeout;
            idle.by_addr.retain(|_, list| {
                list.retain(|i| !i.tx.is_closed() && now.duration_since(i.since) < limit);
                !list.is_empty()
            });
        }
        let list = idle.by_addr.entry(conn.addr).or_default();
        // Oldest first: drop what has idled too long (the app may be about
        // to close it anyway) before adding.
        while list
            .front()
            .is_some_and(|i| now.duration_since(i.since) >= self.idle_timeout)
        {
            list.pop_front();
        }
        if list.len() < MAX_IDLE_PER_PROCESS {
            list.push_back(Idle {
                tx: conn.tx,
                mark: conn.mark,
                since: now,
            });
        }
    }

    fn pop(&self, addr: SocketAddr) -> Option<(SendRequest<RequestBody>, HeadMark)> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.by_addr.get_mut(&addr)?;
        // Most recent first: it is the least likely to have been closed.
        while let Some(i) = list.pop_back() {
            if i.since.elapsed() < self.idle_timeout && !i.tx.is_closed() {
                return Some((i.tx, i.mark));
            }
        }
        if list.is_empty() {
            idle.by_addr.remove(&addr);
        }
        None
    }

    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.idle.lock().map_or(0, |i| i.by_addr.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(pool.addresses(), 1);

        // The process behind `a` goes away; its connections close.
        server_a.abort();
        let _ = server_a.await;
        let closed = || {
            let idle = pool.idle.lock().unwrap();
            idle.by_addr[&a].iter().all(|i| i.tx.is_closed())
        };
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
            let only_b = {
                let lists = pool.idle.lock().unwrap();
                lists.by_addr.len() == 1 && lists.by_addr.contains_key(&b)
            };
            if only_b {
                break;
            }
            assert!(Instant::now() < deadline, "the dead list was never swept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
