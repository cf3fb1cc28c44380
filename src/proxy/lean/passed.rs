//! The app's response fields passed on as bytes: on the lean path the
//! fields the client gets are written once, as the front would write them
//! from a map (lower-case name, `: `, value, CRLF), and travel with the
//! body (`LeanBody::passed`) instead of filling a HeaderMap.
//!
//! Why: building the map (a name lookup, a value check, a hash and an
//! insertion per field) and writing it out again was the largest part of
//! a small request's user-space CPU after step 6 (docs/benchmarks.md,
//! step 7). The front writes these bytes as they are; what needs a map
//! (hyper's server, HSTS, the Engine.IO handshake) gets one from
//! `into_map`. Must not decide which fields pass (`fields.rs` does) nor
//! how the body is framed (`head.rs`).

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::fields::Fields;
use super::head::HeadError;

/// The longest field name a HeaderName takes (http's limit, kept so both
/// ways refuse the same heads).
const MAX_NAME: usize = (1 << 16) - 1;

/// The passed fields' lines, and what the front's framing needs of them.
#[derive(Debug, Clone)]
pub struct Passed {
    lines: Bytes,
    /// Where the one Content-Length line lies in `lines`.
    length: Option<(usize, usize)>,
    date: bool,
}

impl Passed {
    /// Writes the lines of what `fields` passes. httparse has already held
    /// names to `tchar` and values to what HeaderValue accepts (HTAB,
    /// visible ASCII, obs-text): only the name length is left to check.
    /// The caller keeps heads with more than one Content-Length, or a
    /// Transfer-Encoding, on the map.
    pub fn render(fields: &Fields<'_, '_>, room: usize) -> Result<Passed, HeadError> {
        let mut out = Vec::with_capacity(room);
        let mut length = None;
        let mut date = false;
        for f in fields.passed(false) {
            let name = f.name.as_bytes();
            if name.is_empty() || name.len() > MAX_NAME {
                return Err(HeadError::BadField);
            }
            let start = out.len();
            out.extend(name.iter().map(u8::to_ascii_lowercase));
            out.extend_from_slice(b": ");
            out.extend_from_slice(f.value);
            out.extend_from_slice(b"\r\n");
            if name.eq_ignore_ascii_case(b"content-length") {
                length = Some((start, out.len()));
            } else if name.eq_ignore_ascii_case(b"date") {
                date = true;
            }
        }
        Ok(Passed {
            lines: Bytes::from(out),
            length,
            date,
        })
    }

    /// Appends the lines to `out`, without the Content-Length line when
    /// `drop_length`; says whether a Content-Length and a Date went out.
    pub fn write(&self, out: &mut Vec<u8>, drop_length: bool) -> (bool, bool) {
        match self.length {
            Some((from, to)) if drop_length => {
                out.extend_from_slice(&self.lines[..from]);
                out.extend_from_slice(&self.lines[to..]);
                (false, self.date)
            }
            length => {
                out.extend_from_slice(&self.lines);
                (length.is_some(), self.date)
            }
        }
    }

    /// The fields as map entries, appended to `headers` in their order
    /// (values share the lines' memory).
    pub fn into_map(self, headers: &mut HeaderMap) {
        let lines = &self.lines;
        let mut at = 0;
        while at < lines.len() {
            let Some(end) = memchr::memchr(b'\n', &lines[at..]).map(|e| at + e) else {
                break;
            };
            let line = &lines[at..end - 1];
            if let Some(colon) = memchr::memchr(b':', line) {
                let name = HeaderName::from_bytes(&line[..colon]);
                let value = lines.slice(at + colon + 2..end - 1);
                if let (Ok(name), Ok(value)) = (name, HeaderValue::from_maybe_shared(value)) {
                    headers.append(name, value);
                }
            }
            at = end + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::MaybeUninit;

    fn passed(raw: &[u8]) -> Passed {
        let mut buf = [const { MaybeUninit::uninit() }; 16];
        let mut r = httparse::Response::new(&mut []);
        httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut r, raw, &mut buf)
            .unwrap();
        Passed::render(&Fields::read(r.headers), 256).unwrap()
    }

    #[test]
    fn lines_are_written_as_from_a_map_and_read_back_in_order() {
        let p = passed(
            b"HTTP/1.1 200 OK\r\nX-A:  1 \r\nConnection: keep-alive\r\nContent-Length: 3\r\n\
              Date: d\r\nx-a: 2\r\n\r\n",
        );
        let mut out = Vec::new();
        assert_eq!(p.write(&mut out, false), (true, true));
        assert_eq!(
            out,
            b"x-a: 1\r\ncontent-length: 3\r\ndate: d\r\nx-a: 2\r\n".to_vec()
        );
        out.clear();
        assert_eq!(p.write(&mut out, true), (false, true));
        assert_eq!(out, b"x-a: 1\r\ndate: d\r\nx-a: 2\r\n".to_vec());
        let mut map = HeaderMap::new();
        p.into_map(&mut map);
        let listed: Vec<_> = map
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap()))
            .collect();
        assert_eq!(listed, ["x-a=1", "x-a=2", "content-length=3", "date=d"]);
    }

    #[test]
    fn an_empty_value_and_no_fields_at_all() {
        let p = passed(b"HTTP/1.1 204 No Content\r\nX-Empty:\r\n\r\n");
        let mut map = HeaderMap::new();
        p.into_map(&mut map);
        assert_eq!(map.get("x-empty").map(|v| v.as_bytes()), Some(&b""[..]));
        let p = passed(b"HTTP/1.1 204 No Content\r\n\r\n");
        let mut out = Vec::new();
        assert_eq!(p.write(&mut out, false), (false, false));
        assert!(out.is_empty());
    }
}
