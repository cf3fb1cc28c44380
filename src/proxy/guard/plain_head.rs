//! The scanner's shortcut for the common request: a whole head, at the
//! start of a read, with nothing in it that frames a body or asks for an
//! upgrade, checked line by line instead of byte by byte.
//!
//! Owns only the yes: `plain_head` says "these n bytes are one head the
//! byte-level scanner would accept, ending with no body", or "don't know"
//! (None), and the scanner then steps through the bytes itself. So every
//! refusal, every framing decision and every unusual head stays with
//! `scanner.rs`; the two agreeing is checked by the property test below
//! and by the fuzz target that feeds reads in pieces
//! (`fuzzing::guard_in_pieces`). Why: the byte-at-a-time state machine
//! was the largest single item of hpgate's own CPU per small request
//! (docs/benchmarks.md, issue 19).

use super::rules::{classify, is_tchar, Kind};

/// The most a head may be and still be taken here (the scanner's own
/// bound is larger; anything near it goes the slow way).
const MAX_PLAIN: usize = 64 * 1024;

/// The length of the whole plain head at the start of `data`, if it is
/// one: CRLF line ends only, a request line that is not CONNECT, and
/// header fields that are `token ":" value` with no control bytes, no
/// folding and none of Content-Length, Transfer-Encoding or Upgrade.
pub fn plain_head(data: &[u8]) -> Option<usize> {
    let data = &data[..data.len().min(MAX_PLAIN)];
    let (request_line, mut at) = line(data, 0)?;
    // The scanner keeps the method's first 8 bytes; "CONNECT" and
    // anything starting so is its to judge.
    if request_line.is_empty() || request_line.starts_with(b"CONNECT") {
        return None;
    }
    if memchr::memchr(b'\r', request_line).is_some() {
        return None;
    }
    loop {
        let (field, next) = line(data, at)?;
        if field.is_empty() {
            return Some(next);
        }
        if !plain_field(field) {
            return None;
        }
        at = next;
    }
}

/// The line starting at `from` without its CRLF, and where the next one
/// starts; None when no LF follows or it has no CR before it.
fn line(data: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let lf = from + memchr::memchr(b'\n', &data[from..])?;
    if lf == from || data[lf - 1] != b'\r' {
        return None;
    }
    Some((&data[from..lf - 1], lf + 1))
}

/// A field line the scanner lets through without noting anything.
fn plain_field(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else {
        return false;
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return false;
    }
    let framing = classify(name, name.len()) != Kind::Other;
    !framing
        && value
            .iter()
            .all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

#[cfg(test)]
mod tests {
    use super::super::scanner::Scanner;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_common_head_is_taken_whole() {
        let head = b"GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
        let mut two = head.to_vec();
        two.extend_from_slice(b"GET /b HTTP/1.1\r\n");
        assert_eq!(plain_head(head), Some(head.len()));
        assert_eq!(plain_head(&two), Some(head.len()));
    }

    #[test]
    fn anything_unusual_is_left_to_the_scanner() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n"[..],
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\n\r\n",
            b"GET /\r HTTP/1.1\r\n\r\n",
            b"CONNECT x:1 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET / HTTP/1.1\r\nA b: c\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: \x01\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: \x7f\r\n\r\n",
            b"GET / HTTP/1.1\r\ncontent-LENGTH: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        ] {
            assert_eq!(plain_head(raw), None, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    fn one_of(list: Vec<&'static [u8]>) -> impl Strategy<Value = Vec<u8>> {
        proptest::sample::select(list).prop_map(<[u8]>::to_vec)
    }

    /// A header line, mostly well formed, sometimes one byte off.
    fn field() -> impl Strategy<Value = Vec<u8>> {
        let fixed = one_of(vec![
            b"Host: x\r\n",
            b"Content-Length: 3\r\n",
            b"transfer-encoding: chunked\r\n",
            b"UPGRADE: websocket\r\n",
            b"X-A: a\tb\r\n",
            b" folded\r\n",
            b": v\r\n",
            b"No colon\r\n",
            b"X-A: b\n",
            b"X-A: b\r",
        ]);
        // Bytes at the edges of what names and values allow, and any other.
        let edge = proptest::sample::select(vec![
            0u8, b'\t', 0x0b, 0x1f, b' ', b'"', b'(', b':', 0x7e, 0x7f, 0x80, 0xff,
        ]);
        let byte = prop_oneof![3 => edge, 1 => any::<u8>()];
        let odd_byte = (byte, any::<bool>()).prop_map(|(b, in_name)| {
            if in_name {
                [&b"X-"[..], &[b], b": v\r\n"].concat()
            } else {
                [&b"X-B: "[..], &[b], b"\r\n"].concat()
            }
        });
        prop_oneof![3 => fixed, 1 => odd_byte]
    }

    /// A request (or something near one): request line, fields, the
    /// blank line or not, and maybe a few more bytes.
    fn request() -> impl Strategy<Value = Vec<u8>> {
        let line = one_of(vec![
            b"GET / HTTP/1.1\r\n",
            b"POST /p HTTP/1.1\r\n",
            b"CONNECT h:1 HTTP/1.1\r\n",
            b"GET / HTTP/1.0\r\n",
            b"GET /\r HTTP/1.1\r\n",
            b"\r\n",
            b"GET / HTTP/1.1\n",
        ]);
        let end = one_of(vec![b"\r\n", b"\r\n", b"\r\n", b"\n", b""]);
        let after = one_of(vec![b"", b"", b"abc", b"3\r\nabc\r\n0\r\n\r\n"]);
        (line, proptest::collection::vec(field(), 0..5), end, after)
            .prop_map(|(l, f, e, a)| [l, f.concat(), e, a].concat())
    }

    /// Everything a scanner says about a stream fed in reads cut at `cuts`.
    fn run(mut s: Scanner, stream: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut said = Vec::new();
        let mut at = 0;
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        ends.push(stream.len());
        ends.sort_unstable();
        for end in ends {
            while at < end {
                let r = s.feed(&stream[at..end]);
                said.push(format!("{r:?} {:?} {:?}", s.phase(), s.undispatched()));
                match r {
                    Ok(super::super::Step::Pause(n)) => {
                        s.resume(false);
                        at += n;
                    }
                    Ok(_) => at = end,
                    Err(_) => return said,
                }
            }
        }
        said
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn the_shortcut_agrees_with_the_byte_steps(
            requests in proptest::collection::vec(request(), 1..5),
            cuts in proptest::collection::vec(any::<usize>(), 0..3),
        ) {
            let stream = requests.concat();
            prop_assert_eq!(
                run(Scanner::default(), &stream, &cuts),
                run(Scanner::stepwise(), &stream, &cuts)
            );
        }
    }
}
