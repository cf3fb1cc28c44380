//! `Both`: runs two `()` futures to completion, side by side.
//!
//! `tokio::join!` moves its futures into a new tuple, and in an async block
//! the moved-from originals keep their room too; for a WebSocket relay that
//! room is held for the connection's whole life. `Both` owns the two futures
//! in place and adds two flags.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    pub struct Both<A, B> {
        #[pin]
        a: A,
        #[pin]
        b: B,
        a_done: bool,
        b_done: bool,
    }
}

pub fn both<A, B>(a: A, b: B) -> Both<A, B>
where
    A: Future<Output = ()>,
    B: Future<Output = ()>,
{
    Both {
        a,
        b,
        a_done: false,
        b_done: false,
    }
}

impl<A, B> Future for Both<A, B>
where
    A: Future<Output = ()>,
    B: Future<Output = ()>,
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
        if *this.a_done && *this.b_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_both() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let joined = both(
            async move {
                let _ = rx.await;
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            },
            async move {
                tokio::task::yield_now().await;
                let _ = tx.send(());
            },
        );
        joined.await;
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}
