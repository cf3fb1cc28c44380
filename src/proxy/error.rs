//! Every way a proxied request can fail, and its one HTTP rendering.
//!
//! Owns status codes and the failure page (HTML for browsers, plain text
//! otherwise). The page names the cause and the fix; the app's output tail
//! is shown only when `detailedErrors` is on. Nothing else in the proxy
//! builds an error response.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use super::body::ResponseBody;
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
        }
    }

    /// Client errors close the connection: after a malformed request the
    /// stream position cannot be trusted (request smuggling). So does a
    /// refused transfer coding: its body was not read.
    pub fn closes_connection(&self) -> bool {
        self.status().is_client_error() || self.status() == StatusCode::NOT_IMPLEMENTED
    }

    /// The plain-text page as raw HTTP/1.1 bytes with `Connection: close`,
    /// for the smuggling guard, which answers below hyper.
    pub fn to_wire(&self) -> Vec<u8> {
        let status = self.status();
        let body = self.text_body(String::new());
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
            body.len()
        )
        .into_bytes();
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
            let title = self.title();
            let mut s = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><p>{m}</p>",
                t = escape(title),
                m = escape(&message)
            );
            if !tail.is_empty() {
                s.push_str("<h2>Last output of the app</h2><pre>");
                s.push_str(&escape(&tail));
                s.push_str("</pre>");
            }
            s.push_str("<hr><p>hpgate</p></body></html>\n");
            s
        } else {
            self.text_body(tail)
        };
        let ctype = if html {
            "text/html; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        };
        page_response(status, ctype, Bytes::from(body), close)
    }
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
