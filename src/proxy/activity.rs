//! The inactivity clock of one forwarded request: when bytes last moved
//! either way, and whether the quiet is the client's or the app's.
//!
//! Owns that judgement for `requestTimeout` (the app's) and
//! `clientBodyTimeout` (the client's). Shared by both body wrappers; must
//! not read or write any body itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::poll_clock;

/// When bytes last moved in either direction of one request, and whether
/// the exchange is waiting on the client rather than on the app.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    last_ms: AtomicU64,
    /// The client's request body broke (bad framing or disconnect).
    pub(super) client_failed: AtomicBool,
    /// The client sent nothing of its body for `clientBodyTimeout`.
    pub(super) client_stalled: AtomicBool,
    /// The request body is waiting for the client's next bytes: the app is
    /// not the one keeping the exchange quiet.
    pub(super) client_owes: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            base: poll_clock::now(),
            last_ms: AtomicU64::new(0),
            client_failed: AtomicBool::new(false),
            client_stalled: AtomicBool::new(false),
            client_owes: AtomicBool::new(false),
        })
    }

    pub fn client_failed(&self) -> bool {
        self.client_failed.load(Ordering::Relaxed)
    }

    /// The client sent nothing of its body for `clientBodyTimeout`.
    pub fn client_stalled(&self) -> bool {
        self.client_stalled.load(Ordering::Relaxed)
    }

    /// True when the quiet since `last()` is the app's: the clock restarts
    /// while the client owes body bytes (`clientBodyTimeout` covers that).
    pub(super) fn app_idle_past(&self, limit: Duration) -> bool {
        if Instant::now() < self.last() + limit {
            return false;
        }
        if self.client_owes.load(Ordering::Relaxed) {
            self.touch();
            return false;
        }
        true
    }

    pub fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}
