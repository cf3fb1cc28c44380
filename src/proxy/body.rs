//! Body wrappers for the two legs of a forwarded request.
//!
//! Owns streaming accounting: each frame passes straight through (never
//! collected), touches the shared activity clock that `requestTimeout`
//! watches, and is counted for the access log, written when the response
//! body ends or is dropped. Must not change a byte of any body.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::pool::{Conn, Pool};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// When bytes last moved in either direction of one request, and whether
/// the exchange is waiting on the client rather than on the app.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    last_ms: AtomicU64,
    /// The client's request body broke (bad framing or disconnect).
    client_failed: AtomicBool,
    /// The client sent nothing of its body for `clientBodyTimeout`.
    client_stalled: AtomicBool,
    /// The request body is waiting for the client's next bytes: the app is
    /// not the one keeping the exchange quiet.
    client_owes: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            base: Instant::now(),
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
    fn app_idle_past(&self, limit: Duration) -> bool {
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

    /// Resolves once nothing has moved for `limit` by the app's doing.
    pub async fn idle_for(&self, limit: Duration) {
        while !self.app_idle_past(limit) {
            tokio::time::sleep_until((self.last() + limit).into()).await;
        }
    }
}

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
        }
    }

    /// No body (a retried request that had none).
    pub fn empty(activity: Arc<Activity>) -> Self {
        RequestBody {
            inner: None,
            activity,
            limit: None,
            timer: None,
            last_frame: Instant::now(),
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

/// One access-log line, written when the response is done.
#[derive(Debug)]
pub struct AccessLog {
    pub method: http::Method,
    /// The request target as sent (a cheap, shared copy of the request's).
    pub path: http::uri::PathAndQuery,
    pub status: u16,
    pub pid: Option<u32>,
    pub start: Instant,
    pub bytes: u64,
    pub complete: bool,
}

impl AccessLog {
    fn emit(&self) {
        // Formatting is skipped when the access target is filtered out.
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            return;
        }
        let pid = self
            .pid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into());
        let ms = (self.start.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
        tracing::info!(
            target: "access",
            method = %self.method,
            path = %self.path,
            status = self.status,
            bytes = self.bytes,
            ms,
            pid = %pid,
            complete = self.complete,
            "access"
        );
    }
}

/// The app's response body with its inactivity timer.
pub struct Upstream {
    inner: Incoming,
    activity: Arc<Activity>,
    limit: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    // Held so a graceful stop of the process waits for this response.
    _lease: TaskTrackerToken,
    /// The connection, handed back to the pool once the body has ended.
    reuse: Option<(Arc<Pool>, Conn)>,
    ended: bool,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // A body read to the end leaves the connection clean for the next
        // request; anything else (client gone, timeout) closes it.
        if self.ended || self.inner.is_end_stream() {
            if let Some((pool, conn)) = self.reuse.take() {
                pool.put(conn);
            }
        }
    }
}

impl Upstream {
    pub fn new(
        inner: Incoming,
        activity: Arc<Activity>,
        limit: Option<Duration>,
        lease: TaskTrackerToken,
    ) -> Self {
        Upstream {
            inner,
            activity,
            limit,
            timer: None,
            _lease: lease,
            reuse: None,
            ended: false,
        }
    }

    /// Hands `conn` back to `pool` when the body has been read to the end.
    pub fn reuse(mut self, pool: Arc<Pool>, conn: Conn) -> Self {
        self.reuse = Some((pool, conn));
        self
    }

    /// Err when the inactivity limit has passed.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Result<(), BoxError> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        loop {
            let deadline = self.activity.last() + limit;
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
            if timer.deadline() != deadline.into() {
                timer.as_mut().reset(deadline.into());
            }
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(()) if self.activity.app_idle_past(limit) => {
                    return Err(format!(
                        "requestTimeout: the app sent nothing for {} s",
                        limit.as_secs()
                    )
                    .into())
                }
                Poll::Ready(()) => continue,
            }
        }
    }
}

use std::future::Future;

enum Inner {
    Full(Option<Bytes>),
    Upstream(Upstream),
}

/// What hpgate sends to the client: its own page or the app's stream.
pub struct ResponseBody {
    inner: Inner,
    log: Option<AccessLog>,
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        ResponseBody {
            inner: Inner::Full(Some(bytes).filter(|b| !b.is_empty())),
            log: None,
        }
    }

    pub fn upstream(up: Upstream) -> Self {
        ResponseBody {
            inner: Inner::Upstream(up),
            log: None,
        }
    }

    pub fn set_log(&mut self, log: AccessLog) {
        self.log = Some(log);
    }

    fn count(&mut self, n: usize) {
        if let Some(l) = self.log.as_mut() {
            l.bytes += n as u64;
        }
    }

    fn finish(&mut self) {
        if let Some(mut l) = self.log.take() {
            l.complete = true;
            l.emit();
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(l) = self.log.take() {
            l.emit();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let r = match &mut this.inner {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream(up) => match Pin::new(&mut up.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    up.activity.touch();
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => {
                    up.ended = true;
                    Poll::Ready(None)
                }
                Poll::Pending => match up.poll_timer(cx) {
                    Ok(()) => Poll::Pending,
                    Err(e) => {
                        tracing::warn!("{e}; closing the response");
                        Poll::Ready(Some(Err(e)))
                    }
                },
            },
        };
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    let n = d.len();
                    this.count(n);
                }
                // hyper stops polling once a sized body is complete.
                if this.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) => this.finish(),
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(b) => b.is_none(),
            Inner::Upstream(up) => up.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Upstream(up) => up.inner.size_hint(),
        }
    }
}
