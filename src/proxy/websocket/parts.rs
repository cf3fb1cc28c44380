//! `Parts`: a WebSocket relay's two directions, run to the end side by
//! side, and the close grace that ends them early.
//!
//! One future for the three, polled in place: `tokio::join!` moves its
//! futures into a new tuple (and in an async block the moved-from
//! originals keep their room too, for the connection's whole life), and a
//! `select!` around the join added a layer of polling to every wake.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    pub struct Parts<A, B, G> {
        #[pin]
        a: A,
        #[pin]
        b: B,
        #[pin]
        grace: G,
        a_done: bool,
        b_done: bool,
    }
}

/// Ready once `a` and `b` both are, or as soon as `grace` is.
pub fn parts<A, B, G>(a: A, b: B, grace: G) -> Parts<A, B, G>
where
    A: Future<Output = ()>,
    B: Future<Output = ()>,
    G: Future<Output = ()>,
{
    Parts {
        a,
        b,
        grace,
        a_done: false,
        b_done: false,
    }
}

impl<A, B, G> Future for Parts<A, B, G>
where
    A: Future<Output = ()>,
    B: Future<Output = ()>,
    G: Future<Output = ()>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if !*this.a_done && this.a.poll(cx).is_ready() {
            *this.a_done = true;
        }
        if !*this.b_done && this.b.poll(cx).is_ready() {
            *this.b_done = true;
        }
        if (*this.a_done && *this.b_done) || this.grace.poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn waits_for_both_directions() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let joined = parts(
            async move {
                let _ = rx.await;
                flag.store(true, Ordering::SeqCst);
            },
            async move {
                tokio::task::yield_now().await;
                let _ = tx.send(());
            },
            std::future::pending(),
        );
        joined.await;
        assert!(done.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn the_grace_ends_both_early() {
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stuck = async move {
            let _ = rx.await;
        };
        let ended = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            parts(stuck, async {}, tokio::task::yield_now()),
        )
        .await;
        assert!(ended.is_ok(), "the grace ended it");
    }
}
