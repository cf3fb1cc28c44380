//! The front's responses: the head written in one buffer by the same
//! rules as hyper's HTTP/1.1 server, then the body frame by frame.
//!
//! Owns the framing the client sees (RFC 9112 section 6): the app's
//! Content-Length when it has one, else the body's known length, else
//! chunked; no body for HEAD, 1xx, 204 and 304; `connection: close` when
//! the connection ends after this response; a Date when the response has
//! none. Small frames ready at once join the head in one write. Must not
//! change the status or any header `service.rs` made; must not read from
//! the client.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use http_body::Body;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::proxy::body::ResponseBody;

/// Bytes gathered before a write: frames ready at once join the head
/// up to this much; a larger frame is written on its own.
const GATHER: usize = 16 * 1024;

/// How the body goes out after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// No body bytes at all (HEAD, 1xx, 204, 304, or an empty body).
    None,
    /// As they come: the head says how many.
    Sized,
    Chunked,
}

/// A response whose head is gathered, ready for `send`.
pub struct Started {
    plan: Plan,
    close: bool,
}

/// Gathers the head of a response to a request (`head_request` for HEAD)
/// in `out`; `close` when the connection ends after it.
pub fn start(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    body: &ResponseBody,
    head_request: bool,
    mut close: bool,
) -> Started {
    let plan = head(out, parts, body, head_request, &mut close);
    Started { plan, close }
}

/// Sends the head and the body. Returns whether the connection may carry
/// another request (false after a body the app broke off, or a
/// `connection: close`). The body is pinned by the caller: this future
/// holds references only, so creating it per request copies little.
pub async fn send<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut Vec<u8>,
    mut body: Pin<&mut ResponseBody>,
    started: Started,
) -> io::Result<bool> {
    let whole = match started.plan {
        Plan::None => {
            // An ended body is polled once so its access line says complete.
            if body.is_end_stream() {
                let _ = poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await;
            }
            true
        }
        plan => stream(w, out, body, plan == Plan::Chunked).await?,
    };
    if !out.is_empty() {
        w.write_all(out).await?;
        out.clear();
    }
    w.flush().await?;
    Ok(whole && !started.close)
}

/// Sends the body; false when it ended with an error (the client then
/// sees the connection close, as with hyper: a cut body must not look
/// whole).
async fn stream<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut Vec<u8>,
    mut body: Pin<&mut ResponseBody>,
    chunked: bool,
) -> io::Result<bool> {
    loop {
        let next = if out.is_empty() {
            poll_fn(|cx| body.as_mut().poll_frame(cx)).await
        } else {
            match poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
                Poll::Ready(next) => next,
                Poll::Pending => {
                    // Nothing more right now: what is gathered goes out.
                    w.write_all(out).await?;
                    out.clear();
                    continue;
                }
            }
        };
        let data = match next {
            None => break,
            Some(Err(_)) => return Ok(false),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue, // trailers and empty frames
            },
        };
        put(w, out, data, chunked).await?;
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    Ok(true)
}

/// Adds one data frame: copied behind what is gathered when small,
/// written on its own when large.
async fn put<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut Vec<u8>,
    data: Bytes,
    chunked: bool,
) -> io::Result<()> {
    if chunked {
        let _ = write!(out, "{:x}\r\n", data.len());
    }
    if out.len() + data.len() <= GATHER {
        out.extend_from_slice(&data);
    } else {
        w.write_all(out).await?;
        out.clear();
        w.write_all(&data).await?;
    }
    if chunked {
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// The status line and fields, with hyper's server rules for the length,
/// `connection` and `date` fields.
fn head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    body: &ResponseBody,
    head_request: bool,
    close: &mut bool,
) -> Plan {
    let status = parts.status;
    let bodiless_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let can_body = !head_request && !bodiless_status;
    let ended = body.is_end_stream();
    status_line(out, parts);
    let drop_length = ended && !head_request;
    let mut fields = fields(out, &parts.headers, drop_length);
    if let Some(passed) = body.passed() {
        let (length, date) = passed.write(out, drop_length);
        fields.length |= length;
        fields.date |= date;
    }
    *close |= fields.close;
    let plan = if fields.length {
        Plan::Sized
    } else if ended {
        if !bodiless_status && !head_request {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        Plan::None
    } else if let Some(n) = body.size_hint().exact() {
        if !bodiless_status {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Plan::Sized
    } else {
        if can_body {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        Plan::Chunked
    };
    if *close && !fields.close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !fields.date {
        date(out);
    }
    out.extend_from_slice(b"\r\n");
    if can_body && !ended {
        plan
    } else {
        Plan::None
    }
}

fn status_line(out: &mut Vec<u8>, parts: &http::response::Parts) {
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>();
    if parts.status == StatusCode::OK && reason.is_none() {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    match reason {
        Some(r) => out.extend_from_slice(r.as_bytes()),
        None => out.extend_from_slice(
            parts
                .status
                .canonical_reason()
                .unwrap_or("<none>")
                .as_bytes(),
        ),
    }
    out.extend_from_slice(b"\r\n");
}

/// What the fields said about framing and the connection.
struct Fields {
    length: bool,
    close: bool,
    date: bool,
}

/// Writes the fields; a Content-Length is dropped when the body is
/// already known to be empty (hyper writes `content-length: 0` then), and
/// framing fields the app sent never reach here (hop-by-hop).
fn fields(out: &mut Vec<u8>, headers: &HeaderMap, drop_length: bool) -> Fields {
    let mut f = Fields {
        length: false,
        close: false,
        date: false,
    };
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            if drop_length {
                continue;
            }
            f.length = true;
        } else if name == header::TRANSFER_ENCODING || name == header::TRAILER {
            continue;
        } else if name == header::CONNECTION {
            f.close |= value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if name == header::DATE {
            f.date = true;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    f
}

thread_local! {
    /// The Date field of the current second, formatted once per second.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

fn date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs || d.1.is_empty() {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(d.1.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Response;

    async fn written(
        resp: Response<ResponseBody>,
        head_request: bool,
        close: bool,
    ) -> (String, bool) {
        let mut wire = Vec::new();
        let mut out = Vec::new();
        let (parts, body) = resp.into_parts();
        let started = start(&mut out, &parts, &body, head_request, close);
        let body = std::pin::pin!(body);
        let again = send(&mut wire, &mut out, body, started).await.unwrap();
        let text = String::from_utf8(wire).unwrap();
        // The date changes; its presence is what counts.
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("date: ") {
                    "date: *"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        (text, again)
    }

    fn page(status: u16, body: &'static str) -> Response<ResponseBody> {
        let mut r = Response::new(ResponseBody::full(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r
    }

    #[tokio::test]
    async fn a_known_length_and_a_date() {
        let (t, again) = written(page(404, "gone"), false, false).await;
        assert_eq!(
            t,
            "HTTP/1.1 404 Not Found\ncontent-length: 4\ndate: *\n\ngone"
        );
        assert!(again);
    }

    #[tokio::test]
    async fn head_and_bodiless_statuses_carry_no_body() {
        let (t, _) = written(page(200, "abc"), true, false).await;
        assert_eq!(t, "HTTP/1.1 200 OK\ncontent-length: 3\ndate: *\n");
        let (t, _) = written(page(204, ""), false, false).await;
        assert_eq!(t, "HTTP/1.1 204 No Content\ndate: *\n");
        let (t, _) = written(page(200, ""), false, false).await;
        assert_eq!(t, "HTTP/1.1 200 OK\ncontent-length: 0\ndate: *\n");
    }

    #[tokio::test]
    async fn close_is_said_once() {
        let (t, again) = written(page(200, ""), false, true).await;
        assert_eq!(
            t,
            "HTTP/1.1 200 OK\ncontent-length: 0\nconnection: close\ndate: *\n"
        );
        assert!(!again);
        let mut r = page(400, "");
        r.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        r.headers_mut()
            .insert(header::DATE, http::HeaderValue::from_static("x"));
        let (t, again) = written(r, false, false).await;
        // The app's own Date is kept, and no second one added.
        assert_eq!(t.matches("date: ").count(), 1);
        assert_eq!(
            t,
            "HTTP/1.1 400 Bad Request\nconnection: close\ndate: *\ncontent-length: 0\n"
        );
        assert!(!again);
    }
}
