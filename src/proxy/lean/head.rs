//! The lean path's HTTP/1 heads: the request head written into one
//! buffer, the app's response head parsed once, and how its body is
//! framed (RFC 9112 section 6.3).
//!
//! Reads the app's head by the same rules as hyper's client on the other
//! path: no bare LF or CR (the rule `app_io` holds hyper's path to, checked
//! here on httparse's result), no obs-fold, no space before a colon, at
//! most 100 header fields in at most 400 KiB. Must not decide what a
//! failure means for the client (`upstream/`).

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::fields::{Fields, Kind};
use super::passed::Lines;
use http::{request, response, Method, StatusCode, Version};

use crate::proxy::app_io::{self, MalformedHead};

/// The largest response head read (hyper's client buffer limit).
pub const MAX_HEAD: usize = 8192 + 4096 * 100;
/// The most header fields in a response head (hyper's client default).
pub const MAX_HEADERS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error(transparent)]
    Malformed(#[from] MalformedHead),
    #[error("an unreadable response head ({0})")]
    Invalid(httparse::Error),
    #[error("a response head over {MAX_HEAD} bytes")]
    TooLarge,
    #[error("a header field hpgate cannot pass on")]
    BadField,
    #[error("a Content-Length that is not one number")]
    BadLength,
    #[error("Transfer-Encoding in an HTTP/1.0 response (its framing cannot be trusted)")]
    OldTransferEncoding,
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnaskedSwitch,
}

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Read until the app closes the connection.
    Close,
}

/// A response head, parsed.
pub struct Head {
    pub parts: response::Parts,
    pub framing: Framing,
    /// The app keeps the connection open after this response.
    pub keep_alive: bool,
    /// The fields the client gets, as lines of the head (`parts.headers`
    /// is then empty); None when they are in `parts.headers`.
    pub passed: Option<Lines>,
}

/// What the bytes read so far hold.
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// An informational (1xx) head this many bytes long: another follows.
    Interim(usize),
    /// The final head and its length.
    Final(Head, usize),
}

/// Appends the request head for the app: request line, the prepared
/// header fields in their order, what `more` writes (the forwarding
/// fields, when they are not in the map), and `content-length: 0` where a
/// bodiless request's method implies a body (POST, PUT, PATCH), as
/// hyper's client adds it.
pub fn write_request(parts: &request::Parts, out: &mut Vec<u8>, more: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    more(out);
    let implies_body = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    if implies_body && !parts.headers.contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses the response head at the front of `buf` (the answer to a HEAD
/// request when `head_request`).
pub fn parse(buf: &[u8], head_request: bool) -> Result<Parsed, HeadError> {
    // Left uninitialised: httparse fills what it uses (filling 100 empty
    // fields first cost more than parsing a short head).
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut []);
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut r,
        window,
        &mut fields,
    );
    let end = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        // No end within the limit: a head that ends later is too long.
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(refused(buf, HeadError::TooLarge))
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(_) if buf.len() > MAX_HEAD => return Err(refused(buf, HeadError::TooLarge)),
        Err(e) => return Err(refused(buf, HeadError::Invalid(e))),
    };
    let head = &buf[..end];
    crlf_only(head, r.headers)?;
    let code = r.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| HeadError::Invalid(httparse::Error::Status))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(HeadError::UnaskedSwitch);
    }
    if status.is_informational() {
        return Ok(Parsed::Interim(end));
    }
    let version = if r.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let fields = Fields::read(r.headers);
    let framing = framing(status, version, &fields, head_request)?;
    let keep_alive = framing != Framing::Close && keeps_alive(version, &fields);
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    // Heads the client must get edited (`upstream::clean_answer`: a
    // Content-Length beside Transfer-Encoding), with repeated lengths
    // (the front drops every one for an empty body), or with dropped
    // lines all over keep the map.
    let on_map =
        fields.has(Kind::TransferEncoding) || fields.set(Kind::ContentLength).count_ones() > 1;
    let passed = if on_map {
        None
    } else {
        Lines::of(&fields, head)?
    };
    if passed.is_none() {
        parts.headers = header_map(&fields, head)?;
    }
    Ok(Parsed::Final(
        Head {
            parts,
            framing,
            keep_alive,
            passed,
        },
        end,
    ))
}

/// Where the lean path ends the head at the front of `buf`, when it takes
/// it (for `crate::fuzzing`).
pub(crate) fn taken_end(buf: &[u8]) -> Option<usize> {
    match parse(buf, false) {
        Ok(Parsed::Final(_, n) | Parsed::Interim(n)) => Some(n),
        _ => None,
    }
}

/// What the client gets of the final head at the front of `buf` when the
/// lean path passes its lines as bytes (for `crate::fuzzing`): the head's
/// length, the lines written (less Content-Length when `drop_length`),
/// and the same fields as a map.
pub(crate) fn passed_lines(buf: &[u8], drop_length: bool) -> Option<(usize, Vec<u8>, HeaderMap)> {
    let Ok(Parsed::Final(head, n)) = parse(buf, false) else {
        return None;
    };
    let passed = head.passed?.with(Bytes::copy_from_slice(&buf[..n]));
    let mut lines = Vec::new();
    passed.write(&mut lines, drop_length);
    let mut map = HeaderMap::new();
    passed.into_map(&mut map);
    Some((n, lines, map))
}

/// How the lean path frames the final head at the front of `buf`, as
/// `(framing, keeps the connection)`, or why it refuses its framing; None
/// for a partial or interim head and for refusals of other kinds (for
/// `crate::fuzzing`).
pub(crate) fn framing_of(buf: &[u8], head_request: bool) -> Option<Result<(String, bool), String>> {
    match parse(buf, head_request) {
        Ok(Parsed::Final(head, _)) => {
            let framing = match head.framing {
                Framing::Empty => "empty".to_string(),
                Framing::Length(n) => format!("length {n}"),
                Framing::Chunked => "chunked".to_string(),
                Framing::Close => "close".to_string(),
            };
            Some(Ok((framing, head.keep_alive)))
        }
        Err(e @ (HeadError::BadLength | HeadError::OldTransferEncoding)) => {
            Some(Err(e.to_string()))
        }
        _ => None,
    }
}

/// httparse takes a bare LF for a line's end, where hyper's path
/// (`app_io`) refuses it. httparse has ended every line just before the
/// next begins (a field's name, or the empty line that ends the head) and
/// refused a bare CR: a CRLF in front of each of those, and in the empty
/// lines it skipped before the status line, is all that is left to check.
fn crlf_only(head: &[u8], fields: &[httparse::Header<'_>]) -> Result<(), MalformedHead> {
    // httparse also skips empty lines before the status line.
    let lead = head
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    if lead % 2 != 0 || head[..lead].chunks(2).any(|pair| pair != b"\r\n") {
        return Err(MalformedHead::BARE_LF);
    }
    let base = head.as_ptr() as usize;
    let crlf_before = |at: usize| at >= 2 && &head[at - 2..at] == b"\r\n";
    let starts = fields.iter().map(|f| f.name.as_ptr() as usize - base);
    let blank = head.len().saturating_sub(2);
    if crlf_before(head.len()) && starts.chain([blank]).all(crlf_before) {
        Ok(())
    } else {
        Err(MalformedHead::BARE_LF)
    }
}

/// A head httparse would not take, or that never ended: a bare CR or LF
/// on the way is named as hyper's path names it (rare: the slow scan is
/// only run here).
fn refused(buf: &[u8], otherwise: HeadError) -> HeadError {
    match app_io::head_end(buf) {
        Err(bare) => bare.into(),
        Ok(_) => otherwise,
    }
}

/// The fields the client gets, as a map whose values share one copy of
/// the head (not one allocation per field). Transfer-Encoding stays only
/// beside a Content-Length: `upstream::clean_answer` drops both and warns.
fn header_map(fields: &Fields<'_, '_>, head: &[u8]) -> Result<HeaderMap, HeadError> {
    let shared = Bytes::copy_from_slice(head);
    let both = fields.has(Kind::TransferEncoding) && fields.has(Kind::ContentLength);
    let mut headers = HeaderMap::with_capacity(fields.all.len());
    for f in fields.passed(both) {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| HeadError::BadField)?;
        // httparse's value lies inside `head`: the same place in `shared`.
        let at = f.value.as_ptr() as usize - head.as_ptr() as usize;
        let value = HeaderValue::from_maybe_shared(shared.slice(at..at + f.value.len()))
            .map_err(|_| HeadError::BadField)?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// RFC 9112 section 6.3: no body for HEAD, 204 and 304; Transfer-Encoding
/// over Content-Length (chunked last, else read to the close), but not in
/// HTTP/1.0 (section 6.1: such framing cannot be trusted); a
/// Content-Length must be one number (repeated equal values are one).
/// In that order, as hyper's client decides.
fn framing(
    status: StatusCode,
    version: Version,
    fields: &Fields<'_, '_>,
    head_request: bool,
) -> Result<Framing, HeadError> {
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Empty);
    }
    if fields.has(Kind::TransferEncoding) && version == Version::HTTP_10 {
        return Err(HeadError::OldTransferEncoding);
    }
    if fields.has(Kind::TransferEncoding) {
        let chunked = fields
            .values(Kind::TransferEncoding)
            .next_back()
            .is_some_and(ends_in_chunked);
        return Ok(if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    let mut length: Option<u64> = None;
    for part in fields
        .values(Kind::ContentLength)
        .flat_map(|v| v.split(|b| *b == b','))
    {
        let n = decimal(part.trim_ascii()).ok_or(HeadError::BadLength)?;
        if length.is_some_and(|l| l != n) {
            return Err(HeadError::BadLength);
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// Whether the last Transfer-Encoding line ends in `chunked`, read as
/// hyper's client reads it (so both app clients frame an answer alike):
/// the line's last comma-separated element, even an empty one, and
/// nothing on a line with bytes other than visible ASCII and tabs.
fn ends_in_chunked(line: &[u8]) -> bool {
    crate::proxy::charset::visible(line)
        && line
            .rsplit(|b| *b == b',')
            .next()
            .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// `1*DIGIT` that fits a u64.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// HTTP/1.1 keeps the connection unless it says `close`; HTTP/1.0 only
/// if it says `keep-alive` and not `close` (hyper's client: a close on
/// any line wins).
fn keeps_alive(version: Version, fields: &Fields<'_, '_>) -> bool {
    let says = fields.says;
    !says.close && (version != Version::HTTP_10 || says.keep_alive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(wire: &[u8]) -> Result<(Head, usize), HeadError> {
        match parse(wire, false)? {
            Parsed::Final(h, n) => Ok((h, n)),
            Parsed::Partial => panic!("partial: {:?}", String::from_utf8_lossy(wire)),
            Parsed::Interim(n) => panic!("interim {n}"),
        }
    }

    #[test]
    fn request_head_keeps_order_and_adds_length_for_post() {
        let mut req = http::Request::post("/a?b=1").body(()).unwrap();
        req.headers_mut()
            .append("x-z", HeaderValue::from_static("1"));
        req.headers_mut()
            .append("host", HeaderValue::from_static("h"));
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        write_request(&parts, &mut out, |_| {});
        assert_eq!(
            out,
            b"POST /a?b=1 HTTP/1.1\r\nx-z: 1\r\nhost: h\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let cases: [(&[u8], Framing, bool); 11] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n",
                Framing::Chunked,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                Framing::Close,
                false,
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\n", Framing::Empty, true),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                Framing::Length(1),
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nConnection: x, Close\r\nContent-Length: 1\r\n\r\n",
                Framing::Length(1),
                false,
            ),
            // What follows is read as hyper's client reads it.
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\n",
                Framing::Length(1),
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close, \xff\r\nContent-Length: 1\r\n\r\n",
                Framing::Length(1),
                true,
            ),
            (
                b"HTTP/1.0 204 No Content\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
                Framing::Empty,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n",
                Framing::Close,
                false,
            ),
        ];
        for (wire, framing, keep) in cases {
            let (h, n) = head(wire).unwrap();
            assert_eq!(n, wire.len());
            assert_eq!(h.framing, framing, "{:?}", String::from_utf8_lossy(wire));
            assert_eq!(h.keep_alive, keep, "{:?}", String::from_utf8_lossy(wire));
        }
        let (h, _) = match parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true).unwrap() {
            Parsed::Final(h, n) => (h, n),
            _ => panic!(),
        };
        assert_eq!(h.framing, Framing::Empty, "a HEAD answer has no body");
    }

    #[test]
    fn refuses_heads_hyper_would_refuse_or_misread() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: evil=2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
            b"HTTP/1.1 999999 OK\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\n",
        ] {
            assert!(head_err(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(head_err(&many));
    }

    fn head_err(wire: &[u8]) -> bool {
        parse(wire, false).is_err()
    }

    #[test]
    fn informational_heads_and_partial_heads() {
        let wire = b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
        let Ok(Parsed::Interim(n)) = parse(wire, false) else {
            panic!("not interim")
        };
        assert!(head(&wire[n..]).is_ok());
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nA:", false),
            Ok(Parsed::Partial)
        ));
        let big = vec![b'a'; MAX_HEAD + 1];
        assert!(matches!(parse(&big, false), Err(HeadError::TooLarge)));
    }

    mod properties {
        use super::*;
        use crate::proxy::upstream::clean_answer;
        use proptest::prelude::*;

        fn fields() -> impl Strategy<Value = Vec<&'static str>> {
            let one = proptest::sample::select(vec![
                "X-A: 1",
                "x-a: 2",
                "X-Secret: s",
                "Connection: keep-alive",
                "Connection: close, X-Secret",
                "connection: X-A ,x-b",
                "X-B: b",
                "Keep-Alive: timeout=5",
                "TE: trailers",
                "Trailer: X-T",
                "Upgrade: h2c",
                "Proxy-Authenticate: p",
                "Transfer-Encoding: chunked",
                "Content-Length: 3",
                "Date: x",
                // Spacing the app may use: the lines pass as they came,
                // the values read as httparse reads them.
                "X-C:\t spaced out \t",
                "X-D:",
                "X-E:tight",
                "content-length:3  ",
            ]);
            proptest::collection::vec(one, 0..8)
        }

        /// The client's fields the way hpgate got them before `fields.rs`:
        /// every field into the map, then the same clean-up.
        fn by_the_map(wire: &[u8]) -> Vec<(String, String)> {
            let mut buf = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Response::new(&mut buf);
            r.parse(wire).unwrap();
            let mut parts = http::Response::new(()).into_parts().0;
            for f in r.headers.iter() {
                parts.headers.append(
                    HeaderName::from_bytes(f.name.as_bytes()).unwrap(),
                    HeaderValue::from_bytes(f.value).unwrap(),
                );
            }
            clean_answer(&mut parts, 0, false);
            listed(parts)
        }

        /// The lean path's clean-up: nothing hop-by-hop is left to strip;
        /// fields passed as bytes are read back as hyper's server gets them.
        fn cleaned(h: Head, head: &[u8]) -> Vec<(String, String)> {
            let mut parts = h.parts;
            if let Some(lines) = h.passed {
                lines
                    .with(Bytes::copy_from_slice(head))
                    .into_map(&mut parts.headers);
            }
            clean_answer(&mut parts, 0, true);
            listed(parts)
        }

        fn listed(parts: response::Parts) -> Vec<(String, String)> {
            parts
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect()
        }

        /// Heads with CR and LF where they belong and where they do not.
        fn line_ends() -> impl Strategy<Value = Vec<u8>> {
            let piece = proptest::sample::select(vec![
                &b"HTTP/1.1 200 OK"[..],
                b"HTTP/1.1 103 Early",
                b"X-A: 1",
                b"Content-Length: 0",
                b"Connection: keep-alive",
                b"\r\n",
                b"\r\n",
                b"\r\n",
                b"\n",
                b"\r",
                b" ",
            ]);
            proptest::collection::vec(piece, 1..12).prop_map(|p| p.concat())
        }

        proptest! {
            /// The lean path takes a head only where hyper's path (the
            /// byte steps of `app_io`) ends it: no bare CR or LF gets
            /// through, and a refused bare one is named as hyper's path
            /// names it.
            #[test]
            fn heads_end_where_the_byte_steps_end_them(wire in line_ends()) {
                let steps = crate::proxy::app_io::head_end_by_steps(&wire);
                match parse(&wire, false) {
                    Ok(Parsed::Final(_, n) | Parsed::Interim(n)) => {
                        prop_assert_eq!(steps.ok(), Some(Some(n)));
                    }
                    Err(HeadError::Malformed(_)) => prop_assert!(steps.is_err()),
                    Err(_) | Ok(Parsed::Partial) => {}
                }
            }

            /// Dropping hop-by-hop fields while parsing leaves the client
            /// exactly the fields the map-and-strip way left.
            #[test]
            fn the_client_gets_the_fields_it_got_before(fields in fields()) {
                let wire = format!("HTTP/1.1 200 OK\r\n{}\r\n\r\n", fields.join("\r\n"));
                let wire = wire.replace("OK\r\n\r\n\r\n", "OK\r\n\r\n");
                let Ok(Parsed::Final(h, n)) = parse(wire.as_bytes(), false) else {
                    // Repeated unequal lengths and the like: refused either way.
                    return Ok(());
                };
                let lines = h.passed;
                prop_assert_eq!(cleaned(h, &wire.as_bytes()[..n]), by_the_map(wire.as_bytes()));
                if let Some(lines) = lines {
                    // What the front writes reads back as the same fields.
                    let passed = lines.with(Bytes::copy_from_slice(&wire.as_bytes()[..n]));
                    let mut out = Vec::new();
                    passed.write(&mut out, false);
                    out.extend_from_slice(b"\r\n");
                    let mut buf = [httparse::EMPTY_HEADER; 16];
                    let Ok(httparse::Status::Complete((_, got))) = httparse::parse_headers(&out, &mut buf) else {
                        return Err(TestCaseError::fail("the written lines do not parse"));
                    };
                    let mut got: Vec<_> = got
                        .iter()
                        .map(|f| (f.name.to_ascii_lowercase(), String::from_utf8_lossy(f.value).into_owned()))
                        .collect();
                    let mut want = by_the_map(wire.as_bytes());
                    got.sort();
                    want.sort();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
