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

/// Idle connections kept per app process; more are closed when released.
const MAX_IDLE_PER_PROCESS: usize = 128;

/// A connection that can tell, without waiting, that the app closed it.
pub trait Reusable {
    fn closed(&self) -> bool;
}

struct Entry<T> {
    conn: T,
    since: Instant,
}

struct Lists<T> {
    /// One list per app process: a handful, so a look along them costs
    /// less than hashing the address (SipHash) twice per request.
    by_addr: Vec<(SocketAddr, VecDeque<Entry<T>>)>,
    /// Each app process has its own port, so a restarted app leaves its
    /// old list behind; a sweep every idle timeout drops dead lists.
    last_sweep: Option<Instant>,
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
                last_sweep: None,
            }),
            timeout,
        }
    }

    /// Keeps `conn` for the next request to `addr`.
    pub fn put(&self, addr: SocketAddr, conn: T) {
        let now = Instant::now();
        let Ok(mut lists) = self.lists.lock() else {
            return;
        };
        let limit = self.timeout;
        if lists
            .last_sweep
            .is_none_or(|s| now.duration_since(s) >= limit)
        {
            lists.last_sweep = Some(now);
            lists.by_addr.retain_mut(|(_, list)| {
                list.retain(|e| !e.conn.closed() && now.duration_since(e.since) < limit);
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
        let list = &mut lists.by_addr[at].1;
        // Oldest first: drop what has idled too long (the app may be about
        // to close it anyway) before adding.
        while list
            .front()
            .is_some_and(|e| now.duration_since(e.since) >= limit)
        {
            list.pop_front();
        }
        if list.len() < MAX_IDLE_PER_PROCESS {
            list.push_back(Entry { conn, since: now });
        }
    }

    /// The most recently used connection to `addr` that is still open.
    pub fn pop(&self, addr: SocketAddr) -> Option<T> {
        let mut lists = self.lists.lock().ok()?;
        let at = lists.by_addr.iter().position(|(a, _)| *a == addr)?;
        let list = &mut lists.by_addr[at].1;
        // Most recent first: it is the least likely to have been closed.
        while let Some(e) = list.pop_back() {
            if e.since.elapsed() < self.timeout && !e.conn.closed() {
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

    /// Whether `addr` is the only address with idle connections (tests).
    #[cfg(test)]
    pub fn only(&self, addr: SocketAddr) -> bool {
        self.lists
            .lock()
            .is_ok_and(|l| l.by_addr.len() == 1 && l.by_addr[0].0 == addr)
    }
}
