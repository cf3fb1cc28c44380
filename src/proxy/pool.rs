//! Keep-alive connections to the app processes.
//!
//! Owns connecting (with a time limit), the HTTP/1 handshake, who drives
//! each connection, and the idle connections per address. A connection
//! goes back to its idle list only once its response body has been read to
//! the end (through a `Lease`, which the response body releases), so nothing has to watch it
//! become ready again; a checkout waits the moment it may take for hyper to
//! notice. Must not look at requests or responses.
//!
//! A pooled connection has no task of its own: hyper's state machine for
//! it (the `Connection` future) is polled by the request that holds it,
//! inside the client connection's task (`Conn::drive`, and the response
//! body through its `Lease`), so a request costs no wake-up of a second
//! task. While idle nobody polls it: a checkout polls it once (with a
//! waker that does nothing) to read a close the app sent meanwhile.
//! Upgrades keep a driver task: after a 101 it hands the socket over.
//!
//! Written for hpgate instead of hyper-util's pooled client, which spawns a
//! task per request to return the connection and hops through a channel to
//! a separate checkout: together about a tenth of hpgate's own CPU per small
//! request (docs/benchmarks.md).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::TrySendError;
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

type Driver = http1::Connection<TokioIo<AppIo>, RequestBody>;

/// Who polls a connection's driver (hyper's state machine for it).
enum Drive {
    /// Whoever holds the connection (see the module docs).
    Here(Pin<Box<Driver>>),
    /// Its own task (an upgrade), or nobody: the connection has ended.
    Elsewhere,
}

impl Drive {
    /// Lets the driver read and write what it can; once it ends (the
    /// connection closed) it is not polled again.
    fn poll(&mut self, cx: &mut Context<'_>) {
        if let Drive::Here(driver) = self {
            if driver.as_mut().poll(cx).is_ready() {
                *self = Drive::Elsewhere;
            }
        }
    }

    /// One poll that wakes nobody: picks up what arrived while idle.
    fn poll_idle(&mut self) {
        self.poll(&mut Context::from_waker(Waker::noop()));
    }
}

/// Runs `fut` to its end, polling the driver before it each time.
async fn driving<F: Future>(drive: &mut Drive, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        drive.poll(cx);
        fut.as_mut().poll(cx)
    })
    .await
}

/// A connection to one app process, ready for one request.
pub struct Conn {
    tx: SendRequest<RequestBody>,
    drive: Drive,
    pub addr: SocketAddr,
    /// Taken from the idle list (it may have been closed by the app since).
    pub reused: bool,
    /// Tells the connection's head check that a new response comes next.
    mark: HeadMark,
}

impl Conn {
    /// Sends a request; the answer's head, or the request back if hyper
    /// never sent it (see `TrySendError`).
    pub async fn send(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<RequestBody>>> {
        driving(&mut self.drive, self.tx.try_send_request(req)).await
    }

    /// Runs `fut` (which waits on this connection) to its end, driving the
    /// connection meanwhile.
    pub async fn drive<F: Future>(&mut self, fut: F) -> F::Output {
        driving(&mut self.drive, fut).await
    }

    /// One step of the driver, from the response body that reads it.
    pub fn poll_drive(&mut self, cx: &mut Context<'_>) {
        self.drive.poll(cx);
    }
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

    /// One step of the connection's driver (see `Conn::poll_drive`).
    pub fn poll_drive(&mut self, cx: &mut Context<'_>) {
        self.conn.poll_drive(cx);
    }
}

struct Idle {
    tx: SendRequest<RequestBody>,
    drive: Drive,
    mark: HeadMark,
    since: Instant,
}

impl Idle {
    /// Still open after reading what the app sent while it idled.
    fn alive(&mut self) -> bool {
        self.drive.poll_idle();
        !self.tx.is_closed()
    }
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
        while let Some(idle) = self.pop(addr) {
            let mut conn = Conn {
                tx: idle.tx,
                drive: idle.drive,
                addr,
                reused: true,
                mark: idle.mark,
            };
            // Ready at once, or within the moment hyper takes to finish the
            // previous exchange; an error means the app closed it. One that
            // stays busy (the app answered before reading a long upload,
            // which is still going out) is not worth waiting for.
            let ready = conn.tx.is_ready() || {
                let wait = tokio::time::timeout(READY_WAIT, conn.tx.ready());
                matches!(driving(&mut conn.drive, wait).await, Ok(Ok(())))
            };
            if ready {
                // The last response was read to the end: a head comes next.
                conn.mark.set();
                return Ok(conn);
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
        let (tx, driver) = http1::Builder::new().handshake(TokioIo::new(io)).await?;
        let drive = if upgrades {
            tokio::spawn(async move {
                let _ = driver.with_upgrades().await;
            });
            Drive::Elsewhere
        } else {
            Drive::Here(Box::pin(driver))
        };
        Ok(Conn {
            tx,
            drive,
            addr,
            reused: false,
            mark,
        })
    }

    /// Takes a connection back after its response was read to the end.
    pub fn put(&self, conn: Conn) {
        // An upgrade's connection, or one that has ended, is not kept.
        if conn.tx.is_closed() || matches!(conn.drive, Drive::Elsewhere) {
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
                list.retain_mut(|i| now.duration_since(i.since) < limit && i.alive());
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
                drive: conn.drive,
                mark: conn.mark,
                since: now,
            });
        }
    }

    fn pop(&self, addr: SocketAddr) -> Option<Idle> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.by_addr.get_mut(&addr)?;
        // Most recent first: it is the least likely to have been closed.
        while let Some(mut i) = list.pop_back() {
            if i.since.elapsed() < self.idle_timeout && i.alive() {
                return Some(i);
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
        // Idle connections have no task: a look (one poll) notices the close.
        let closed = || {
            let mut idle = pool.idle.lock().unwrap();
            idle.by_addr
                .get_mut(&a)
                .unwrap()
                .iter_mut()
                .all(|i| !i.alive())
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
