//! What hpgate sends to the client: its own page, or the app's response
//! body streamed frame by frame.
//!
//! Owns the response side's accounting: each frame passes straight through
//! (never collected), touches the activity clock that `requestTimeout`
//! watches, and is counted for the access log, written when the body ends
//! or is dropped. Must not change a byte of any body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::activity::Activity;
use super::conn_tag::ConnTag;
use super::lean::{LeanBody, Passed};
use super::pool::Lease;
use super::request_body::BoxError;
use prometheus_client::metrics::counter::Counter;

/// One access-log line, written when the response is done.
#[derive(Debug)]
pub struct AccessLog {
    pub conn: ConnTag,
    pub method: http::Method,
    /// The request target as sent (a cheap, shared copy of the request's).
    pub path: http::uri::PathAndQuery,
    pub status: u16,
    /// The protocol the client spoke (`HTTP/1.1`, `HTTP/2`); a WebSocket
    /// over HTTP/2 shows as `HTTP/2` with method CONNECT.
    pub proto: http::Version,
    pub pid: Option<u32>,
    pub start: Instant,
    pub bytes: u64,
    pub complete: bool,
    /// `hpgate_response_body_bytes_total`: `bytes` is added when the
    /// response is done.
    pub counted: Option<Counter>,
}

impl AccessLog {
    fn emit(&self) {
        if let Some(c) = &self.counted {
            c.inc_by(self.bytes);
        }
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
            conn = self.conn.id,
            peer = %self.conn.peer,
            method = %self.method,
            path = %self.path,
            status = self.status,
            proto = ?self.proto,
            bytes = self.bytes,
            ms,
            pid = %pid,
            complete = self.complete,
            "access"
        );
    }
}

/// Where the app's body comes from: hyper's client, or the lean path's
/// own reader (`proxy/lean/`).
pub enum AppSource {
    Hyper(Incoming),
    /// Boxed where it is made (`lean::exchange`): the answer is moved
    /// through every phase on its way to the client, a copy each time.
    Lean(Box<LeanBody>),
}

impl From<Incoming> for AppSource {
    fn from(b: Incoming) -> Self {
        AppSource::Hyper(b)
    }
}

impl AppSource {
    /// The app's header fields when they came as bytes (the lean path,
    /// `lean/passed.rs`) rather than in the response's map.
    fn passed(&self) -> Option<&Passed> {
        match self {
            AppSource::Lean(b) => b.passed.as_ref(),
            AppSource::Hyper(_) => None,
        }
    }

    /// Takes them out, for a head that needs them as a map.
    pub fn take_passed(&mut self) -> Option<Passed> {
        match self {
            AppSource::Lean(b) => b.passed.take(),
            AppSource::Hyper(_) => None,
        }
    }
}

impl From<Box<LeanBody>> for AppSource {
    fn from(b: Box<LeanBody>) -> Self {
        AppSource::Lean(b)
    }
}

impl Body for AppSource {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            AppSource::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            AppSource::Lean(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AppSource::Hyper(b) => b.is_end_stream(),
            AppSource::Lean(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AppSource::Hyper(b) => b.size_hint(),
            AppSource::Lean(b) => b.size_hint(),
        }
    }
}

/// The app's response body with its inactivity timer.
pub struct AppBody {
    inner: AppSource,
    activity: Arc<Activity>,
    limit: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    // Held so a graceful stop of the process waits for this response.
    _lease: TaskTrackerToken,
    /// The connection, handed back to the pool once the body has ended.
    reuse: Option<Lease>,
    ended: bool,
}

impl Drop for AppBody {
    fn drop(&mut self) {
        // A body read to the end leaves the connection clean for the next
        // request; anything else (client gone, timeout) closes it.
        if self.ended || self.inner.is_end_stream() {
            if let Some(lease) = self.reuse.take() {
                lease.release();
            }
        }
    }
}

impl AppBody {
    pub fn new(
        inner: impl Into<AppSource>,
        activity: Arc<Activity>,
        limit: Option<Duration>,
        lease: TaskTrackerToken,
    ) -> Self {
        AppBody {
            inner: inner.into(),
            activity,
            limit,
            timer: None,
            _lease: lease,
            reuse: None,
            ended: false,
        }
    }

    /// Hands the connection back to its pool when the body has been read
    /// to the end (dropped otherwise, which closes it). A lean body has no
    /// lease: it hands its own socket back.
    pub fn reuse(mut self, lease: Option<Lease>) -> Self {
        self.reuse = lease;
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

// The app's body is what nearly every response carries; boxing it to
// shrink the rare page variant would cost a second allocation per request
// (the whole state is already behind `ResponseBody`'s one).
#[allow(clippy::large_enum_variant)]
enum Inner {
    Full(Option<Bytes>),
    App(AppBody),
}

/// Moves the app's fields passed as bytes into the response's map, after
/// what is there: for whatever reads or edits the head as a map (hyper's
/// server, HSTS). The front writes them as bytes instead.
pub fn fields_into_map(resp: &mut http::Response<ResponseBody>) {
    if let Some(passed) = resp.body_mut().take_passed() {
        passed.into_map(resp.headers_mut());
    }
}

/// What hpgate sends to the client: its own page or the app's stream.
/// Boxed: a response is moved through every phase on its way to the
/// client (each a copy of it), and a pointer moves in a register where the
/// body itself took a call to memcpy; one allocation per response costs
/// less than those copies (docs/benchmarks.md, issue 19).
pub struct ResponseBody(Box<State>);

struct State {
    inner: Inner,
    log: Option<AccessLog>,
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        ResponseBody(Box::new(State {
            inner: Inner::Full(Some(bytes).filter(|b| !b.is_empty())),
            log: None,
        }))
    }

    pub fn app(up: AppBody) -> Self {
        ResponseBody(Box::new(State {
            inner: Inner::App(up),
            log: None,
        }))
    }

    /// The app's header fields when they came as bytes (the lean path,
    /// `lean/passed.rs`) rather than in the response's map.
    pub fn passed(&self) -> Option<&Passed> {
        match &self.0.inner {
            Inner::App(up) => up.inner.passed(),
            Inner::Full(_) => None,
        }
    }

    /// Takes the fields passed as bytes out of the body (see `passed`).
    pub fn take_passed(&mut self) -> Option<Passed> {
        match &mut self.0.inner {
            Inner::App(up) => up.inner.take_passed(),
            Inner::Full(_) => None,
        }
    }

    pub fn set_log(&mut self, log: AccessLog) {
        self.0.log = Some(log);
    }

    fn count(&mut self, n: usize) {
        if let Some(l) = self.0.log.as_mut() {
            l.bytes += n as u64;
        }
    }

    fn finish(&mut self) {
        if let Some(mut l) = self.0.log.take() {
            l.complete = true;
            l.emit();
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(l) = self.0.log.take() {
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
        let r = match &mut this.0.inner {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::App(up) => match Pin::new(&mut up.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // The inactivity clock only matters while more is to
                    // come (a small answer's one frame is also its last).
                    if !up.inner.is_end_stream() {
                        up.activity.touch();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    up.ended = true;
                    Poll::Ready(None)
                }
                Poll::Pending => match up.poll_timer(cx) {
                    Ok(()) => Poll::Pending,
                    Err(e) => {
                        match &this.0.log {
                            Some(l) => {
                                tracing::warn!(conn = l.conn.id, peer = %l.conn.peer, "{e}; closing the response")
                            }
                            None => tracing::warn!("{e}; closing the response"),
                        }
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
        match &self.0.inner {
            Inner::Full(b) => b.is_none(),
            Inner::App(up) => up.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0.inner {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::App(up) => up.inner.size_hint(),
        }
    }
}
