//! The idle connections of one pool, per app address: most recent first
//! out, oldest dropped first, at most `MAX_IDLE_PER_PROCESS` per process,
//! none kept past the idle timeout.
//!
//! Owns only the bookkeeping; what a connection is and how it is made or
//! checked belongs to the pool that stores it (`mod.rs` for hyper's
//! connections, `raw.rs` for the lean path's sockets).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::proxy::poll_clock;

/// Idle connections kept per app process; more are closed when released.
const MAX_IDLE_PER_PROCESS: usize = 128;

/// A connection that can tell, without waiting, that the app closed it.
pub trait Reusable {
    fn closed(&self) -> bool;
}

struct Entry<T> {
    conn: T,
    /// When it has idled too long. A deadline rather than when it was put
    /// back: each look is then a comparison, not a subtraction of clock
    /// readings (three per request, which counted).
    expires: Instant,
}

struct Lists<T> {
    /// One list per app process: a handful, so a look along them costs
    /// less than hashing the address (SipHash) twice per request.
    by_addr: Vec<(SocketAddr, VecDeque<Entry<T>>)>,
    /// Each app process has its own port, so a restarted app leaves its
    /// old list behind; a sweep every idle timeout drops dead lists.
    next_sweep: Option<Instant>,
}

pub struct IdleLists<T> {
    lists: Mutex<Lists<T>>,
    timeout: Duration,
}

impl<T: Reusable> IdleLists<T> {
    pub fn new(timeout: Duration) -> Self {
        IdleLists {
            lists: Mutex::new(Lists {
                by_addr: Vec::new(),
                next_sweep: None,
            }),
            timeout,
        }
    }

    /// Keeps `conn` for the next request to `addr`.
    pub fn put(&self, addr: SocketAddr, conn: T) {
        let now = poll_clock::now();
        let Ok(mut lists) = self.lists.lock() else {
            return;
        };
        let expires = now + self.timeout;
        if lists.next_sweep.is_none_or(|at| now >= at) {
            lists.next_sweep = Some(expires);
            lists.by_addr.retain_mut(|(_, list)| {
                list.retain(|e| !e.conn.closed() && now < e.expires);
                !list.is_empty()
            });
        }
        let at = match lists.by_addr.iter().position(|(a, _)| *a == addr) {
            Some(at) => at,
            None => {
                lists.by_addr.push((addr, VecDeque::new()));
                lists.by_addr.len() - 1
            }
        };
        // What has idled too long went in the sweep: one is due whenever
        // anything kept has expired.
        let list = &mut lists.by_addr[at].1;
        if list.len() < MAX_IDLE_PER_PROCESS {
            list.push_back(Entry { conn, expires });
        }
    }

    /// The most recently used connection to `addr` that is still open.
    pub fn pop(&self, addr: SocketAddr) -> Option<T> {
        let mut lists = self.lists.lock().ok()?;
        let at = lists.by_addr.iter().position(|(a, _)| *a == addr)?;
        let list = &mut lists.by_addr[at].1;
        // Most recent first: it is the least likely to have been closed.
        let now = poll_clock::now();
        while let Some(e) = list.pop_back() {
            if now < e.expires && !e.conn.closed() {
                return Some(e.conn);
            }
        }
        lists.by_addr.swap_remove(at);
        None
    }

    /// Addresses with idle connections (tests).
    #[cfg(test)]
    pub fn addresses(&self) -> usize {
        self.lists.lock().map_or(0, |l| l.by_addr.len())
    }

    /// Whether every idle connection to `addr` is closed (tests).
    #[cfg(test)]
    pub fn all_closed(&self, addr: SocketAddr) -> bool {
        self.lists.lock().is_ok_and(|l| {
            l.by_addr
                .iter()
                .filter(|(a, _)| *a == addr)
                .all(|(_, list)| list.iter().all(|e| e.conn.closed()))
        })
    }

    /// How many connections to `addr` are kept (tests).
    #[cfg(test)]
    pub fn kept(&self, addr: SocketAddr) -> usize {
        self.lists.lock().map_or(0, |l| {
            l.by_addr
                .iter()
                .filter(|(a, _)| *a == addr)
                .map(|(_, list)| list.len())
                .sum()
        })
    }

    /// Whether `addr` is the only address with idle connections (tests).
    #[cfg(test)]
    pub fn only(&self, addr: SocketAddr) -> bool {
        self.lists
            .lock()
            .is_ok_and(|l| l.by_addr.len() == 1 && l.by_addr[0].0 == addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Open(u8);

    impl Reusable for Open {
        fn closed(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_connection_idle_past_the_timeout_is_not_handed_out() {
        let lists = IdleLists::new(Duration::from_millis(50));
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        lists.put(addr, Open(1));
        assert!(lists.pop(addr).is_some_and(|c| c.0 == 1));
        lists.put(addr, Open(2));
        std::thread::sleep(Duration::from_millis(80));
        assert!(lists.pop(addr).is_none(), "expired");
        // An expired one is dropped when another is put back.
        lists.put(addr, Open(3));
        std::thread::sleep(Duration::from_millis(80));
        lists.put(addr, Open(4));
        assert_eq!(lists.kept(addr), 1, "3 went when 4 came");
        assert!(lists.pop(addr).is_some_and(|c| c.0 == 4));
    }
}
