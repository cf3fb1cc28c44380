//! Entry points for the fuzz targets (`fuzz/`), their replay on stable
//! (`tests/fuzz_replay.rs`) and the guard-versus-h11 differential test
//! (`tests/guard_differential.rs`); docs/fuzzing.md explains them.
//!
//! Not an API: hidden, and free to change with the code it drives. Each
//! target function panics when an invariant breaks, which is how a fuzzer
//! reports; inputs that are merely refused are fine.

use serde::Serialize;

mod chunked;
mod fields;
mod framing;
mod relay;
pub use chunked::app_chunked;
pub use fields::app_fields;
pub use framing::app_framing;
pub use relay::websocket_relay;

use crate::proxy::fuzz::{Phase, Scanner, Step};
use crate::proxy::websocket::fuzz::{apply_mask, Agreement, Codec, CodecError, Header, MAX_HEADER};

/// One request the guard let through whole; offsets into the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Framed {
    /// The head's first byte (empty lines before it are skipped).
    pub start: usize,
    /// Just after the head's empty line.
    pub head_end: usize,
    /// Just after the body (or the head, without one).
    pub end: usize,
    /// Body bytes the app gets (chunk data only, for chunked).
    pub body: u64,
    pub chunked: bool,
}

/// Where and why the guard refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The offending byte.
    pub at: usize,
    pub status: u16,
    pub reason: String,
    /// In a head (never dispatched) rather than in a body.
    pub in_head: bool,
}

/// The guard's reading of a whole byte stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub requests: Vec<Framed>,
    pub refused: Option<Refusal>,
    /// The stream ended inside a request.
    pub partial: bool,
}

/// A request being followed by `guard_verdict`.
#[derive(Default)]
struct Open {
    start: usize,
    head_end: Option<usize>,
    body: u64,
    chunked: bool,
}

/// Feeds `stream` to a fresh scanner one byte at a time and records every
/// boundary. An upgrade request is answered "not switched" (the guard stays
/// on), as h11 does when the server does not answer 101.
pub fn guard_verdict(stream: &[u8]) -> Verdict {
    let mut s = Scanner::default();
    let mut v = Verdict::default();
    let mut open = Open::default();
    for (i, b) in stream.iter().enumerate() {
        let before = s.phase();
        if let Err(e) = s.feed(std::slice::from_ref(b)) {
            v.refused = Some(Refusal {
                at: i,
                status: e.status().as_u16(),
                reason: e.to_string(),
                in_head: matches!(before, Phase::Idle | Phase::Head),
            });
            return v;
        }
        let mut after = s.phase();
        if after == Phase::Held {
            s.resume(false);
            after = s.phase();
        }
        match before {
            Phase::Idle => {
                open = Open {
                    start: i,
                    ..Open::default()
                }
            }
            Phase::Data => open.body += 1,
            _ => {}
        }
        if before == Phase::Head && after != Phase::Head {
            if after == Phase::Idle && i + 1 - open.start == 2 {
                continue; // an empty line before a request
            }
            open.head_end = Some(i + 1);
            open.chunked = after == Phase::ChunkFraming;
        }
        if let (Some(head_end), Phase::Idle) = (open.head_end, after) {
            v.requests.push(Framed {
                start: open.start,
                head_end,
                end: i + 1,
                body: open.body,
                chunked: open.chunked,
            });
            open = Open::default();
        }
    }
    v.partial = s.phase() != Phase::Idle;
    v
}

/// Feeds `stream` in pieces cut at `cuts` (as socket reads would come),
/// resuming "not switched" after each upgrade request; the refusal's status
/// if any. Checks that `undispatched` stays inside the last piece.
pub fn guard_in_pieces(stream: &[u8], cuts: &[usize]) -> Option<u16> {
    let mut s = Scanner::default();
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    bounds.push(stream.len());
    bounds.sort_unstable();
    let mut at = 0;
    for end in bounds {
        while at < end {
            let piece = &stream[at..end];
            match s.feed(piece) {
                Err(e) => {
                    if let Some(keep) = s.undispatched() {
                        assert!(keep <= piece.len(), "undispatched past the piece");
                    }
                    return Some(e.status().as_u16());
                }
                Ok(Step::All) => at = end,
                Ok(Step::Pause(n)) => {
                    assert!(n <= piece.len(), "paused past the piece");
                    s.resume(false);
                    at += n;
                }
            }
        }
    }
    None
}

/// The guard target: the byte-at-a-time reading agrees with reads cut
/// anywhere, and every boundary is where the bytes say it is.
pub fn guard(data: &[u8]) -> Verdict {
    let v = guard_verdict(data);
    let want = v.refused.as_ref().map(|r| r.status);
    let cut = data.first().map_or(0, |b| usize::from(*b) * 7);
    let cuts = [cut, data.len() / 2, data.len().saturating_sub(3)];
    assert_eq!(guard_in_pieces(data, &cuts), want, "cut at {cuts:?}");
    assert_eq!(guard_in_pieces(data, &[]), want, "in one piece");
    let mut last = 0;
    for r in &v.requests {
        assert!(last <= r.start && r.start < r.head_end && r.head_end <= r.end);
        assert!(data[..r.head_end].ends_with(b"\r\n\r\n"), "head end {r:?}");
        assert!(data[last..r.start].chunks(2).all(|p| p == b"\r\n"));
        let head = &data[r.start..r.head_end];
        assert!(!head
            .windows(4)
            .take(head.len().saturating_sub(4))
            .any(|w| w == b"\r\n\r\n"));
        if !r.chunked {
            assert_eq!(r.body, (r.end - r.head_end) as u64, "fixed body {r:?}");
        }
        last = r.end;
    }
    v
}

/// The WebSocket frame header target: a header parses the same from any
/// longer buffer, never from a shorter one, and survives encode/parse.
pub fn websocket_frame(data: &[u8]) {
    let Ok(Some((h, n))) = Header::parse(data) else {
        return;
    };
    assert!((2..=MAX_HEADER).contains(&n));
    for short in 0..n {
        assert_eq!(Header::parse(&data[..short]), Ok(None), "prefix {short}");
    }
    let mut out = Vec::new();
    h.encode(&mut out);
    assert!(out.len() <= n, "encoding grew: {h:?}");
    assert_eq!(Header::parse(&out), Ok(Some((h, out.len()))));
    // Masking in two parts at any offset equals masking at once.
    let mask = h.mask.unwrap_or([1, 2, 3, 4]);
    let mut once = data[n..].to_vec();
    apply_mask(&mut once, mask, h.len);
    let mut twice = data[n..].to_vec();
    let cut = usize::from(data[0]) % (twice.len() + 1);
    let (a, b) = twice.split_at_mut(cut);
    apply_mask(a, mask, h.len);
    apply_mask(b, mask, h.len + cut as u64);
    assert_eq!(once, twice);
}

/// The permessage-deflate target, both ways: what hpgate compresses
/// inflates back (with and without context takeover, any window), and
/// hostile input never inflates past the limit.
pub fn deflate(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let takeover_off = ctl & 1 != 0;
    let sender = Agreement {
        server_no_context_takeover: takeover_off,
        client_no_context_takeover: false,
        server_max_window_bits: 9 + (ctl >> 1) % 7,
    };
    // The peer inflating what `sender` compresses.
    let receiver = Agreement {
        client_no_context_takeover: takeover_off,
        server_no_context_takeover: false,
        server_max_window_bits: 15,
    };
    let mut tx = Codec::new(sender, u32::from(ctl >> 4) % 10);
    let mut rx = Codec::new(receiver, 6);
    for msg in rest.split(|b| *b == 0xfe) {
        let z = tx.deflate(msg).expect("deflate");
        assert_eq!(rx.inflate(&z, msg.len() as u64).expect("inflate"), msg);
    }
    inflate_hostile(ctl, rest);
}

/// Arbitrary bytes as compressed messages: each inflates within the limit
/// or fails; a failed message leaves the codec usable or failing, never
/// panicking.
fn inflate_hostile(ctl: u8, data: &[u8]) {
    let limit = u64::from(ctl) * 64;
    let mut rx = Codec::new(
        Agreement {
            server_no_context_takeover: false,
            client_no_context_takeover: ctl & 2 != 0,
            server_max_window_bits: 15,
        },
        6,
    );
    for msg in data.split(|b| *b == 0xfd) {
        match rx.inflate(msg, limit) {
            Ok(out) => assert!(out.len() as u64 <= limit),
            Err(CodecError::TooBig(l)) => assert_eq!(l, limit),
            Err(CodecError::Corrupt(_)) => {}
        }
    }
}

/// The web.config target: any bytes load or fail with errors that each
/// name the file and a line and column inside it.
pub fn web_config(data: &[u8]) {
    let path = std::path::Path::new("/site/web.config");
    let Err(errors) = crate::config::load_bytes(path, data) else {
        return;
    };
    assert!(!errors.0.is_empty());
    let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
    for e in &errors.0 {
        match &e.origin {
            crate::config::Origin::File {
                path: p,
                line,
                column,
            } => {
                assert_eq!(p, path, "{e}");
                assert!(*line >= 1 && *line <= lines && *column >= 1, "{e}");
            }
            other => panic!("an error without a position ({other}): {e}"),
        }
        assert!(!e.message.is_empty());
    }
}

/// The app response-head target: where each head of a connection's first
/// bytes ends (`app_io.rs`), the same whatever the reads, and the same by
/// the lean path's scan; the lean path's parse ends none elsewhere; Err
/// for a bare CR or LF in a head.
pub fn app_heads(data: &[u8]) -> Option<Vec<usize>> {
    let split = data.first().map_or(0, |b| usize::from(*b));
    // The lean path's line-jumping scan agrees with the byte steps.
    let fast = crate::proxy::fuzz::head_end(data).map_err(|e| e.to_string());
    let steps = crate::proxy::fuzz::head_end_by_steps(data).map_err(|e| e.to_string());
    assert_eq!(fast, steps, "head_end disagrees with the byte steps");
    // The lean path's parse takes a head only where the byte steps end it.
    if let Some(n) = crate::proxy::fuzz::lean_head_end(data) {
        assert_eq!(steps, Ok(Some(n)), "the lean path ends a head elsewhere");
    }
    crate::proxy::fuzz::head_ends(data, split).ok()
}
