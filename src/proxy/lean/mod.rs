//! The lean path: hpgate's own HTTP/1 client for requests without a body
//! (most GETs, HEADs, DELETEs), which are most requests a web app gets.
//!
//! hyper's client runs each app connection in a task of its own and hands
//! requests and responses to it through channels; here the client
//! connection's task writes the rewritten head in one write, parses the
//! answer's head once, and reads the body itself (`body.rs`), so a small
//! request costs no task switch and no second copy of its head. Requests
//! with a body, and upgrades, stay on hyper's client (`pool/mod.rs`):
//! streaming an upload, `100-continue` and the upgrade hand-over are what
//! hyper's dispatcher is for (docs/architecture.md).
//!
//! Owns the bytes on the wire to the app for these requests. Must not
//! pick processes, retry, time or render anything: `upstream/lean.rs`
//! does that around `exchange`, as `upstream/mod.rs` does for hyper.

mod body;
mod chunked;
mod fields;
mod head;
mod passed;

use std::io;
use std::sync::Arc;

use bytes::Buf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::direct_io::Direct;
use super::pool::raw::{RawConn, RawPool};
pub use body::LeanBody;
pub(crate) use chunked::{Chunked, Decoded};
pub(crate) use head::{framing_of, passed_lines, taken_end};
pub use head::{write_request, HeadError};
pub use passed::Passed;

/// The first read's room: most response heads and small bodies fit.
const HEAD_ROOM: usize = 8 * 1024;

/// Why an exchange on the lean path failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The app closed or reset the connection before answering anything;
    /// `sent` says whether the head went out (an unsent request can always
    /// be sent again; a sent one only if it is safe to repeat).
    #[error("{error}")]
    Unanswered { error: io::Error, sent: bool },
    /// The connection broke in the middle of the answer's head.
    #[error("{0}")]
    Io(io::Error),
    #[error("{0}")]
    Head(#[from] HeadError),
}

/// Sends `head` (a bodiless request) on `conn` and reads the answer's
/// head; the body follows in the returned `LeanBody`.
pub async fn exchange(
    mut conn: RawConn,
    pool: Arc<RawPool>,
    head: &[u8],
    head_request: bool,
) -> Result<(http::response::Parts, Box<LeanBody>), ExchangeError> {
    if let Err(error) = Direct(&mut conn.stream).write_all(head).await {
        return Err(ExchangeError::Unanswered { error, sent: false });
    }
    // The socket's own buffer when it was idle in the pool: on a warm
    // pool the room is already there.
    let mut buf = std::mem::take(&mut conn.buf);
    buf.reserve(HEAD_ROOM);
    let mut answered = false;
    let mut unseen = None;
    loop {
        if worth_parsing(&buf, unseen) {
            match head::parse(&buf, head_request)? {
                head::Parsed::Partial => {}
                head::Parsed::Interim(n) => {
                    buf.advance(n);
                    unseen = None;
                    continue;
                }
                head::Parsed::Final(h, n) => {
                    // Passed lines are copied from the head itself.
                    let passed = match h.passed {
                        Some(lines) => Some(lines.with(buf.split_to(n).freeze())),
                        None => {
                            buf.advance(n);
                            None
                        }
                    };
                    let mut body = LeanBody::new(conn, pool, buf, h.framing, h.keep_alive);
                    body.passed = passed;
                    return Ok((h.parts, Box::new(body)));
                }
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(HEAD_ROOM);
        }
        let from = buf.len();
        let read = Direct(&mut conn.stream).read_buf(&mut buf).await;
        let error = match read {
            Ok(0) => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the app closed the connection before its response head ended",
            ),
            Ok(_) => {
                answered = true;
                // A head's end may straddle the old bytes and the new.
                unseen = (from > 0).then(|| from.saturating_sub(2));
                continue;
            }
            Err(e) => e,
        };
        return Err(if answered {
            ExchangeError::Io(error)
        } else {
            ExchangeError::Unanswered { error, sent: true }
        });
    }
}

/// Whether the answer read so far is worth parsing (again): the first
/// time, then once a head's end may have arrived after `unseen` (httparse
/// ends a head at an LF after an LF, with a CR between or not), or at the
/// size limit. Why: parsing from the start after every read is quadratic
/// in the head's size, and an app that trickles a 400 KiB head a byte at a
/// time would cost minutes of CPU; now it costs one parse per end seen.
fn worth_parsing(buf: &[u8], unseen: Option<usize>) -> bool {
    match unseen {
        None => !buf.is_empty(),
        Some(from) => buf.len() >= head::MAX_HEAD || may_end_head(&buf[from..]),
    }
}

fn may_end_head(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', bytes).any(|at| {
        let rest = &bytes[at + 1..];
        rest.starts_with(b"\n") || rest.starts_with(b"\r\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_head_is_parsed_again_only_once_its_end_may_have_come() {
        let cut = b"HTTP/1.1 200 OK\r\nA: 1\r\n";
        assert!(worth_parsing(cut, None), "the first look");
        assert!(!worth_parsing(b"", None));
        assert!(!worth_parsing(cut, Some(cut.len() - 2)));
        for end in [&b"\r\n"[..], b"\n"] {
            // The end straddles what was seen and what came.
            let whole = [&cut[..], end].concat();
            assert!(worth_parsing(&whole, Some(cut.len() - 2)), "{end:?}");
        }
        assert!(may_end_head(b"x\n\ny") && may_end_head(b"\n\r\n"));
        assert!(!may_end_head(b"a\r\nb\r\n") && !may_end_head(b"\n\r"));
        let long = vec![b'a'; head::MAX_HEAD];
        assert!(worth_parsing(&long, Some(0)), "at the limit, to refuse it");
    }
}
