//! The app's chunked response bodies (`proxy/lean/chunked.rs`). The lean
//! path keeps the app connection for the next request once a body ends:
//! a body end read anywhere but where the app's bytes put it would hand
//! what follows to another client as its response.

use bytes::BytesMut;

use crate::proxy::fuzz::{Chunked, Decoded};

/// The first three bytes pick where the body is cut into reads; the rest
/// is what the app sent.
///
/// Invariants: no panic; the same data, the same end (or refusal, with
/// the same reason) whether the bytes come in one read or in four, and as
/// RFC 9112's grammar read over the whole bytes at once says; a
/// body's end is found without looking past it (its bytes alone decode
/// to the same data and end, with nothing left), and it ends with CRLF.
pub fn app_chunked(data: &[u8]) {
    let Some((&[a, b, c], wire)) = data.split_first_chunk::<3>() else {
        return;
    };
    let whole = decode(wire, &[]);
    let mut cuts = [a, b, c].map(|x| usize::from(x) % (wire.len() + 1));
    cuts.sort_unstable();
    let split = decode(wire, &cuts);
    assert_eq!(
        whole, split,
        "the outcome depends on the reads (cuts {cuts:?})"
    );
    let spec = by_the_grammar(wire);
    assert_eq!(
        (&whole.data, whole.end, whole.refused.is_some()),
        (&spec.data, spec.end, spec.refused.is_some()),
        "the decoder and the grammar disagree ({:?})",
        whole.refused
    );
    if let Some(end) = whole.end {
        assert!(
            wire[..end].ends_with(b"\r\n"),
            "a body ended before its CRLF"
        );
        assert_eq!(decode(&wire[..end], &[]), whole, "ended by what follows");
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    data: Vec<u8>,
    /// Where the body ended in the bytes, if it did.
    end: Option<usize>,
    /// Why the decoder refused the body, if it did.
    refused: Option<String>,
}

/// Decodes `wire` in reads ending at `cuts`, as the lean body does: each
/// read is added to the buffer, then decoded until it asks for more.
fn decode(wire: &[u8], cuts: &[usize]) -> Outcome {
    let mut c = Chunked::default();
    let mut buf = BytesMut::new();
    let mut out = Outcome {
        data: Vec::new(),
        end: None,
        refused: None,
    };
    let mut from = 0;
    for to in cuts.iter().copied().chain([wire.len()]) {
        buf.extend_from_slice(&wire[from..to]);
        from = to;
        loop {
            match c.decode(&mut buf) {
                Ok(Decoded::Data(d)) => out.data.extend_from_slice(&d),
                Ok(Decoded::More) => break,
                Ok(Decoded::End) => {
                    out.end = Some(to - buf.len());
                    return out;
                }
                Err(e) => {
                    out.refused = Some(e.to_string());
                    return out;
                }
            }
        }
    }
    out
}

/// Chunk extensions and trailer lines are read up to this many bytes.
const MAX_CONTROL: usize = 64 * 1024;

/// RFC 9112 section 7.1 over all the bytes at once, line by line, with the
/// decoder's documented choices: a size is 1 to 16 hex digits; after it,
/// an extension starts with `;`, SP or HTAB and runs to the CR; trailer
/// lines are dropped unread; every line ends in CRLF; at most
/// `MAX_CONTROL` bytes of extensions and trailers. Written apart from the
/// decoder's state machine, to check it.
fn by_the_grammar(w: &[u8]) -> Outcome {
    let mut out = Outcome {
        data: Vec::new(),
        end: None,
        refused: None,
    };
    match chunks(w, &mut out.data) {
        Ok(end) => out.end = end,
        Err(()) => out.refused = Some(String::new()),
    }
    out
}

/// `Ok(None)`: the bytes end before the body does.
type Read = Result<Option<usize>, ()>;

fn chunks(w: &[u8], data: &mut Vec<u8>) -> Read {
    let (mut at, mut control) = (0, 0);
    loop {
        let digits = w[at..].iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits > 16 || (digits == 0 && at < w.len()) {
            return Err(());
        }
        if at + digits == w.len() {
            return Ok(None);
        }
        let hex = std::str::from_utf8(&w[at..at + digits]).map_err(|_| ())?;
        let size = u64::from_str_radix(hex, 16).map_err(|_| ())?;
        at += digits;
        if matches!(w[at], b';' | b' ' | b'\t') {
            let Some(next) = to_line_end(w, at + 1, &mut control)? else {
                return Ok(None);
            };
            at = next;
        }
        let Some(next) = crlf(w, at)? else {
            return Ok(None);
        };
        at = next;
        if size == 0 {
            return trailers(w, at, &mut control);
        }
        let have = (w.len() - at) as u64;
        if have < size {
            data.extend_from_slice(&w[at..]);
            return Ok(None);
        }
        data.extend_from_slice(&w[at..at + size as usize]);
        let Some(next) = crlf(w, at + size as usize)? else {
            return Ok(None);
        };
        at = next;
    }
}

/// Trailer lines up to the empty one that ends the body.
fn trailers(w: &[u8], mut at: usize, control: &mut usize) -> Read {
    loop {
        let Some(end) = to_line_end(w, at, control)? else {
            return Ok(None);
        };
        let empty = end == at;
        let Some(next) = crlf(w, end)? else {
            return Ok(None);
        };
        if empty {
            return Ok(Some(next));
        }
        at = next;
    }
}

/// Skips a line's bytes up to its CR, counting them against the limit.
fn to_line_end(w: &[u8], at: usize, control: &mut usize) -> Read {
    let n = w[at..]
        .iter()
        .take_while(|&&b| b != b'\r' && b != b'\n')
        .count();
    *control += n;
    if *control > MAX_CONTROL {
        return Err(());
    }
    Ok((at + n < w.len()).then_some(at + n))
}

/// A CRLF at `at`; past it.
fn crlf(w: &[u8], at: usize) -> Read {
    match (w.get(at), w.get(at + 1)) {
        (None, _) | (Some(b'\r'), None) => Ok(None),
        (Some(b'\r'), Some(b'\n')) => Ok(Some(at + 2)),
        _ => Err(()),
    }
}
