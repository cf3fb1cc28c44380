//! What one client connection waits on besides its sockets: one timer, the
//! gateway's shutdown, and the exit of the process its request went to.
//!
//! The front (`front/`) keeps one `Waits` for a connection's whole life
//! and lends it to each request it serves, so a kept-alive connection
//! registers its timer and its two cancellation waits once, not once per
//! request: per request that was a timer-wheel insertion and removal for
//! the head wait, another pair for `requestTimeout`, and a waiter list
//! entry added and removed for each cancellation, about a fifth of the
//! user-space CPU of a small proxied request (docs/benchmarks.md, step 7).
//! hyper's server path makes one per request.
//!
//! Owns the waiting, not the limits: callers say which instant or which
//! signal they wait for. Must not read or write any socket.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::supervisor::Backend;

/// A connection's waits; `Waits::default()` waits for no shutdown.
#[derive(Default)]
pub struct Waits {
    pub clock: Clock,
    pub stop: Stop,
    pub gone: Gone,
}

impl Waits {
    /// Waits that also end when `stop` is cancelled.
    pub fn until_stopped(stop: &CancellationToken) -> Waits {
        Waits {
            stop: Stop {
                token: Some(stop.clone()),
                wait: None,
            },
            ..Waits::default()
        }
    }
}

/// One timer, re-armed lazily: a later deadline than the armed one leaves
/// it alone (it fires early once, and is then moved to the deadline in
/// force), an earlier one moves it at once. A connection whose deadlines
/// keep moving later, as a head wait's and `requestTimeout`'s do request
/// after request, touches the timer wheel about once per limit, not twice
/// per request.
#[derive(Default)]
pub struct Clock {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Clock {
    /// Resolves once `deadline` has passed.
    pub fn until(&mut self, deadline: Instant) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| self.poll_until(cx, deadline))
    }

    fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        loop {
            ready!(sleep.as_mut().poll(cx));
            if sleep.deadline() >= deadline {
                return Poll::Ready(());
            }
            // It was armed for an earlier wait's deadline.
            sleep.as_mut().reset(deadline);
        }
    }
}

/// The gateway's shutdown, waited for by one registration per connection.
///
/// The registration's waker is the connection's own (`Fired`): it notes
/// the cancellation before waking the task. So once registered, whether
/// shutdown has begun is one atomic load (`begun`), and a wait polled
/// again without that waker having fired answers without touching the
/// token: the token's own answers (`is_cancelled`, a poll of its wait)
/// go through a lock every connection shares.
#[derive(Default)]
pub struct Stop {
    token: Option<CancellationToken>,
    wait: Option<Registered>,
}

/// The token's wait, and the waker it was registered with.
struct Registered {
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    fired: Arc<Fired>,
    waker: Waker,
    /// Polled once: it stays in the token's wait list from then on.
    listed: bool,
}

/// The waker of a registered shutdown wait: sets `cancelled`, then wakes
/// the task that waited last.
#[derive(Default)]
struct Fired {
    cancelled: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Fired {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.cancelled.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Stop {
    /// Resolves when shutdown begins; never without a token.
    pub fn wait(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let Some(token) = &self.token else {
                return Poll::Pending;
            };
            let r = self.wait.get_or_insert_with(|| {
                let fired = Arc::new(Fired::default());
                Registered {
                    wait: Box::pin(token.clone().cancelled_owned()),
                    waker: Waker::from(fired.clone()),
                    fired,
                    listed: false,
                }
            });
            // The task's waker first: a cancel in between still reaches it.
            r.fired.task.register(cx.waker());
            if r.fired.cancelled.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if r.listed {
                return Poll::Pending;
            }
            // Polled once, with its own waker, to be listed.
            r.listed = true;
            r.wait.as_mut().poll(&mut Context::from_waker(&r.waker))
        })
    }

    /// Whether shutdown has begun; no lock once `wait` has been polled.
    pub fn begun(&self) -> bool {
        match (&self.wait, &self.token) {
            (Some(r), _) => r.fired.cancelled.load(Ordering::Acquire),
            (None, Some(token)) => token.is_cancelled(),
            (None, None) => false,
        }
    }
}

/// The exit of the process the connection's requests go to, waited for
/// by one registration as long as they keep going to the same one.
#[derive(Default)]
pub struct Gone {
    of: Option<(Arc<Backend>, Pin<Box<WaitForCancellationFutureOwned>>)>,
}

impl Gone {
    /// Resolves when `backend`'s process has exited.
    pub fn wait<'a>(&'a mut self, backend: &Arc<Backend>) -> impl Future<Output = ()> + 'a {
        if !matches!(&self.of, Some((b, _)) if Arc::ptr_eq(b, backend)) {
            let wait = Box::pin(backend.gone.clone().cancelled_owned());
            self.of = Some((backend.clone(), wait));
        }
        std::future::poll_fn(move |cx| match &mut self.of {
            Some((_, wait)) => wait.as_mut().poll(cx),
            None => Poll::Pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_fired_timer_is_moved_to_the_next_deadline() {
        let mut clock = Clock::default();
        let start = Instant::now();
        clock.until(start + Duration::from_secs(10)).await;
        assert_eq!(Instant::now(), start + Duration::from_secs(10));
        clock.until(start + Duration::from_secs(30)).await;
        assert_eq!(Instant::now(), start + Duration::from_secs(30));
    }

    /// A timer armed for `armed` s by a wait that ended after 1 s, then a
    /// wait for `then` s: it must end at `then`, neither before nor after.
    async fn armed_then_waited(armed: u64, then: u64) {
        let mut clock = Clock::default();
        let start = Instant::now();
        let secs = |s| start + Duration::from_secs(s);
        let first = tokio::time::timeout(Duration::from_secs(1), clock.until(secs(armed))).await;
        assert!(first.is_err());
        clock.until(secs(then)).await;
        assert_eq!(Instant::now(), secs(then), "armed {armed} s, then {then} s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_is_not_reached_early() {
        armed_then_waited(5, 50).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_timer() {
        armed_then_waited(60, 3).await;
    }

    #[tokio::test]
    async fn stop_says_shutdown_began_whether_its_wait_was_polled_or_not() {
        for polled in [false, true] {
            let token = CancellationToken::new();
            let mut waits = Waits::until_stopped(&token);
            if polled {
                let pending =
                    tokio::time::timeout(Duration::from_millis(10), waits.stop.wait()).await;
                assert!(pending.is_err());
            }
            assert!(!waits.stop.begun());
            token.cancel();
            assert!(waits.stop.begun(), "polled before: {polled}");
            tokio::time::timeout(Duration::from_secs(5), waits.stop.wait())
                .await
                .expect("the cancelled token ends the wait");
        }
        assert!(!Waits::default().stop.begun());
    }

    #[tokio::test]
    async fn a_cancel_wakes_the_task_that_waited_last() {
        let token = CancellationToken::new();
        let mut waits = Waits::until_stopped(&token);
        // Polled from one task, then from another: the second is woken.
        let first = tokio::time::timeout(Duration::from_millis(10), waits.stop.wait()).await;
        assert!(first.is_err());
        let cancel = token.clone();
        let waiter = tokio::spawn(async move { waits.stop.wait().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
    }

    #[tokio::test]
    async fn stop_ends_the_wait_it_was_made_for() {
        let token = CancellationToken::new();
        let mut waits = Waits::until_stopped(&token);
        let pending = tokio::time::timeout(Duration::from_millis(20), waits.stop.wait()).await;
        assert!(pending.is_err());
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), waits.stop.wait())
            .await
            .expect("the cancelled token ends the wait");
        let mut none = Waits::default();
        let never = tokio::time::timeout(Duration::from_millis(20), none.stop.wait()).await;
        assert!(never.is_err());
    }
}
