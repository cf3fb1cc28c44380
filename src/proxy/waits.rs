//! What one client connection waits on besides its sockets: one timer, the
//! gateway's shutdown, and the exit of the process its request went to;
//! and what its last request got from the supervisor (`Seen`), which the
//! next one uses again while nothing has changed.
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
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Wake, Waker};

use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::supervisor::{Backend, Seen};

/// A connection's waits; `Waits::default()` waits for no shutdown.
#[derive(Default)]
pub struct Waits {
    pub clock: Clock,
    pub stop: Stop,
    pub gone: Gone,
    pub seen: Seen,
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
/// per request. The timer is polled only when it has fired or was moved
/// (`Woken`): a poll of a timer still running registers a waker again.
#[derive(Default)]
pub struct Clock {
    armed: Option<Armed>,
}

struct Armed {
    sleep: Pin<Box<Sleep>>,
    woken: Woken,
    /// Polled at the next wait whatever its flag says: new (its waker not
    /// yet registered), or elapsed (it will not fire again until moved).
    poll_next: bool,
}

impl Clock {
    /// Resolves once `deadline` has passed.
    pub fn until(&mut self, deadline: Instant) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| self.poll_until(cx, deadline))
    }

    fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let Armed {
            sleep,
            woken,
            poll_next,
        } = self.armed.get_or_insert_with(|| Armed {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            woken: Woken::new(),
            poll_next: true,
        });
        woken.register(cx);
        let mut due = *poll_next || woken.take();
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
            due = true;
        }
        if !due {
            return Poll::Pending;
        }
        *poll_next = false;
        let mut own = Context::from_waker(&woken.waker);
        loop {
            ready!(sleep.as_mut().poll(&mut own));
            if sleep.deadline() >= deadline {
                *poll_next = true;
                return Poll::Ready(());
            }
            // It was armed for an earlier wait's deadline.
            sleep.as_mut().reset(deadline);
        }
    }
}

/// The gateway's shutdown, waited for by one registration per connection.
#[derive(Default)]
pub struct Stop {
    token: Option<CancellationToken>,
    wait: Option<Listed>,
}

impl Stop {
    /// Resolves when shutdown begins; never without a token.
    pub fn wait(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let Some(token) = &self.token else {
                return Poll::Pending;
            };
            self.wait.get_or_insert_with(|| Listed::new(token)).poll(cx)
        })
    }

    /// Whether shutdown has begun; no lock once `wait` has been polled.
    pub fn begun(&self) -> bool {
        match (&self.wait, &self.token) {
            (Some(listed), _) => listed.fired(),
            (None, Some(token)) => token.is_cancelled(),
            (None, None) => false,
        }
    }
}

/// The exit of the process the connection's requests go to, waited for
/// by one registration as long as they keep going to the same one.
#[derive(Default)]
pub struct Gone {
    of: Option<(Arc<Backend>, Listed)>,
}

impl Gone {
    /// Resolves when `backend`'s process has exited.
    pub fn wait<'a>(&'a mut self, backend: &Arc<Backend>) -> impl Future<Output = ()> + 'a {
        if !matches!(&self.of, Some((b, _)) if Arc::ptr_eq(b, backend)) {
            self.of = Some((backend.clone(), Listed::new(&backend.gone)));
        }
        std::future::poll_fn(move |cx| match &mut self.of {
            Some((_, listed)) => listed.poll(cx),
            None => Poll::Pending,
        })
    }
}

/// A cancellation token's wait, listed once with a waker of its own
/// (`Woken`), which notes the cancel before waking the task.
///
/// Why: a connection polls its waits on every request, and a token's own
/// answers (`is_cancelled`, a poll of its wait) each go through a lock
/// that every connection waiting on that token shares: about six atomic
/// read-modify-writes per wait and request. Once listed, a poll here is
/// one load, and so is `fired`.
struct Listed {
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    woken: Woken,
    /// Polled once: it stays on the token's wait list from then on.
    listed: bool,
}

impl Listed {
    fn new(token: &CancellationToken) -> Listed {
        Listed {
            wait: Box::pin(token.clone().cancelled_owned()),
            woken: Woken::new(),
            listed: false,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.woken.register(cx);
        // A cancel stays: the flag is read, not taken.
        if self.fired() {
            return Poll::Ready(());
        }
        if self.listed {
            return Poll::Pending;
        }
        self.listed = true;
        self.wait
            .as_mut()
            .poll(&mut Context::from_waker(&self.woken.waker))
    }

    fn fired(&self) -> bool {
        self.woken.is_up()
    }
}

/// A waker of its own for something a connection waits on (a timer, a
/// token's wait): it raises a flag, then wakes the task that polled last.
/// The connection polls the thing again only once the flag is up; and it
/// hands its task's waker over only when that changed (a connection's task
/// keeps one). Why: a poll of a tokio timer or wait registers the task's
/// waker again each time, two or more atomic read-modify-writes.
struct Woken {
    flag: Arc<Flag>,
    /// Given to the thing waited on.
    waker: Waker,
    /// The task's waker, as handed over last.
    task: Option<Waker>,
}

#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    /// Kept, not taken, by a wake: the same task is woken by the next one
    /// without handing its waker over again. Locked only when the task
    /// changes and when the flag is raised, never per request.
    task: Mutex<Option<Waker>>,
}

impl Woken {
    fn new() -> Woken {
        let flag = Arc::new(Flag::default());
        Woken {
            waker: Waker::from(flag.clone()),
            flag,
            task: None,
        }
    }

    /// Before the flag is read: a wake in between still reaches the task.
    fn register(&mut self, cx: &Context<'_>) {
        if self.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return;
        }
        if let Ok(mut task) = self.flag.task.lock() {
            *task = Some(cx.waker().clone());
        }
        self.task = Some(cx.waker().clone());
    }

    fn is_up(&self) -> bool {
        self.flag.woken.load(Ordering::Acquire)
    }

    /// Whether it woke since the last `take` (a load first: a swap is a
    /// locked instruction even when nothing changes).
    fn take(&self) -> bool {
        self.is_up() && self.flag.woken.swap(false, Ordering::AcqRel)
    }
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Ok(task) = self.task.lock() {
            if let Some(w) = &*task {
                w.wake_by_ref();
            }
        }
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

    /// Polls the shutdown wait for a moment: it must not end.
    async fn still_waiting(waits: &mut Waits) {
        let pending = tokio::time::timeout(Duration::from_millis(10), waits.stop.wait()).await;
        assert!(pending.is_err(), "no shutdown yet");
    }

    #[tokio::test]
    async fn stop_says_shutdown_began_whether_its_wait_was_polled_or_not() {
        for polled in [false, true] {
            let token = CancellationToken::new();
            let mut waits = Waits::until_stopped(&token);
            if polled {
                still_waiting(&mut waits).await;
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
        still_waiting(&mut waits).await;
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
        still_waiting(&mut waits).await;
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), waits.stop.wait())
            .await
            .expect("the cancelled token ends the wait");
        let mut none = Waits::default();
        let never = tokio::time::timeout(Duration::from_millis(20), none.stop.wait()).await;
        assert!(never.is_err());
    }
}
