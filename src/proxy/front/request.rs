//! The front's request heads: parsed once with httparse, and taken only
//! when they are the common case the front serves itself.
//!
//! Owns the choice of which requests the front serves: GET and HEAD over
//! HTTP/1.1 with an origin-form target, no body framing (no
//! Content-Length, no Transfer-Encoding), no Upgrade, no Expect, and a
//! Connection header that says only `keep-alive` or `close` (read here,
//! and then dropped: it is hop-by-hop). Anything else
//! goes to hyper with the connection (`Parsed::Other`), which then answers
//! it as before: refusals, 400s, 414/431 and bodies stay where they were.
//! Must not check limits or the Host rules: `service.rs` does, for both
//! servers, on the `Parts` built here.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{request, Method, Request, Uri, Version};

/// Header fields the front parses; a head with more goes to hyper, which
/// applies `maxRequestHeaders` (431).
const MAX_FIELDS: usize = 64;

/// What the front makes of the bytes at the front of its buffer.
// `Lean` is the common case: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// A head the front serves, now in `Scratch::parts`; and whether the
    /// client asked to close after it.
    Lean(bool),
    /// Anything else: hyper takes the connection from here.
    Other,
}

/// Room a connection keeps for its heads: where each field lies, and the
/// request being served. Kept between requests, filled in place: a head
/// costs no allocation for its map, and the request (over 200 bytes) is
/// lent to each phase rather than copied out of the parser. Between
/// requests it still holds the last one, whose target and values share
/// that head's bytes: the read buffer behind them is freed or reused once
/// the next head replaces them.
pub struct Scratch {
    spans: Vec<Span>,
    /// The request `parse` last took (its map emptied before each fill).
    pub parts: request::Parts,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            spans: Vec::new(),
            parts: Request::new(()).into_parts().0,
        }
    }
}

/// The most header fields a kept map may have room for; a larger one (a
/// request with many fields) is freed rather than kept for the next.
const KEEP_FIELDS: usize = 64;

/// Parses the head at the front of `buf` into `scratch.parts`; a served
/// head is taken out of `buf` (its header values share that memory,
/// nothing is copied).
pub fn parse(buf: &mut BytesMut, scratch: &mut Scratch) -> Parsed {
    // Left uninitialised: httparse fills what it uses.
    let mut fields = [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Parsed::Other,
    };
    let target = req.path.unwrap_or("");
    if req.version != Some(1) || !target.starts_with('/') {
        return Parsed::Other;
    }
    let Some(close) = plain_fields(req.headers) else {
        return Parsed::Other;
    };
    // Where each piece lies in the head, before the head leaves `buf`.
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let target_at = at(target.as_bytes());
    let spans = &mut scratch.spans;
    spans.clear();
    // Connection has said all it can (keep-alive or close) and is
    // hop-by-hop: the app would not get it anyway.
    for f in req.headers.iter() {
        if !f.name.eq_ignore_ascii_case("connection") {
            spans.push(Span {
                name: at(f.name.as_bytes()),
                value: at(f.value),
            });
        }
    }
    let head = buf.split_to(len).freeze();
    match build(method, &head, target_at, &scratch.spans, &mut scratch.parts) {
        Some(()) => Parsed::Lean(close),
        // Not expected after httparse; hyper says what is wrong with it.
        None => {
            let mut back = BytesMut::from(&head[..]);
            back.extend_from_slice(buf);
            *buf = back;
            Parsed::Other
        }
    }
}

/// Where a field's name and value lie in the head (offset, length).
#[derive(Clone, Copy)]
struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

/// Fills `parts` with the request; nothing of the one before is left.
fn build(
    method: Method,
    head: &Bytes,
    (at, len): (usize, usize),
    spans: &[Span],
    parts: &mut request::Parts,
) -> Option<()> {
    parts.uri = Uri::from_maybe_shared(head.slice(at..at + len)).ok()?;
    parts.method = method;
    parts.version = Version::HTTP_11;
    parts.extensions.clear();
    let headers = &mut parts.headers;
    if headers.capacity() > KEEP_FIELDS {
        *headers = HeaderMap::new();
    }
    headers.clear();
    headers.reserve(spans.len());
    for Span { name, value } in spans {
        let name = HeaderName::from_bytes(&head[name.0..name.0 + name.1]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(value.0..value.0 + value.1)).ok()?;
        headers.append(name, value);
    }
    Some(())
}

/// None when a field makes the request one for hyper; else whether
/// Connection asked for a close.
fn plain_fields(fields: &[httparse::Header<'_>]) -> Option<bool> {
    let mut close = false;
    for f in fields {
        let name = f.name.as_bytes();
        let framing = name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect");
        if framing {
            return None;
        }
        if name.eq_ignore_ascii_case(b"connection") {
            for token in std::str::from_utf8(f.value).ok()?.split(',') {
                match token.trim() {
                    t if t.eq_ignore_ascii_case("close") => close = true,
                    t if t.eq_ignore_ascii_case("keep-alive") => {}
                    // Names a header to drop, or is empty: hyper's path.
                    _ => return None,
                }
            }
        }
    }
    Some(close)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &[u8]) -> (Parsed, BytesMut) {
        parsed_into(raw, &mut Scratch::default())
    }

    fn parsed_into(raw: &[u8], scratch: &mut Scratch) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(raw);
        (parse(&mut buf, scratch), buf)
    }

    #[test]
    fn a_plain_get_is_served_and_leaves_what_follows() {
        let mut scratch = Scratch::default();
        let (p, rest) = parsed_into(
            b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nConnection: keep-alive\r\nx-a: 2\r\n\r\nGET /next",
            &mut scratch,
        );
        let Parsed::Lean(close) = p else {
            panic!("not lean")
        };
        let parts = &scratch.parts;
        assert!(!close);
        assert!(!parts.headers.contains_key("connection"), "hop-by-hop");
        assert_eq!(parts.uri, "/a?b=1");
        assert_eq!(parts.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(parts.headers["host"], "x");
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn a_kept_request_holds_nothing_of_the_request_before() {
        let mut scratch = Scratch::default();
        let first = b"HEAD /a?s=1 HTTP/1.1\r\nHost: x\r\nX-Secret: 1\r\n\r\n";
        assert!(matches!(
            parsed_into(first, &mut scratch).0,
            Parsed::Lean(_)
        ));
        scratch.parts.extensions.insert(7u8);
        let second = b"GET / HTTP/1.1\r\nHost: y\r\n\r\n";
        assert!(matches!(
            parsed_into(second, &mut scratch).0,
            Parsed::Lean(_)
        ));
        let parts = &scratch.parts;
        assert_eq!(parts.headers.len(), 1);
        assert_eq!(parts.headers["host"], "y");
        assert_eq!(
            (&parts.method, parts.uri.to_string()),
            (&Method::GET, "/".into())
        );
        assert!(parts.extensions.get::<u8>().is_none());
        // A map grown past what is kept is not kept.
        let many: String = (0..60).map(|i| format!("X-{i}: 1\r\n")).collect();
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        assert!(matches!(
            parsed_into(big.as_bytes(), &mut scratch).0,
            Parsed::Lean(_)
        ));
        assert!(matches!(
            parsed_into(second, &mut scratch).0,
            Parsed::Lean(_)
        ));
        assert!(scratch.parts.headers.capacity() <= KEEP_FIELDS);
    }

    #[test]
    fn connection_close_is_noted() {
        let (p, _) = parsed(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, close\r\n\r\n");
        assert!(matches!(p, Parsed::Lean(true)));
    }

    #[test]
    fn everything_else_goes_to_hyper_untouched() {
        let others: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: x-secret\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: \r\n\r\n",
            b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        ];
        for raw in others {
            let (p, rest) = parsed(raw);
            assert!(
                matches!(p, Parsed::Other),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(&rest[..], *raw, "bytes kept for hyper");
        }
        let many: String = (0..70).map(|i| format!("X-{i}: 1\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        assert!(matches!(parsed(raw.as_bytes()).0, Parsed::Other));
    }

    #[test]
    fn a_cut_head_is_partial() {
        assert!(matches!(
            parsed(b"GET / HTTP/1.1\r\nHost: x\r\n").0,
            Parsed::Partial
        ));
        assert!(matches!(parsed(b"GE").0, Parsed::Partial));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Heads built from pieces the front must tell apart, and bytes
        /// with no shape at all.
        fn heads() -> impl Strategy<Value = Vec<u8>> {
            let line = prop::sample::select(vec![
                b"GET / HTTP/1.1\r\n" as &[u8],
                b"HEAD /a?b HTTP/1.1\r\n",
                b"GET http://x/ HTTP/1.1\r\n",
                b"POST / HTTP/1.1\r\n",
                b"GET / HTTP/1.0\r\n",
                b"GET /\x7f HTTP/1.1\r\n",
                b"GET / HTTP/1.1\n",
            ]);
            let field = prop::sample::select(vec![
                b"Host: x\r\n" as &[u8],
                b"Host: a\r\nHost: b\r\n",
                b"Content-Length: 0\r\n",
                b"Transfer-Encoding: chunked\r\n",
                b"Connection: close\r\n",
                b"Connection: x-secret\r\n",
                b"Upgrade: websocket\r\n",
                b"X-A: \xff\r\n",
                b"Bad Name: 1\r\n",
                b" folded\r\n",
                b"X-B: 1\n",
            ]);
            let built = (
                line,
                prop::collection::vec(field, 0..6),
                any::<bool>(),
                any::<Vec<u8>>(),
            )
                .prop_map(|(line, fields, end, tail)| {
                    let mut raw = line.to_vec();
                    for f in fields {
                        raw.extend_from_slice(f);
                    }
                    if end {
                        raw.extend_from_slice(b"\r\n");
                    }
                    raw.extend_from_slice(&tail);
                    raw
                });
            prop_oneof![built, any::<Vec<u8>>()]
        }

        proptest! {
            /// Whatever the bytes: no panic; a head the front does not
            /// take leaves every byte for hyper; a head it takes is a GET
            /// or HEAD with no framing or upgrade field, and exactly that
            /// head leaves the buffer.
            #[test]
            fn a_head_is_taken_whole_or_left_untouched(raw in heads()) {
                let mut buf = BytesMut::from(&raw[..]);
                let mut scratch = Scratch::default();
                match parse(&mut buf, &mut scratch) {
                    Parsed::Partial | Parsed::Other => prop_assert_eq!(&buf[..], &raw[..]),
                    Parsed::Lean(_) => {
                        let parts = &scratch.parts;
                        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
                        let mut req = httparse::Request::new(&mut fields);
                        let Ok(httparse::Status::Complete(len)) = req.parse(&raw) else {
                            return Err(TestCaseError::fail("taken but not a whole head"));
                        };
                        prop_assert_eq!(&buf[..], &raw[len..]);
                        prop_assert!(parts.method == Method::GET || parts.method == Method::HEAD);
                        // Every field but Connection (read, and hop-by-hop).
                        let kept = req
                            .headers
                            .iter()
                            .filter(|f| !f.name.eq_ignore_ascii_case("connection"))
                            .count();
                        prop_assert_eq!(parts.headers.len(), kept);
                        prop_assert!(!parts.headers.contains_key("connection"));
                        for name in ["content-length", "transfer-encoding", "upgrade", "expect"] {
                            prop_assert!(!parts.headers.contains_key(name));
                        }
                    }
                }
            }
        }
    }
}
