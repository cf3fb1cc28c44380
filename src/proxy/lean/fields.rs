//! The app's response header fields, read in one pass over httparse's
//! list: what frames the body, whether the connection stays open, and
//! which fields are hop-by-hop and never reach the client.
//!
//! Why here and not on a HeaderMap: looking each framing field up, and
//! then rebuilding the map without the hop-by-hop ones
//! (`headers::strip_hop_by_hop`), cost as much as building it
//! (docs/benchmarks.md, issue 19). The rules are the same as
//! `headers.rs`'s: Connection and every field it names, Keep-Alive, TE,
//! Trailer, Transfer-Encoding, Upgrade and `proxy-*`. Must not build the
//! map or decide the framing (`head.rs` does both).

/// What a field is to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ContentLength,
    TransferEncoding,
    Connection,
    /// Keep-Alive, TE, Trailer, Upgrade, `proxy-*`: dropped.
    HopByHop,
    Other,
}

/// The fields of one response head, classified once.
pub struct Fields<'h, 'b> {
    pub all: &'h [httparse::Header<'b>],
    kinds: [Kind; super::head::MAX_HEADERS],
}

impl<'h, 'b> Fields<'h, 'b> {
    pub fn read(all: &'h [httparse::Header<'b>]) -> Self {
        let mut kinds = [Kind::Other; super::head::MAX_HEADERS];
        for (k, f) in kinds.iter_mut().zip(all) {
            *k = kind(f.name.as_bytes());
        }
        Fields { all, kinds }
    }

    /// The values of every field of this kind, in order.
    pub fn values(&self, of: Kind) -> impl DoubleEndedIterator<Item = &'b [u8]> + '_ {
        self.all
            .iter()
            .zip(&self.kinds)
            .filter(move |(_, k)| **k == of)
            .map(|(f, _)| f.value)
    }

    pub fn has(&self, of: Kind) -> bool {
        self.kinds[..self.all.len()].contains(&of)
    }

    /// Whether Connection lists this token (any case).
    pub fn connection_says(&self, token: &[u8]) -> bool {
        self.values(Kind::Connection)
            .flat_map(|v| v.split(|b| *b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    }

    /// The fields the client gets, in order. `keep_framing` keeps
    /// Transfer-Encoding for `upstream::clean_answer`, which must see it
    /// next to a Content-Length to drop the latter and say so.
    pub fn passed(
        &self,
        keep_framing: bool,
    ) -> impl Iterator<Item = &'h httparse::Header<'b>> + '_ {
        self.passing(keep_framing).map(|(_, _, f)| f)
    }

    /// `passed`, with each field's place in the head and its kind.
    pub fn passing(
        &self,
        keep_framing: bool,
    ) -> impl Iterator<Item = (usize, Kind, &'h httparse::Header<'b>)> + '_ {
        // `keep-alive` names a field dropped anyway: the common Connection
        // (nginx sends it on every answer) then costs no look per field.
        let listing = self
            .values(Kind::Connection)
            .flat_map(|v| v.split(|b| *b == b','))
            .any(|t| !t.trim_ascii().eq_ignore_ascii_case(b"keep-alive"));
        self.all
            .iter()
            .zip(&self.kinds)
            .enumerate()
            .filter(move |(_, (f, k))| match k {
                Kind::Other | Kind::ContentLength => {
                    !(listing && self.connection_says(f.name.as_bytes()))
                }
                Kind::TransferEncoding => keep_framing,
                Kind::Connection | Kind::HopByHop => false,
            })
            .map(|(i, (f, k))| (i, *k, f))
    }
}

fn kind(name: &[u8]) -> Kind {
    // Most names differ in length from all of these: the length test
    // inside eq_ignore_ascii_case keeps this cheap.
    if name.eq_ignore_ascii_case(b"content-length") {
        Kind::ContentLength
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        Kind::TransferEncoding
    } else if name.eq_ignore_ascii_case(b"connection") {
        Kind::Connection
    } else if name.eq_ignore_ascii_case(b"keep-alive")
        || name.eq_ignore_ascii_case(b"te")
        || name.eq_ignore_ascii_case(b"trailer")
        || name.eq_ignore_ascii_case(b"upgrade")
        || name
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"proxy-"))
    {
        Kind::HopByHop
    } else {
        Kind::Other
    }
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
    fn connection_tokens_are_read_in_any_case_and_spacing() {
        let mut buf = [httparse::EMPTY_HEADER; 4];
        let mut r = httparse::Response::new(&mut buf);
        r.parse(b"HTTP/1.1 200 OK\r\nConnection: x ,  CLOSE\r\n\r\n")
            .unwrap();
        let f = Fields::read(r.headers);
        assert!(f.connection_says(b"close"));
        assert!(!f.connection_says(b"keep-alive"));
    }
}
