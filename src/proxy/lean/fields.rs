//! The app's response header fields, read in one pass over httparse's
//! list: what frames the body, whether the connection stays open, and
//! which fields are hop-by-hop and never reach the client.
//!
//! Why here and not on a HeaderMap: looking each framing field up, and
//! then rebuilding the map without the hop-by-hop ones
//! (`headers::strip_hop_by_hop`), cost as much as building it
//! (docs/benchmarks.md, issue 19). Each field is classified once, by its
//! name's length first, into one bit set per kind; every later question
//! (which fields pass, where the length is) is a look at those sets. The
//! rules are the same as `headers.rs`'s: Connection and every field it
//! names, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade and
//! `proxy-*`. Must not build the map or decide the framing (`head.rs`
//! does both).

use super::head::MAX_HEADERS;
use crate::proxy::charset::visible;

/// What a field is to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ContentLength,
    TransferEncoding,
    Connection,
    /// Keep-Alive, TE, Trailer, Upgrade, `proxy-*`: dropped.
    HopByHop,
    /// Passed like any other field; the front adds one when it is missing.
    Date,
    Other,
}

const KINDS: usize = 6;
// One bit per field.
const _: () = assert!(MAX_HEADERS <= 128);

/// The fields of one response head, classified once.
pub struct Fields<'h, 'b> {
    pub all: &'h [httparse::Header<'b>],
    /// Bit i of `of[k as usize]`: field i is of kind k.
    of: [u128; KINDS],
    /// What the Connection fields say.
    pub says: Says,
}

/// The Connection fields' tokens that matter, read once.
#[derive(Debug, Default, Clone, Copy)]
pub struct Says {
    pub close: bool,
    pub keep_alive: bool,
    /// A token other than `keep-alive`, which may name a field to drop.
    names_fields: bool,
}

impl<'h, 'b> Fields<'h, 'b> {
    pub fn read(all: &'h [httparse::Header<'b>]) -> Self {
        let mut of = [0u128; KINDS];
        for (i, f) in all.iter().enumerate().take(MAX_HEADERS) {
            of[kind(f.name.as_bytes()) as usize] |= 1 << i;
        }
        let mut fields = Fields {
            all,
            of,
            says: Says::default(),
        };
        let mut says = Says::default();
        for line in fields.values(Kind::Connection) {
            // As hyper's client reads it: a line that is not visible ASCII
            // says neither close nor keep-alive (its tokens still name
            // fields to drop: dropping is the safe side).
            let readable = visible(line);
            for token in line.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"keep-alive") {
                    says.keep_alive |= readable;
                } else {
                    says.close |= readable && token.eq_ignore_ascii_case(b"close");
                    says.names_fields = true;
                }
            }
        }
        fields.says = says;
        fields
    }

    /// The fields of this kind, as a set of field numbers.
    pub fn set(&self, of: Kind) -> u128 {
        self.of[of as usize]
    }

    /// The values of every field of this kind, in order.
    pub fn values(&self, of: Kind) -> impl DoubleEndedIterator<Item = &'b [u8]> + '_ {
        Bits(self.set(of)).map(|i| self.all[i].value)
    }

    pub fn has(&self, of: Kind) -> bool {
        self.set(of) != 0
    }

    /// Whether Connection lists this token (any case).
    pub fn connection_says(&self, token: &[u8]) -> bool {
        self.values(Kind::Connection)
            .flat_map(|v| v.split(|b| *b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    }

    /// The fields the client does not get, as a set of field numbers.
    /// `keep_framing` keeps Transfer-Encoding for
    /// `upstream::clean_answer`, which must see it next to a
    /// Content-Length to drop the latter and say so.
    pub fn dropped(&self, keep_framing: bool) -> u128 {
        let mut dropped = self.set(Kind::Connection) | self.set(Kind::HopByHop);
        if !keep_framing {
            dropped |= self.set(Kind::TransferEncoding);
        }
        // `keep-alive` names a field dropped anyway: the common Connection
        // (nginx sends it on every answer) costs no look per field.
        if self.says.names_fields {
            let named =
                self.set(Kind::Other) | self.set(Kind::Date) | self.set(Kind::ContentLength);
            for i in Bits(named) {
                if self.connection_says(self.all[i].name.as_bytes()) {
                    dropped |= 1 << i;
                }
            }
        }
        dropped
    }

    /// The fields the client gets, in order (see `dropped`).
    pub fn passed(
        &self,
        keep_framing: bool,
    ) -> impl Iterator<Item = &'h httparse::Header<'b>> + '_ {
        let dropped = self.dropped(keep_framing);
        self.all
            .iter()
            .enumerate()
            .filter(move |(i, _)| dropped & (1 << i) == 0)
            .map(|(_, f)| f)
    }
}

/// The numbers in a set of fields, lowest first.
pub struct Bits(pub u128);

impl Iterator for Bits {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(i)
    }
}

impl DoubleEndedIterator for Bits {
    fn next_back(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = 127 - self.0.leading_zeros() as usize;
        self.0 &= !(1 << i);
        Some(i)
    }
}

fn kind(name: &[u8]) -> Kind {
    let is = |known: &[u8]| same_name(name, known);
    // The length picks the one or two names worth comparing.
    match name.len() {
        14 if is(b"content-length") => Kind::ContentLength,
        17 if is(b"transfer-encoding") => Kind::TransferEncoding,
        10 if is(b"connection") => Kind::Connection,
        4 if is(b"date") => Kind::Date,
        10 if is(b"keep-alive") => Kind::HopByHop,
        2 if is(b"te") => Kind::HopByHop,
        7 if is(b"trailer") || is(b"upgrade") => Kind::HopByHop,
        n if n >= 6 && same_name(&name[..6], b"proxy-") => Kind::HopByHop,
        _ => Kind::Other,
    }
}

/// `name` is `known` in any case. `known` is lower-case letters and `-`;
/// `name` is a token (httparse has checked): setting bit 5 then lowers a
/// letter and changes no other token byte into one of `known`'s (only a
/// CR would turn into `-`).
fn same_name(name: &[u8], known: &[u8]) -> bool {
    name.len() == known.len() && name.iter().zip(known).all(|(n, k)| n | 0x20 == *k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &[u8], keep_framing: bool) -> Vec<String> {
        let mut buf = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut buf);
        r.parse(raw).unwrap();
        let f = Fields::read(r.headers);
        f.passed(keep_framing).map(|h| h.name.to_string()).collect()
    }

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_are_dropped() {
        let raw = b"HTTP/1.1 200 OK\r\nA: 1\r\nConnection: keep-alive, X-Secret\r\n\
            x-secret: s\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: x\r\n\
            Upgrade: h2c\r\nProxy-Authenticate: p\r\nContent-Length: 2\r\nB: 2\r\n\r\n";
        assert_eq!(names(raw, false), ["A", "Content-Length", "B"]);
    }

    #[test]
    fn transfer_encoding_is_kept_only_when_asked() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nA: 1\r\n\r\n";
        assert_eq!(names(raw, false), ["A"]);
        assert_eq!(names(raw, true), ["Transfer-Encoding", "A"]);
    }

    #[test]
    fn names_are_classified_in_any_case_and_near_misses_are_other() {
        let cases: [(&str, Kind); 16] = [
            ("Content-Length", Kind::ContentLength),
            ("content-lengtH", Kind::ContentLength),
            ("Transfer-Encoding", Kind::TransferEncoding),
            ("CONNECTION", Kind::Connection),
            ("Date", Kind::Date),
            ("Keep-Alive", Kind::HopByHop),
            ("te", Kind::HopByHop),
            ("Trailer", Kind::HopByHop),
            ("Upgrade", Kind::HopByHop),
            ("Proxy-Authenticate", Kind::HopByHop),
            ("proxy-", Kind::HopByHop),
            ("proxy", Kind::Other),
            ("Content-Lengths", Kind::Other),
            ("Dates", Kind::Other),
            ("tE-", Kind::Other),
            ("X-Connection", Kind::Other),
        ];
        for (name, want) in cases {
            assert_eq!(kind(name.as_bytes()), want, "{name}");
        }
        // No token byte but a letter's two cases matches a letter or `-`.
        for b in (0..=255u8).filter(|b| crate::proxy::charset::TCHAR.has(*b)) {
            for k in b"abcdefghijklmnopqrstuvwxyz-" {
                assert_eq!(same_name(&[b], &[*k]), b.eq_ignore_ascii_case(k), "{b:#x}");
            }
        }
    }

    #[test]
    fn sets_are_read_lowest_first_and_from_the_back() {
        let set = (1u128 << 0) | (1 << 5) | (1 << 99);
        assert_eq!(Bits(set).collect::<Vec<_>>(), [0, 5, 99]);
        assert_eq!(Bits(set).rev().collect::<Vec<_>>(), [99, 5, 0]);
        assert_eq!(Bits(0).next(), None);
    }

    #[test]
    fn connection_tokens_are_read_in_any_case_and_spacing() {
        let mut buf = [httparse::EMPTY_HEADER; 4];
        let mut r = httparse::Response::new(&mut buf);
        r.parse(b"HTTP/1.1 200 OK\r\nConnection: x ,  CLOSE\r\n\r\n")
            .unwrap();
        let f = Fields::read(r.headers);
        assert!(f.connection_says(b"close"));
        assert!(!f.connection_says(b"keep-alive"));
        assert!(f.says.close && !f.says.keep_alive);
    }
}
