//! Every response hpgate makes itself: each refusal and failure is a
//! `ProxyError`, and this is its one rendering.
//!
//! Owns status codes, whose fault each one is (`Source`: the client, the
//! app or hpgate itself, which decides the log level), and the page (HTML
//! for browsers, plain text otherwise, raw bytes for the guard and the
//! accept loop, which answer below hyper). The page names the cause and
//! the fix; the app's output tail is shown only when `detailedErrors` is
//! on. Nothing else in the proxy builds an error response.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use super::body::ResponseBody;
use super::conn_tag::ConnTag;
use crate::config::format_span;
use crate::supervisor::Unavailable;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    Unavailable(UnavailableDisplay),
    #[error("could not connect to the app process (pid {pid}) on 127.0.0.1:{port}: {reason}")]
    Connect { pid: u32, port: u16, reason: String },
    #[error("the app process (pid {pid}) exited while handling the request")]
    ProcessExited { pid: u32 },
    #[error(
        "the app process (pid {pid}) closed the connection without a complete answer: {reason}"
    )]
    Backend { pid: u32, reason: String },
    #[error("the app process (pid {pid}) sent a malformed response: {reason}")]
    BadResponse { pid: u32, reason: String },
    #[error("the client sent nothing of its request body for {} (clientBodyTimeout); the request was abandoned", secs_text(*.secs))]
    ClientTimeout { secs: u64 },
    #[error("the app sent and received nothing for {} (requestTimeout is {}); if it needs longer, raise requestTimeout in web.config's <httpPlatform>", secs_text(*.secs), format_span(*.secs))]
    Timeout { secs: u64 },
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("request header fields too large: {0}")]
    HeadersTooLarge(String),
    #[error("request line too long: {0}")]
    UriTooLong(String),
    #[error("not implemented: transfer coding \"{0}\" (hpgate accepts only chunked)")]
    CodingNotImplemented(String),
    #[error("not implemented: method {0} (hpgate is a gateway to one app, not a forward proxy)")]
    MethodNotImplemented(&'static str),
    /// A WebSocket handshake hpgate refuses before asking the app.
    #[error("{reason}")]
    Handshake {
        status: StatusCode,
        reason: &'static str,
    },
    #[error("too many WebSocket connections (maxWebSockets); try again shortly")]
    TooManyWebSockets,
    #[error("hpgate is at maxConnections ({0}); try again shortly.")]
    TooManyConnections(u64),
    /// `httpsRedirect`: a plain listener sends the client to https.
    #[error("this site is served over HTTPS: {0}")]
    HttpsRedirect(String),
}

/// Whose fault a refusal or failure is: decides the log level and how the
/// page speaks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A malformed, oversized or stalled request: logged at info.
    Client,
    /// The app failed to answer: logged at error, the app's output may help.
    App,
    /// hpgate's own state or limits (offline, shutting down, at a limit).
    Hpgate,
}

fn secs_text(s: u64) -> String {
    format!("{s} s")
}

/// Wraps [`Unavailable`] for display.
#[derive(Debug)]
pub struct UnavailableDisplay(pub Unavailable);

impl std::fmt::Display for UnavailableDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Unavailable::Failed(failure) => write!(f, "{}", failure.cause),
            Unavailable::Offline(_) => write!(f, "the site is offline (app_offline.htm)"),
            Unavailable::ShuttingDown => write!(f, "hpgate is shutting down"),
        }
    }
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Unavailable(UnavailableDisplay(Unavailable::Failed(_))) => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. }
            | ProxyError::ProcessExited { .. }
            | ProxyError::Backend { .. }
            | ProxyError::BadResponse { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ClientTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ProxyError::CodingNotImplemented(_) | ProxyError::MethodNotImplemented(_) => {
                StatusCode::NOT_IMPLEMENTED
            }
            ProxyError::Handshake { status, .. } => *status,
            ProxyError::TooManyWebSockets | ProxyError::TooManyConnections(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::HttpsRedirect(_) => StatusCode::PERMANENT_REDIRECT,
        }
    }

    pub fn source(&self) -> Source {
        match self {
            ProxyError::Unavailable(UnavailableDisplay(Unavailable::Failed(_)))
            | ProxyError::Connect { .. }
            | ProxyError::ProcessExited { .. }
            | ProxyError::Backend { .. }
            | ProxyError::BadResponse { .. }
            | ProxyError::Timeout { .. } => Source::App,
            ProxyError::Unavailable(_)
            | ProxyError::TooManyWebSockets
            | ProxyError::TooManyConnections(_) => Source::Hpgate,
            ProxyError::ClientTimeout { .. }
            | ProxyError::BadRequest(_)
            | ProxyError::HeadersTooLarge(_)
            | ProxyError::UriTooLong(_)
            | ProxyError::CodingNotImplemented(_)
            | ProxyError::MethodNotImplemented(_)
            | ProxyError::Handshake { .. }
            | ProxyError::HttpsRedirect(_) => Source::Client,
        }
    }

    /// A short stable name for logs and, later, metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Unavailable(UnavailableDisplay(u)) => match u {
                Unavailable::Failed(_) => "app_failed",
                Unavailable::Offline(_) => "offline",
                Unavailable::ShuttingDown => "shutting_down",
            },
            ProxyError::Connect { .. } => "connect",
            ProxyError::ProcessExited { .. } => "process_exited",
            ProxyError::Backend { .. } => "incomplete_answer",
            ProxyError::BadResponse { .. } => "bad_response",
            ProxyError::ClientTimeout { .. } => "client_timeout",
            ProxyError::Timeout { .. } => "timeout",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::HeadersTooLarge(_) => "headers_too_large",
            ProxyError::UriTooLong(_) => "uri_too_long",
            ProxyError::CodingNotImplemented(_) => "coding_not_implemented",
            ProxyError::MethodNotImplemented(_) => "method_not_implemented",
            ProxyError::Handshake { .. } => "websocket_handshake",
            ProxyError::TooManyWebSockets => "max_websockets",
            ProxyError::TooManyConnections(_) => "max_connections",
            ProxyError::HttpsRedirect(_) => "https_redirect",
        }
    }

    /// The app process concerned, if any.
    pub fn pid(&self) -> Option<u32> {
        match self {
            ProxyError::Connect { pid, .. }
            | ProxyError::ProcessExited { pid }
            | ProxyError::Backend { pid, .. }
            | ProxyError::BadResponse { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// One log line, at the level its source calls for, with the cause as
    /// structured fields.
    pub fn log(&self, tag: ConnTag, method: &http::Method, path: &http::uri::PathAndQuery) {
        let (kind, source, pid) = (self.kind(), self.source(), self.pid());
        let ConnTag { id: conn, peer } = tag;
        match source {
            Source::App => {
                tracing::error!(conn, %peer, %method, %path, kind, ?source, ?pid, "{self}")
            }
            Source::Hpgate if self.status() == StatusCode::SERVICE_UNAVAILABLE => {
                tracing::warn!(conn, %peer, %method, %path, kind, ?source, "{self}")
            }
            _ => tracing::info!(conn, %peer, %method, %path, kind, ?source, ?pid, "{self}"),
        }
    }

    /// Extra headers a refusal carries: when to retry, which version to use.
    fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            ProxyError::TooManyWebSockets | ProxyError::TooManyConnections(_) => {
                &[("retry-after", "1")]
            }
            ProxyError::Handshake { status, .. } if *status == StatusCode::UPGRADE_REQUIRED => {
                &[("sec-websocket-version", "13")]
            }
            _ => &[],
        }
    }

    /// Client errors close the connection: after a malformed request the
    /// stream position cannot be trusted (request smuggling). So does a
    /// refused transfer coding: its body was not read.
    pub fn closes_connection(&self) -> bool {
        let status = self.status();
        (status.is_client_error() || status == StatusCode::NOT_IMPLEMENTED)
            && !matches!(self, ProxyError::HttpsRedirect(_))
    }

    /// The plain-text page as raw HTTP/1.1 bytes with `Connection: close`,
    /// for the smuggling guard, which answers below hyper.
    pub fn to_wire(&self) -> Vec<u8> {
        let status = self.status();
        let body = self.text_body(String::new());
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
            body.len()
        )
        .into_bytes();
        for (name, value) in self.extra_headers() {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
        out
    }

    fn title(&self) -> &'static str {
        let status = self.status();
        match status {
            StatusCode::BAD_GATEWAY => "502 Bad Gateway: the app could not answer",
            StatusCode::SERVICE_UNAVAILABLE => "503 Service Unavailable",
            StatusCode::GATEWAY_TIMEOUT => "504 Gateway Timeout: the app took too long",
            _ => status.canonical_reason().unwrap_or("error"),
        }
    }

    fn text_body(&self, tail: String) -> String {
        let mut s = format!("{}\n{self}\n", self.title());
        if !tail.is_empty() {
            s.push_str("\nLast output of the app:\n");
            s.push_str(&tail);
            s.push('\n');
        }
        s
    }

    /// Renders the error page. `html` when the client accepts it.
    pub fn into_response(self, html: bool, detailed: bool) -> Response<ResponseBody> {
        let status = self.status();
        let close = self.closes_connection();
        if let ProxyError::Unavailable(UnavailableDisplay(Unavailable::Offline(page))) = self {
            return page_response(status, "text/html; charset=utf-8", page, false);
        }
        let message = self.to_string();
        let tail = match &self {
            ProxyError::Unavailable(UnavailableDisplay(Unavailable::Failed(f))) if detailed => {
                f.output_tail.clone()
            }
            _ => String::new(),
        };
        let body = if html {
            html_body(self.title(), &message, &tail)
        } else {
            self.text_body(tail)
        };
        let ctype = if html {
            "text/html; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        };
        let mut resp = page_response(status, ctype, Bytes::from(body), close);
        for (name, value) in self.extra_headers() {
            resp.headers_mut()
                .insert(*name, HeaderValue::from_static(value));
        }
        if let ProxyError::HttpsRedirect(to) = &self {
            if let Ok(v) = HeaderValue::from_str(to) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
        }
        resp
    }
}

fn html_body(title: &str, message: &str, tail: &str) -> String {
    let mut s = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><p>{m}</p>",
        t = escape(title),
        m = escape(message)
    );
    if !tail.is_empty() {
        s.push_str("<h2>Last output of the app</h2><pre>");
        s.push_str(&escape(tail));
        s.push_str("</pre>");
    }
    s.push_str("<hr><p>hpgate</p></body></html>\n");
    s
}

fn page_response(
    status: StatusCode,
    ctype: &'static str,
    body: Bytes,
    close: bool,
) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(
            ProxyError::Timeout { secs: 5 }.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert!(ProxyError::Timeout { secs: 5 }
            .to_string()
            .contains("00:00:05"));
        assert_eq!(
            ProxyError::BadRequest("x").status(),
            StatusCode::BAD_REQUEST
        );
        assert!(ProxyError::BadRequest("x").closes_connection());
        assert!(!ProxyError::ProcessExited { pid: 1 }.closes_connection());
    }

    #[test]
    fn escapes_html() {
        assert_eq!(escape("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }
}
