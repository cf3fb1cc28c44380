//! The supervisor's change counter: bumped after every change a request
//! could see (a process ready or gone, a generation swapped in, the site
//! offline or back).
//!
//! Owns the two ways to read it: a watch channel for those that wait for
//! a change (`pick` while a process starts, systemd's READY=1), and an
//! atomic for those that only ask whether anything changed (`Seen`: one
//! load per request, no lock). Must not hold any state itself.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

pub struct Epoch {
    changes: watch::Sender<u64>,
    now: AtomicU64,
}

impl Epoch {
    pub fn new() -> Epoch {
        Epoch {
            changes: watch::Sender::new(0),
            now: AtomicU64::new(0),
        }
    }

    /// Called after a change has been made.
    pub fn bump(&self) {
        self.now.fetch_add(1, Ordering::AcqRel);
        self.changes.send_modify(|e| *e = e.wrapping_add(1));
    }

    /// The count now: unchanged since an earlier reading means nothing
    /// has changed since then.
    pub fn now(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
