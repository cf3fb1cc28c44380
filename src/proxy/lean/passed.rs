//! The app's response fields passed on as bytes: on the lean path the
//! fields the client gets are the app's own header lines, copied from its
//! head as they came (name case and spacing included), less the lines
//! `fields.rs` drops. They travel with the body (`LeanBody::passed`)
//! instead of filling a HeaderMap.
//!
//! Why: building the map (a name lookup, a value check, a hash and an
//! insertion per field) and writing it out again was the largest part of
//! a small request's user-space CPU after step 6 (docs/benchmarks.md,
//! step 7). The dropped lines are kept as byte ranges found while the
//! head is parsed, so writing the rest is a few copies with no search
//! for line ends (step 8). The front copies these lines; what needs a map
//! (hyper's server, HSTS, the Engine.IO handshake) gets one from
//! `into_map`, with the values httparse would have given. Must not decide
//! which fields pass (`fields.rs` does) nor how the body is framed
//! (`head.rs`).

use std::ops::Range;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::fields::{Bits, Fields, Kind};
use super::head::HeadError;

/// The longest field name a HeaderName takes (http's limit, kept so both
/// ways refuse the same heads).
const MAX_NAME: usize = (1 << 16) - 1;
/// The most separate runs of dropped lines a head passed as bytes may
/// have; a head with more (rare: nginx drops one line, Connection) keeps
/// the map.
const MAX_CUTS: usize = 4;

/// A byte range of the head (heads are at most `head::MAX_HEAD` long).
type Span = (u32, u32);

/// Which of a head's bytes are field lines the client gets, found while it
/// is parsed; `with` adds the head's bytes once they are taken out of the
/// read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Lines {
    /// The field lines: from the first field's name to the empty line.
    fields: Span,
    /// Runs of dropped lines, in order, each whole lines.
    cuts: [Span; MAX_CUTS],
    n_cuts: u8,
    /// The one Content-Length line, if it passes.
    length: Option<Span>,
    date: bool,
}

/// The passed lines and the head they are in.
#[derive(Debug, Clone)]
pub struct Passed {
    /// The app's whole head, from its status line to its empty line.
    head: Bytes,
    lines: Lines,
}

impl Lines {
    /// What `fields` passes, as ranges of `head` (the bytes httparse read
    /// them from); None when the dropped lines are too scattered to keep
    /// here. httparse has already held names to `tchar` and values to
    /// what HeaderValue accepts (HTAB, visible ASCII, obs-text), and every
    /// line ends in CRLF (`head::crlf_only`): only the name length is left
    /// to check. The caller keeps heads with more than one Content-Length,
    /// or a Transfer-Encoding, on the map.
    pub fn of(fields: &Fields<'_, '_>, head: &[u8]) -> Result<Option<Lines>, HeadError> {
        let base = head.as_ptr() as usize;
        let blank = head.len().saturating_sub(2) as u32;
        let start = |i: usize| (fields.all[i].name.as_ptr() as usize - base) as u32;
        // A field's line runs to where the next one starts.
        let line = |i: usize| {
            let end = if i + 1 < fields.all.len() {
                start(i + 1)
            } else {
                blank
            };
            (start(i), end)
        };
        let first = if fields.all.is_empty() {
            blank
        } else {
            start(0)
        };
        let mut lines = Lines {
            fields: (first, blank),
            cuts: [(0, 0); MAX_CUTS],
            n_cuts: 0,
            length: None,
            date: false,
        };
        let dropped = fields.dropped(false);
        for i in Bits(dropped) {
            let (from, to) = line(i);
            let n = usize::from(lines.n_cuts);
            match n.checked_sub(1).map(|last| &mut lines.cuts[last]) {
                Some(last) if last.1 == from => last.1 = to,
                _ if n == MAX_CUTS => return Ok(None),
                _ => {
                    lines.cuts[n] = (from, to);
                    lines.n_cuts += 1;
                }
            }
        }
        lines.length = Bits(fields.set(Kind::ContentLength) & !dropped)
            .next()
            .map(line);
        lines.date = fields.set(Kind::Date) & !dropped != 0;
        // No name can be that long in a shorter head.
        if head.len() > MAX_NAME {
            let mut passed = Bits(((1u128 << fields.all.len()) - 1) & !dropped);
            if passed.any(|i| fields.all[i].name.len() > MAX_NAME) {
                return Err(HeadError::BadField);
            }
        }
        Ok(Some(lines))
    }

    /// These lines of `head` (the bytes `of` read them from).
    pub fn with(self, head: Bytes) -> Passed {
        Passed { head, lines: self }
    }
}

impl Passed {
    /// Appends the passed lines to `out`, without the Content-Length line
    /// when `drop_length`; says whether a Content-Length and a Date went
    /// out.
    pub fn write(&self, out: &mut Vec<u8>, drop_length: bool) -> (bool, bool) {
        for kept in self.kept(drop_length) {
            out.extend_from_slice(&self.head[kept]);
        }
        let length = self.lines.length.is_some() && !drop_length;
        (length, self.lines.date)
    }

    /// The passed fields as map entries, appended to `headers` in their
    /// order; each value as httparse reads it (without the spaces around
    /// it), sharing the head's memory.
    pub fn into_map(self, headers: &mut HeaderMap) {
        for kept in self.kept(false) {
            for line in self.head[kept].split_inclusive(|b| *b == b'\n') {
                let text = &line[..line.len() - 2];
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
    }

    /// The byte ranges of the passed lines, in order: the field lines less
    /// the cuts, and less the Content-Length line when `drop_length`.
    fn kept(&self, drop_length: bool) -> impl Iterator<Item = Range<usize>> {
        let lines = &self.lines;
        let mut cuts = [(0, 0); MAX_CUTS + 1];
        let mut n = 0;
        let mut length = lines.length.filter(|_| drop_length);
        for &cut in &lines.cuts[..usize::from(lines.n_cuts)] {
            if let Some(l) = length.filter(|l| l.0 < cut.0) {
                cuts[n] = l;
                n += 1;
                length = None;
            }
            cuts[n] = cut;
            n += 1;
        }
        if let Some(l) = length {
            cuts[n] = l;
            n += 1;
        }
        let (mut at, end) = lines.fields;
        let gaps = cuts.into_iter().take(n).chain([(end, end)]);
        gaps.filter_map(move |(from, to)| {
            let kept = at as usize..from as usize;
            at = to;
            (!kept.is_empty()).then_some(kept)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::MaybeUninit;

    fn lines(raw: &[u8]) -> Option<Lines> {
        let mut buf = [const { MaybeUninit::uninit() }; 16];
        let mut r = httparse::Response::new(&mut []);
        httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut r, raw, &mut buf)
            .unwrap();
        Lines::of(&Fields::read(r.headers), raw).unwrap()
    }

    fn passed(raw: &[u8]) -> Passed {
        lines(raw)
            .expect("few cuts")
            .with(Bytes::copy_from_slice(raw))
    }

    #[test]
    fn dropped_lines_next_to_each_other_are_one_cut_and_too_many_cuts_are_left_to_the_map() {
        let four = b"HTTP/1.1 200 OK\r\nA: 1\r\nTE: x\r\nKeep-Alive: x\r\nB: 2\r\nTrailer: x\r\n\
            C: 3\r\nUpgrade: x\r\nD: 4\r\nProxy-A: x\r\nE: 5\r\n\r\n";
        let mut out = Vec::new();
        passed(four).write(&mut out, false);
        assert_eq!(out, b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n".to_vec());
        let five = b"HTTP/1.1 200 OK\r\nA: 1\r\nTE: x\r\nB: 2\r\nTrailer: x\r\nC: 3\r\n\
            Upgrade: x\r\nD: 4\r\nProxy-A: x\r\nE: 5\r\nConnection: close\r\n\r\n";
        assert!(lines(five).is_none());
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
