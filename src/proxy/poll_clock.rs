//! One clock reading per poll of a connection's task, lent to every phase
//! that asks for the time during that poll.
//!
//! Why: a small request asked the clock six times (its start and its
//! duration, the idle pool's check and hand-back, the inactivity clock's
//! start, the next head's deadline), and on this VM a reading costs about
//! 20 ns: 4-5% of hpgate's user-space CPU per request (docs/benchmarks.md,
//! issue 19 step 15). Those readings fall in two polls: the one that reads
//! the request's head and sends it on, and the one that reads the answer
//! and writes it back. Within one poll the time moves by microseconds,
//! which none of those uses can tell from nothing (deadlines of seconds, a
//! duration metric in milliseconds' buckets).
//!
//! `Fresh` wraps a connection's future: before each poll it forgets the
//! last reading, and after it leaves nothing behind. `now()` inside such a
//! poll reads the clock once and then returns that reading; anywhere else
//! (other tasks, blocking threads, tests) it reads the clock every time.
//! Owns that thread-local reading; must not be used where the time must
//! move within one poll (a loop that waits on the clock by spinning).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use pin_project_lite::pin_project;

/// Where the calling thread is: outside any `Fresh` poll, or inside one
/// with or without a reading taken.
#[derive(Clone, Copy)]
enum Reading {
    Outside,
    Inside(Option<Instant>),
}

thread_local! {
    static READING: Cell<Reading> = const { Cell::new(Reading::Outside) };
}

/// The time: this poll's one reading inside a `Fresh` poll, else the
/// clock's.
pub fn now() -> Instant {
    READING.with(|r| match r.get() {
        Reading::Outside => Instant::now(),
        Reading::Inside(Some(at)) => at,
        Reading::Inside(None) => {
            let at = Instant::now();
            r.set(Reading::Inside(Some(at)));
            at
        }
    })
}

pin_project! {
    /// A future whose polls each share one clock reading.
    pub struct Fresh<F> {
        #[pin]
        inner: F,
    }
}

impl<F> Fresh<F> {
    pub fn new(inner: F) -> Self {
        Fresh { inner }
    }
}

impl<F: Future> Future for Fresh<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // A poll inside another (a task polling a nested Fresh) keeps the
        // outer reading and leaves the outer state as it found it.
        let outermost = READING.with(|r| matches!(r.get(), Reading::Outside));
        let _left = outermost.then(|| {
            READING.with(|r| r.set(Reading::Inside(None)));
            Leave
        });
        self.project().inner.poll(cx)
    }
}

/// Puts the thread back outside when the outermost poll ends, even by a
/// panic (a task's panic is caught by tokio, and the thread goes on).
struct Leave;

impl Drop for Leave {
    fn drop(&mut self) {
        READING.with(|r| r.set(Reading::Outside));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn outside_a_poll_every_call_reads_the_clock() {
        let a = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() >= a + Duration::from_millis(2));
    }

    #[tokio::test]
    async fn one_poll_shares_one_reading_and_the_next_poll_takes_a_new_one() {
        let (first, second) = Fresh::new(async {
            let a = now();
            std::thread::sleep(Duration::from_millis(2));
            // The same poll: the same reading.
            assert_eq!(now(), a);
            // A timer ends this poll; the next one reads the clock again.
            tokio::time::sleep(Duration::from_millis(2)).await;
            (a, now())
        })
        .await;
        assert!(second >= first + Duration::from_millis(4));
        // Nothing is left behind for code outside the wrapped polls.
        let outside = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() >= outside + Duration::from_millis(2));
    }

    #[tokio::test]
    async fn a_nested_poll_keeps_the_outer_reading() {
        Fresh::new(async {
            let outer = now();
            std::thread::sleep(Duration::from_millis(2));
            let inner = Fresh::new(async { now() }).await;
            assert_eq!(inner, outer);
            assert_eq!(now(), outer);
        })
        .await;
    }
}
