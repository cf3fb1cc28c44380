//! The app's response fields passed on as bytes: on the lean path the
//! fields the client gets are the app's own header lines, copied from its
//! head as they came (name case and spacing included), less the lines
//! `fields.rs` drops. They travel with the body (`LeanBody::passed`)
//! instead of filling a HeaderMap.
//!
//! Why: building the map (a name lookup, a value check, a hash and an
//! insertion per field) and writing it out again was the largest part of
//! a small request's user-space CPU after step 6 (docs/benchmarks.md,
//! step 7). The front copies these lines; what needs a map (hyper's
//! server, HSTS, the Engine.IO handshake) gets one from `into_map`, with
//! the values httparse would have given. Must not decide which fields pass
//! (`fields.rs` does) nor how the body is framed (`head.rs`).

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::fields::{Fields, Kind};
use super::head::{HeadError, MAX_HEADERS};

/// The longest field name a HeaderName takes (http's limit, kept so both
/// ways refuse the same heads).
const MAX_NAME: usize = (1 << 16) - 1;

/// Which of a head's field lines pass, found while it is parsed; `with`
/// adds the head's bytes once they are taken out of the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Lines {
    /// Bit i: the i-th field line is dropped (at most `MAX_HEADERS`).
    dropped: u128,
    /// The line of the one Content-Length field, if any.
    length: Option<u8>,
    date: bool,
}

/// The passed lines and the head they are in.
#[derive(Debug, Clone)]
pub struct Passed {
    /// The app's whole head, from its status line to its empty line.
    head: Bytes,
    lines: Lines,
}

const _: () = assert!(MAX_HEADERS <= 128);

impl Lines {
    /// What `fields` passes. httparse has already held names to `tchar`
    /// and values to what HeaderValue accepts (HTAB, visible ASCII,
    /// obs-text), and every field is one CRLF line (no obs-fold, no bare
    /// CR or LF: `app_io::head_end`): only the name length is left to
    /// check. The caller keeps heads with more than one Content-Length,
    /// or a Transfer-Encoding, on the map.
    pub fn of(fields: &Fields<'_, '_>) -> Result<Lines, HeadError> {
        let mut lines = Lines {
            dropped: (1u128 << fields.all.len()) - 1,
            length: None,
            date: false,
        };
        for (i, kind, f) in fields.passing(false) {
            if f.name.len() > MAX_NAME {
                return Err(HeadError::BadField);
            }
            lines.dropped &= !(1u128 << i);
            if kind == Kind::ContentLength {
                lines.length = Some(i as u8);
            } else if f.name.eq_ignore_ascii_case("date") {
                lines.date = true;
            }
        }
        Ok(lines)
    }

    /// These lines of `head` (the bytes `parse` read them from).
    pub fn with(self, head: Bytes) -> Passed {
        Passed { head, lines: self }
    }
}

impl Passed {
    /// Appends the passed lines to `out`, without the Content-Length line
    /// when `drop_length`; says whether a Content-Length and a Date went
    /// out. Runs of passed lines are copied whole.
    pub fn write(&self, out: &mut Vec<u8>, drop_length: bool) -> (bool, bool) {
        let skipped = self.skipped(drop_length);
        let mut run = None;
        for (i, line) in self.field_lines() {
            let keep = skipped & (1u128 << i) == 0;
            match (keep, run) {
                (true, None) => run = Some(line.start),
                (false, Some(from)) => {
                    out.extend_from_slice(&self.head[from..line.start]);
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(from) = run {
            out.extend_from_slice(&self.head[from..self.head.len() - 2]);
        }
        let length = self.lines.length.is_some() && !drop_length;
        (length, self.lines.date)
    }

    /// The passed fields as map entries, appended to `headers` in their
    /// order; each value as httparse reads it (without the spaces around
    /// it), sharing the head's memory.
    pub fn into_map(self, headers: &mut HeaderMap) {
        let skipped = self.skipped(false);
        for (i, line) in self.field_lines() {
            if skipped & (1u128 << i) != 0 {
                continue;
            }
            let text = &self.head[line.start..line.end - 2];
            let Some(colon) = memchr::memchr(b':', text) else {
                continue;
            };
            let name = HeaderName::from_bytes(&text[..colon]);
            let value = self.head.slice_ref(text[colon + 1..].trim_ascii());
            if let (Ok(name), Ok(value)) = (name, HeaderValue::from_maybe_shared(value)) {
                headers.append(name, value);
            }
        }
    }

    fn skipped(&self, drop_length: bool) -> u128 {
        match self.lines.length {
            Some(i) if drop_length => self.lines.dropped | (1u128 << i),
            _ => self.lines.dropped,
        }
    }

    /// Each field line's number and place in `head` (its CRLF included).
    fn field_lines(&self) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> + '_ {
        let head = &self.head[..];
        // The first field follows the status line.
        let mut at = memchr::memchr(b'\n', head).map_or(head.len(), |e| e + 1);
        let end = head.len().saturating_sub(2);
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let eol = memchr::memchr(b'\n', &head[at..]).map_or(end, |e| at + e + 1);
            let line = at..eol;
            at = eol;
            Some(line)
        })
        .enumerate()
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
        Lines::of(&Fields::read(r.headers))
            .unwrap()
            .with(Bytes::copy_from_slice(raw))
    }

    #[test]
    fn lines_are_written_as_from_a_map_and_read_back_in_order() {
        let p = passed(
            b"HTTP/1.1 200 OK\r\nX-A:  1 \r\nConnection: keep-alive\r\nContent-Length: 3\r\n\
              Date: d\r\nx-a: 2\r\n\r\n",
        );
        let mut out = Vec::new();
        assert_eq!(p.write(&mut out, false), (true, true));
        // The app's own lines, as they came.
        assert_eq!(
            out,
            b"X-A:  1 \r\nContent-Length: 3\r\nDate: d\r\nx-a: 2\r\n".to_vec()
        );
        out.clear();
        assert_eq!(p.write(&mut out, true), (false, true));
        assert_eq!(out, b"X-A:  1 \r\nDate: d\r\nx-a: 2\r\n".to_vec());
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
