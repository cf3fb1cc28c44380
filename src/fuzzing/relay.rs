//! The WebSocket relay target: one direction's frame walk
//! (`websocket/relay/walk.rs`) over any bytes, in every mode, from either
//! side. The frames come from whoever is at the other end of the
//! connection, so nothing they send may panic the walk, make it depend on
//! how the bytes were cut into reads, or make it write what it must not.

use crate::admin::metrics::WsStats;
use crate::proxy::websocket::fuzz::relay::{
    codec, process, ConnTag, Dir, Mode, Order, Settings, Shared, Side, Wakes, Walked,
};
use crate::proxy::websocket::fuzz::{apply_mask, Agreement, Header, OP_CLOSE};

/// The limit offload applies: small, so the fuzzer reaches "too big".
const MAX_MESSAGE: u64 = 1024;

/// The first byte picks the side (bit 0) and the mode (bits 1-2); the
/// next three where the stream is cut into reads; the rest is the stream.
///
/// Invariants: no panic; the same bytes written, the same end state and
/// the same counts whether the stream comes in one read or in four (the
/// whole-frame shortcut and the frame-by-frame walk agree); at most one
/// close frame of hpgate's own, and nothing after it; when relaying, the
/// destination gets exactly the source's bytes up to where the walk
/// stopped, then at most that close.
pub fn websocket_relay(data: &[u8]) {
    let Some((&[ctl, a, b, c], stream)) = data.split_first_chunk::<4>() else {
        return;
    };
    let whole = walk(ctl, stream, &[]);
    let mut cuts = [a, b, c].map(|x| usize::from(x) % (stream.len() + 1));
    cuts.sort_unstable();
    let split = walk(ctl, stream, &cuts);
    assert_eq!(
        unmasked(&whole.out),
        unmasked(&split.out),
        "written bytes depend on the reads (cuts {cuts:?})"
    );
    assert_eq!(whole.end, split.end, "end state depends on the reads");
    if whole.relaying {
        passed_as_they_came(stream, &whole);
    }
}

/// What a walk of the whole stream left behind.
struct Walk {
    out: Vec<u8>,
    relaying: bool,
    side: Side,
    end: End,
}

#[derive(Debug, PartialEq, Eq)]
struct End {
    failed: bool,
    close_to_dst: bool,
    in_message: bool,
    held: usize,
    order: Option<Order>,
    /// Payload bytes and messages counted.
    counted: (u64, u64),
}

/// Walks `stream` in reads ending at `cuts`, as the relay's pump does:
/// a read after the source broke the protocol is dropped unwalked.
fn walk(ctl: u8, stream: &[u8], cuts: &[usize]) -> Walk {
    let side = if ctl & 1 == 0 {
        Side::Upstream
    } else {
        Side::Downstream
    };
    let s = settings(ctl);
    let relaying = matches!(s.mode, Mode::Relay { .. });
    let wakes = Wakes::new();
    let shared = Shared::new(s.conn, [wakes.flag(), wakes.flag(), wakes.flag()]);
    let mut dir = Dir::new(side, (), codec(&s));
    let mut out = Vec::new();
    let mut from = 0;
    for to in cuts.iter().copied().chain([stream.len()]) {
        let read = &stream[from..to];
        from = to;
        if read.is_empty() || dir.failed {
            continue;
        }
        let mut into = Vec::new();
        match process(&mut dir, read, &mut into, &shared, &s) {
            Walked::AsIs => out.extend_from_slice(read),
            Walked::Into => out.append(&mut into),
        }
    }
    let end = End {
        failed: dir.failed,
        close_to_dst: dir.close_to_dst,
        in_message: dir.in_message,
        held: dir.hdr_len,
        order: shared.current(),
        counted: s.stats.counted(side.index()),
    };
    Walk {
        out,
        relaying,
        side,
        end,
    }
}

fn settings(ctl: u8) -> Settings {
    let mode = match (ctl >> 1) & 3 {
        0 => Mode::Relay {
            deflate: false,
            other_extensions: false,
        },
        1 => Mode::Relay {
            deflate: true,
            other_extensions: false,
        },
        2 => Mode::Relay {
            deflate: false,
            other_extensions: true,
        },
        _ => Mode::Offload {
            agreement: Agreement {
                server_no_context_takeover: ctl & 8 != 0,
                client_no_context_takeover: ctl & 16 != 0,
                server_max_window_bits: 15,
            },
            level: 1,
            min_size: u64::from(ctl >> 5) * 16,
        },
    };
    Settings {
        mode,
        max_message: MAX_MESSAGE,
        ping_interval: None,
        idle_timeout: None,
        stats: WsStats::detached(),
        conn: ConnTag {
            id: 1,
            peer: ([127, 0, 0, 1], 1).into(),
        },
    }
}

/// Relaying: the source's bytes as they came, up to where the walk
/// stopped (the end, a close frame, a header not yet whole, or a frame
/// that broke a rule), then hpgate's close if it ordered one.
fn passed_as_they_came(stream: &[u8], w: &Walk) {
    // The source's close, relayed, ends it all: nothing of the source's
    // follows it, nor a close of hpgate's own.
    if let Some(end) = source_close_end(stream) {
        if w.out.get(..end) == Some(&stream[..end]) {
            assert_eq!(w.out.len(), end, "bytes after the source's close");
            assert!(w.end.close_to_dst);
            return;
        }
    }
    let ours = w.end.order.map_or(0, |o| own_close_len(&o, w.side));
    assert!(ours <= w.out.len(), "shorter than hpgate's close");
    let (theirs, close) = w.out.split_at(w.out.len() - ours);
    assert!(
        stream.starts_with(theirs),
        "relayed bytes differ from the source's"
    );
    if ours > 0 {
        let (h, n) = match Header::parse(close) {
            Ok(Some(found)) => found,
            other => panic!("hpgate's close does not parse: {other:?}"),
        };
        assert_eq!((h.opcode, n as u64 + h.len), (OP_CLOSE, ours as u64));
        assert!(w.end.close_to_dst);
    } else if !w.end.close_to_dst {
        // No close either way: everything but a header still coming.
        assert_eq!(theirs.len(), stream.len() - w.end.held, "bytes held back");
    }
}

/// Where the first close frame among the whole frames of `stream` ends.
fn source_close_end(stream: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Ok(Some((h, n))) = Header::parse(&stream[at..]) {
        let end = (at + n) as u64 + h.len;
        if end > stream.len() as u64 {
            return None;
        }
        if h.opcode == OP_CLOSE {
            return Some(end as usize);
        }
        at = end as usize;
    }
    None
}

/// The length of the close frame hpgate writes for `o` toward the
/// destination of `side`'s frames.
fn own_close_len(o: &Order, side: Side) -> usize {
    let mask = if side == Side::Upstream { 4 } else { 0 };
    2 + mask + 2 + o.reason.len()
}

/// `out` with every whole frame's payload unmasked and its key zeroed:
/// hpgate's own frames toward the app carry random keys.
fn unmasked(out: &[u8]) -> Vec<u8> {
    let mut v = out.to_vec();
    let mut at = 0;
    while let Ok(Some((h, n))) = Header::parse(&v[at..]) {
        let end = at as u64 + n as u64 + h.len;
        if end > v.len() as u64 {
            break;
        }
        if let Some(mask) = h.mask {
            apply_mask(&mut v[at + n..end as usize], mask, 0);
            v[at + n - 4..at + n].fill(0);
        }
        at = end as usize;
    }
    v
}
