//! The client's request body on its way to the app.
//!
//! Owns the client's side of the exchange: each frame passes straight
//! through (never collected), touches the activity clock, and the client's
//! own inactivity limit (`clientBodyTimeout`) ends a stalled upload as the
//! client's fault. Must not change a byte of the body.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::activity::Activity;
use prometheus_client::metrics::counter::Counter;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's request body on its way to the app, with the client's own
/// inactivity limit (`clientBodyTimeout`).
pub struct RequestBody {
    inner: Option<Incoming>,
    activity: Arc<Activity>,
    /// `clientBodyTimeout`, and the clock that enforces it (armed on the
    /// first wait, so a body that is already there costs no timer).
    limit: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    last_frame: Instant,
    /// `hpgate_request_body_bytes_total`, when counted.
    counted: Option<Counter>,
}

/// The client sent nothing of its request body for `clientBodyTimeout`.
#[derive(Debug, thiserror::Error)]
#[error("the client sent nothing of its request body for {0} s (clientBodyTimeout)")]
pub struct ClientStalled(pub u64);

impl RequestBody {
    pub fn new(inner: Incoming, activity: Arc<Activity>, limit: Option<Duration>) -> Self {
        RequestBody {
            inner: Some(inner),
            activity,
            limit,
            timer: None,
            last_frame: Instant::now(),
            counted: None,
        }
    }

    /// Adds the body's bytes to `counter` as they pass.
    pub fn counting(mut self, counter: Counter) -> Self {
        self.counted = Some(counter);
        self
    }

    /// No body (a retried request that had none).
    pub fn empty(activity: Arc<Activity>) -> Self {
        RequestBody {
            inner: None,
            activity,
            limit: None,
            timer: None,
            last_frame: Instant::now(),
            counted: None,
        }
    }

    /// Err once the client has owed bytes for longer than the limit.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Result<(), ClientStalled> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let deadline = (self.last_frame + limit).into();
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Pending => Ok(()),
            Poll::Ready(()) => {
                self.activity.client_stalled.store(true, Ordering::Relaxed);
                Err(ClientStalled(limit.as_secs()))
            }
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let r = Pin::new(inner).poll_frame(cx);
        // Without a client limit requestTimeout keeps covering a stall too,
        // so something still ends it.
        let owes = r.is_pending() && this.limit.is_some();
        this.activity.client_owes.store(owes, Ordering::Relaxed);
        match r {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(c), Some(d)) = (&this.counted, frame.data_ref()) {
                    c.inc_by(d.len() as u64);
                }
                this.activity.touch();
                this.last_frame = Instant::now();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.activity.client_failed.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.poll_stall(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => {
                    this.activity.client_owes.store(false, Ordering::Relaxed);
                    Poll::Ready(Some(Err(e.into())))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}
