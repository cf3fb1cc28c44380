//! The rapid-fail window: crashes and failed starts allowed per minute.
//!
//! A fixed 60 s window opens at the first failure (as in IIS). More than
//! `rapidFailsPerMinute` failures in it lock new starts out until it ends.
//! Pure bookkeeping over injected instants so it is tested without sleeping.

use std::time::{Duration, Instant};

/// rapidFailsPerMinute counts crashes over this sliding window.
pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct RapidFail {
    limit: u64,
    window_start: Option<Instant>,
    count: u64,
}

impl RapidFail {
    pub fn new(limit: u64) -> Self {
        RapidFail {
            limit,
            window_start: None,
            count: 0,
        }
    }

    /// Counts one crash or failed start.
    pub fn record(&mut self, now: Instant) {
        match self.window_start {
            Some(start) if now.duration_since(start) < WINDOW => self.count += 1,
            _ => {
                self.window_start = Some(now);
                self.count = 1;
            }
        }
    }

    /// When starts are locked out: the end of the current window.
    pub fn locked_until(&self, now: Instant) -> Option<Instant> {
        let start = self.window_start?;
        let end = start + WINDOW;
        (now < end && self.count > self.limit).then_some(end)
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_limit_and_unlocks_when_window_ends() {
        let t0 = Instant::now();
        let mut r = RapidFail::new(2);
        r.record(t0);
        r.record(t0 + Duration::from_secs(1));
        assert_eq!(r.locked_until(t0 + Duration::from_secs(1)), None);
        r.record(t0 + Duration::from_secs(2));
        assert_eq!(
            r.locked_until(t0 + Duration::from_secs(2)),
            Some(t0 + WINDOW)
        );
        assert_eq!(r.locked_until(t0 + WINDOW), None);
        // A failure after the window opens a new one.
        r.record(t0 + WINDOW + Duration::from_secs(1));
        assert_eq!(r.count(), 1);
    }

    #[test]
    fn zero_means_the_first_failure_locks() {
        let t0 = Instant::now();
        let mut r = RapidFail::new(0);
        assert_eq!(r.locked_until(t0), None);
        r.record(t0);
        assert!(r.locked_until(t0).is_some());
    }
}
