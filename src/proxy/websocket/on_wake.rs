//! `OnWake`: a future polled only after its own waker fired.
//!
//! A WebSocket relay runs both directions and its signals in one task, and
//! that task wakes for every burst. Polled plainly, every wake would poll
//! the direction that has nothing to read and the shutdown signals, which
//! answer behind their wait list's lock. Each wrapped part (a direction,
//! the close grace with its signals) gets a waker of its own (a `Flag`): it
//! is polled once to register, then only when that waker fires or someone
//! raises its flag.
//!
//! The flags of one task share its waker (`Wakes`), handed over by
//! `Wakes::drive` when it changed: an `OnWake` must be polled in the same
//! task poll as its flag's `drive`, and after it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// One task's waker, shared by the flags of the parts it polls. Kept, not
/// taken, by a wake: the task hands it over again only when it changed
/// (a task keeps one waker), not on every poll. Locked when a flag is
/// raised and when the waker changes; a registration per poll cost two
/// atomic read-modify-writes, as a wake does.
pub struct Wakes {
    task: Mutex<Option<Waker>>,
}

impl Wakes {
    pub fn new() -> Arc<Wakes> {
        Arc::new(Wakes {
            task: Mutex::new(None),
        })
    }

    /// A flag that wakes this task; raised from the start, so the first
    /// poll registers the part it wraps.
    pub fn flag(self: &Arc<Self>) -> Arc<Flag> {
        Arc::new(Flag {
            woken: AtomicBool::new(true),
            wakes: self.clone(),
        })
    }

    /// Polls `inner` with this task's waker registered first.
    pub fn drive<F: Future>(self: Arc<Self>, inner: F) -> Driven<F> {
        Driven {
            inner,
            wakes: self,
            given: None,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct Driven<F> {
        #[pin]
        inner: F,
        wakes: Arc<Wakes>,
        // The task's waker as handed over last.
        given: Option<Waker>,
    }
}

impl<F: Future> Future for Driven<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Handed over before any flag is read: a wake in between still
        // reaches the task.
        if !this.given.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            if let Ok(mut task) = this.wakes.task.lock() {
                *task = Some(cx.waker().clone());
            }
            *this.given = Some(cx.waker().clone());
        }
        this.inner.poll(cx)
    }
}

/// A wrapped part's waker: notes the wake, then wakes the task.
pub struct Flag {
    woken: AtomicBool,
    wakes: Arc<Wakes>,
}

impl Flag {
    /// Has the wrapped part polled at the task's next poll.
    pub fn raise(&self) {
        self.woken.store(true, Ordering::Release);
        if let Ok(task) = self.wakes.task.lock() {
            if let Some(w) = &*task {
                w.wake_by_ref();
            }
        }
    }
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.raise();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.raise();
    }
}

pin_project_lite::pin_project! {
    pub struct OnWake<F> {
        #[pin]
        inner: F,
        flag: Arc<Flag>,
        // Built once: the inner future's registrations see the same waker
        // on every poll and keep it without cloning.
        waker: Waker,
    }
}

impl<F: Future> OnWake<F> {
    /// `flag` is the caller's too: raising it has `inner` polled.
    pub fn with_flag(inner: F, flag: Arc<Flag>) -> OnWake<F> {
        let waker = Waker::from(flag.clone());
        OnWake { inner, flag, waker }
    }
}

impl<F: Future> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // A load first: a swap is a locked instruction even when the flag
        // is down, as it is for all but one part at most wakes.
        let woken = this.flag.woken.load(Ordering::Acquire)
            && this.flag.woken.swap(false, Ordering::AcqRel);
        if !woken {
            return Poll::Pending;
        }
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `open` is set, waking through the
    /// waker it was last polled with.
    struct Gate {
        polls: Arc<AtomicUsize>,
        open: Arc<AtomicBool>,
        waker: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Gate {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.open.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().expect("lock") = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn the_inner_future_is_polled_only_after_it_woke() {
        let polls = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicBool::new(false));
        let slot = Arc::new(std::sync::Mutex::new(None::<Waker>));
        let gate = Gate {
            polls: polls.clone(),
            open: open.clone(),
            waker: slot.clone(),
        };
        let wakes = Wakes::new();
        let flag = wakes.flag();
        let mut wrapped = Box::pin(wakes.drive(OnWake::with_flag(gate, flag)));
        let noop = Waker::noop();
        let mut cx = Context::from_waker(noop);
        for _ in 0..5 {
            assert!(wrapped.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1, "polled once, to register");
        open.store(true, Ordering::SeqCst);
        assert!(wrapped.as_mut().poll(&mut cx).is_pending(), "not woken yet");
        let inner_waker = slot.lock().expect("lock").take().expect("registered");
        inner_waker.wake();
        assert!(wrapped.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    /// Counts the wakes it gets.
    struct Counted(AtomicUsize);

    impl Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_raised_flag_wakes_the_waker_the_task_polled_with_last() {
        let wakes = Wakes::new();
        let flag = wakes.flag();
        let pending = std::future::poll_fn(|_| Poll::<()>::Pending);
        let mut driven = Box::pin(wakes.drive(OnWake::with_flag(pending, flag.clone())));
        let (first, second) = (
            Arc::new(Counted(AtomicUsize::new(0))),
            Arc::new(Counted(AtomicUsize::new(0))),
        );
        // Polled by the task whose waker counts into `with`.
        let mut poll_by = |with: &Arc<Counted>| {
            let waker = Waker::from(with.clone());
            assert!(driven
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
        };
        poll_by(&first);
        poll_by(&first);
        flag.raise();
        flag.raise();
        assert_eq!(
            first.0.load(Ordering::SeqCst),
            2,
            "kept, not taken, by a wake"
        );
        poll_by(&second);
        flag.raise();
        assert_eq!(
            (
                first.0.load(Ordering::SeqCst),
                second.0.load(Ordering::SeqCst)
            ),
            (2, 1),
            "the new waker, handed over when it changed"
        );
    }

    #[tokio::test]
    async fn a_raised_flag_has_the_inner_future_polled() {
        let polls = Arc::new(AtomicUsize::new(0));
        let gate = Gate {
            polls: polls.clone(),
            open: Arc::new(AtomicBool::new(false)),
            waker: Arc::new(std::sync::Mutex::new(None)),
        };
        let wakes = Wakes::new();
        let flag = wakes.flag();
        let mut wrapped = Box::pin(wakes.drive(OnWake::with_flag(gate, flag.clone())));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(wrapped.as_mut().poll(&mut cx).is_pending());
        assert!(wrapped.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        flag.raise();
        assert!(wrapped.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_wake_of_the_inner_future_wakes_the_outer_task() {
        let token = tokio_util::sync::CancellationToken::new();
        let wrapped = {
            let wakes = Wakes::new();
            let flag = wakes.flag();
            wakes.drive(OnWake::with_flag(token.clone().cancelled_owned(), flag))
        };
        let waiter = tokio::spawn(wrapped);
        tokio::task::yield_now().await;
        token.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
    }
}
