//! Offload: re-framing a decoded message for its destination. Client
//! messages are inflated for the app; app messages are deflated for the
//! client when they are at least `min_size` bytes.

use super::super::deflate::CodecError;
use super::super::frame::{self, RSV1};
use super::direction::{Dir, Message, Side};
use super::order::Shared;
use super::walk::{fail, too_big};
use super::{Mode, Settings};
use crate::proxy::conn_tag::ConnTag;

/// Turns one decoded message into the frame for the destination.
pub fn emit_message<W>(
    dir: &mut Dir<W>,
    m: Message,
    out: &mut Vec<u8>,
    shared: &Shared,
    s: &Settings,
) {
    match dir.side {
        Side::Upstream => {
            let received = m.data.len() as u64;
            if let Some(plain) = inflated(dir, m.compressed, m.data, out, shared, s) {
                s.stats
                    .offload(dir.side.index(), plain.len() as u64, received);
                let mask = dir.mask();
                out.extend_from_slice(&frame::build(m.opcode, 0, &plain, mask));
            }
        }
        Side::Downstream => deflate_to_client(dir, m.opcode, &m.data, out, s),
    }
}

/// The client's message as plain bytes; `None` when it was refused.
fn inflated<W>(
    dir: &mut Dir<W>,
    compressed: bool,
    data: Vec<u8>,
    out: &mut Vec<u8>,
    shared: &Shared,
    s: &Settings,
) -> Option<Vec<u8>> {
    if !compressed {
        return Some(data);
    }
    let codec = dir.codec.as_mut()?;
    match codec.inflate(&data, s.max_message) {
        Ok(p) => Some(p),
        Err(CodecError::TooBig(_)) => {
            too_big(dir, shared, out);
            None
        }
        Err(e) => {
            let ConnTag { id, peer } = shared.conn;
            tracing::info!(conn = id, %peer, "WebSocket message from the client does not inflate: {e}");
            fail(dir, shared, "invalid compressed message", out);
            None
        }
    }
}

fn deflate_to_client<W>(
    dir: &mut Dir<W>,
    opcode: u8,
    data: &[u8],
    out: &mut Vec<u8>,
    s: &Settings,
) {
    let Mode::Offload { min_size, .. } = s.mode else {
        return;
    };
    let Some(codec) = dir.codec.as_mut() else {
        return;
    };
    let plain = data.len() as u64;
    let z = if plain < min_size {
        None
    } else {
        codec.deflate(data).ok()
    };
    // Small messages (and the rare codec failure) go as they are.
    let sent = z.as_ref().map_or(plain, |z| z.len() as u64);
    s.stats.offload(dir.side.index(), plain, sent);
    match z {
        Some(z) => out.extend_from_slice(&frame::build(opcode, RSV1, &z, None)),
        None => out.extend_from_slice(&frame::build(opcode, 0, data, None)),
    }
}
