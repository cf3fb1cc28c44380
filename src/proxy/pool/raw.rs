//! The lean path's kept-alive app connections: plain sockets, each free
//! for the next request once its response was read to the end.
//!
//! Owns connecting (through the shared `Dialer`) and the check that an
//! idle socket is still open before it is lent again. Each socket keeps
//! its read buffer while idle, so an exchange on a warm pool starts with
//! room for the answer and no allocation. Must not read or write HTTP:
//! `proxy/lean/` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::idle::{IdleLists, Reusable};
use super::{ConnectError, Dialer};

/// A socket to one app process, lent to one exchange.
pub struct RawConn {
    pub stream: TcpStream,
    pub addr: SocketAddr,
    /// Taken from the idle list (the app may have closed it since).
    pub reused: bool,
    /// The read buffer this socket had last, empty; `put` keeps it.
    pub buf: BytesMut,
}

/// The most read buffer an idle socket keeps: more (after a large answer)
/// is freed rather than held by every idle connection.
const KEEP_BUF: usize = 16 * 1024;

struct Idle(TcpStream, BytesMut);

impl Reusable for Idle {
    /// An idle socket has nothing to read: end of stream means the app
    /// closed it, and bytes nobody asked for mean it cannot be trusted.
    /// tokio's readiness (from epoll) answers first, with no system call;
    /// only a socket that may have something to read is probed.
    fn closed(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.0.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                !matches!(self.0.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }
}

pub struct RawPool {
    idle: IdleLists<Idle>,
    dialer: Dialer,
}

impl RawPool {
    pub fn new(idle_timeout: Duration, dialer: Dialer) -> Arc<RawPool> {
        Arc::new(RawPool {
            idle: IdleLists::new(idle_timeout),
            dialer,
        })
    }

    /// An idle socket to `addr` that is still open, else a new one.
    pub async fn get(&self, addr: SocketAddr) -> Result<RawConn, ConnectError> {
        if let Some(Idle(stream, buf)) = self.idle.pop(addr) {
            return Ok(RawConn {
                stream,
                addr,
                reused: true,
                buf,
            });
        }
        // Boxed: a connect is the exception on a warm pool.
        Box::pin(self.connect(addr)).await
    }

    /// A new socket (the second try after a reused one failed).
    pub async fn connect(&self, addr: SocketAddr) -> Result<RawConn, ConnectError> {
        let stream = self.dialer.dial(addr).await?;
        Ok(RawConn {
            stream,
            addr,
            reused: false,
            buf: BytesMut::new(),
        })
    }

    /// Takes a socket back after its response was read to the end.
    pub fn put(&self, conn: RawConn) {
        let mut buf = conn.buf;
        if !buf.is_empty() || buf.capacity() > KEEP_BUF {
            buf = BytesMut::new();
        }
        self.idle.put(conn.addr, Idle(conn.stream, buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A listener standing in for the app, and a pool in front of it.
    async fn listener_and_pool() -> (TcpListener, SocketAddr, Arc<RawPool>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let dialer = Dialer {
            timeout: Duration::from_secs(2),
            metrics: None,
        };
        (l, addr, RawPool::new(Duration::from_secs(30), dialer))
    }

    /// An idle socket keeps its empty read buffer for the next exchange,
    /// but not a large one, nor one holding bytes.
    #[tokio::test]
    async fn an_idle_socket_keeps_a_small_empty_read_buffer() {
        let (l, addr, pool) = listener_and_pool().await;
        let mut conn = pool.get(addr).await.unwrap();
        let _peer = l.accept().await.unwrap();
        for (cap, held, kept) in [(8192, 0, true), (KEEP_BUF + 1, 0, false), (8192, 1, false)] {
            conn.buf = BytesMut::with_capacity(cap);
            conn.buf.extend_from_slice(&b"x"[..held]);
            pool.put(conn);
            conn = pool.get(addr).await.unwrap();
            assert!(conn.reused);
            assert!(conn.buf.is_empty());
            assert_eq!(conn.buf.capacity() >= cap, kept, "{cap} {held}");
        }
    }

    /// A socket the app closed, or one with unasked-for bytes, is not lent
    /// again; an open quiet one is.
    #[tokio::test]
    async fn only_open_quiet_sockets_are_lent_again() {
        let (l, addr, pool) = listener_and_pool().await;
        let first = pool.get(addr).await.unwrap();
        let (peer, _) = l.accept().await.unwrap();
        assert!(!first.reused);
        pool.put(first);
        let again = pool.get(addr).await.unwrap();
        assert!(again.reused, "an open idle socket is taken again");
        pool.put(again);

        drop(peer);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let fresh = pool.get(addr).await.unwrap();
        assert!(!fresh.reused, "a socket the app closed was lent again");

        let (mut peer, _) = l.accept().await.unwrap();
        peer.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        pool.put(fresh);
        let fresh = pool.get(addr).await.unwrap();
        assert!(
            !fresh.reused,
            "a socket with unasked-for bytes was lent again"
        );
    }
}
