//! Walking the frame stream: headers parsed as they pass, payload copied
//! through (or collected for offload), the RFC 6455 rules hpgate enforces,
//! and close orders placed at frame boundaries. Pure: bytes in, bytes out.

use super::super::frame::{self};
use super::super::frame::{FrameError, Header, OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT, RSV1};
use super::direction::{Dir, Message, Side};
use super::offload::emit_message;
use super::order::{Order, Shared};
use super::{Mode, Settings};
use crate::proxy::conn_tag::ConnTag;

/// What `process` made of a read.
#[derive(Debug, PartialEq, Eq)]
pub enum Walked {
    /// All of it goes to the destination as it is, and nothing was added
    /// to `out`: the caller can write the read's own bytes.
    AsIs,
    /// What goes on was appended to `out`.
    Into,
}

/// Walks `data` frame by frame, appending what goes to the destination
/// (or saying it all goes as it is).
pub fn process<W>(
    dir: &mut Dir<W>,
    mut data: &[u8],
    out: &mut Vec<u8>,
    shared: &Shared,
    s: &Settings,
) -> Walked {
    if passing_through(dir, shared, s) {
        let n = whole_frames(dir, data, s);
        if n == data.len() && out.is_empty() {
            return Walked::AsIs;
        }
        out.extend_from_slice(&data[..n]);
        data = &data[n..];
    }
    while !data.is_empty() && !dir.failed {
        let used = if dir.cur.is_none() {
            take_header(dir, data, out, shared, s)
        } else {
            take_payload(dir, data, out, shared, s)
        };
        data = &data[used..];
    }
    Walked::Into
}

/// Between frames in passthrough, with nothing ordered: whole frames can
/// go on without being taken apart.
fn passing_through<W>(dir: &Dir<W>, shared: &Shared, s: &Settings) -> bool {
    matches!(s.mode, Mode::Relay { .. })
        && dir.at_boundary()
        && !dir.close_to_dst
        && !dir.failed
        && shared.current().is_none()
}

/// The usual read: whole frames that pass the rules as they are, counted
/// and copied on in one piece. Returns how many bytes of `data` they take;
/// the frame-by-frame walk handles the rest from the first frame that is
/// not whole, is a close (logged; what follows it is dropped), or breaks
/// a rule (a close with the reason).
fn whole_frames<W>(dir: &mut Dir<W>, data: &[u8], s: &Settings) -> usize {
    let (mut at, mut bytes, mut messages) = (0, 0, 0);
    while at < data.len() {
        let Ok(Some((h, n))) = Header::parse(&data[at..]) else {
            break;
        };
        let end = (at + n) as u64 + h.len;
        if h.opcode == OP_CLOSE || end > data.len() as u64 || check(dir, &h, s).is_err() {
            break;
        }
        if !h.is_control() {
            dir.in_message = !h.fin;
            bytes += h.len;
            messages += u64::from(h.fin);
        }
        at = end as usize;
    }
    s.stats.data_frames(dir.side.index(), bytes, messages);
    at
}

/// Collects header bytes; once the header is whole, starts its frame.
/// Returns how many bytes of `data` were used.
fn take_header<W>(
    dir: &mut Dir<W>,
    data: &[u8],
    out: &mut Vec<u8>,
    shared: &Shared,
    s: &Settings,
) -> usize {
    // The usual case: a whole header at the start of the burst, read where
    // it lies rather than collected first.
    if dir.hdr_len == 0 {
        if let Ok(Some((h, n))) = Header::parse(data) {
            begin_frame(dir, h, &data[..n], out, shared, s);
            return n;
        }
    }
    let take = (frame::MAX_HEADER - dir.hdr_len).min(data.len());
    dir.hdr[dir.hdr_len..dir.hdr_len + take].copy_from_slice(&data[..take]);
    let have = dir.hdr_len + take;
    let (h, n) = match Header::parse(&dir.hdr[..have]) {
        Ok(None) => {
            dir.hdr_len = have;
            return take;
        }
        Ok(Some(found)) => found,
        Err(e) => {
            // The header is refused: what was collected of it is dropped
            // with the rest of the source.
            dir.hdr_len = 0;
            fail(dir, shared, frame_error_text(e), out);
            return take;
        }
    };
    // Bytes copied past the header belong to the payload: not used yet.
    let used = n - dir.hdr_len;
    let raw = dir.hdr;
    dir.hdr_len = 0;
    begin_frame(dir, h, &raw[..n], out, shared, s);
    used
}

/// A whole header `raw` was read: check it, then start its frame (and end
/// it at once if it has no payload).
fn begin_frame<W>(
    dir: &mut Dir<W>,
    h: Header,
    raw: &[u8],
    out: &mut Vec<u8>,
    shared: &Shared,
    s: &Settings,
) {
    if let Err(reason) = check(dir, &h, s) {
        return fail(dir, shared, reason, out);
    }
    start_frame(dir, h, raw, out, s, shared);
    if !dir.failed && h.len == 0 {
        end_frame(dir, out, shared, s);
    }
}

/// Passes payload bytes of the current frame; ends it when complete.
fn take_payload<W>(
    dir: &mut Dir<W>,
    data: &[u8],
    out: &mut Vec<u8>,
    shared: &Shared,
    s: &Settings,
) -> usize {
    let k = (dir.remaining.min(data.len() as u64)) as usize;
    payload(dir, &data[..k], out, s);
    dir.remaining -= k as u64;
    dir.offset += k as u64;
    if dir.remaining == 0 {
        end_frame(dir, out, shared, s);
    }
    k
}

fn frame_error_text(e: FrameError) -> &'static str {
    match e {
        FrameError::ReservedOpcode(_) => "reserved opcode",
        FrameError::BadControl => "invalid control frame",
        FrameError::BadLength => "invalid payload length",
    }
}

/// RFC 6455 rules hpgate enforces on each leg.
fn check<W>(dir: &Dir<W>, h: &Header, s: &Settings) -> Result<(), &'static str> {
    match (dir.side, h.mask.is_some()) {
        (Side::Upstream, false) => return Err("client frames must be masked"),
        (Side::Downstream, true) => return Err("server frames must not be masked"),
        _ => {}
    }
    let data_start = matches!(h.opcode, OP_TEXT | OP_BINARY);
    if h.opcode == OP_CONT && !dir.in_message {
        return Err("continuation frame without a message");
    }
    if data_start && dir.in_message {
        return Err("new message before the previous one ended");
    }
    if !rsv_allowed(dir.side, h, data_start, s) {
        return Err("reserved bits set without a negotiated extension");
    }
    Ok(())
}

/// RSV1 only on a message's first frame, and only where deflate applies.
fn rsv_allowed(side: Side, h: &Header, data_start: bool, s: &Settings) -> bool {
    match &s.mode {
        Mode::Relay {
            other_extensions: true,
            ..
        } => true,
        Mode::Relay { deflate, .. } => h.rsv == 0 || (*deflate && h.rsv == RSV1 && data_start),
        // Offload: the client may compress; the app negotiated nothing.
        Mode::Offload { .. } => {
            h.rsv == 0 || (side == Side::Upstream && h.rsv == RSV1 && data_start)
        }
    }
}

/// The source broke the protocol: order a close (1002 toward it).
pub fn fail<W>(dir: &mut Dir<W>, shared: &Shared, reason: &'static str, out: &mut Vec<u8>) {
    dir.failed = true;
    let ConnTag { id, peer } = shared.conn;
    tracing::info!(
        conn = id,
        %peer,
        side = dir.side.source_name(),
        "WebSocket protocol error: {reason}"
    );
    shared.issue(Order::protocol_error(dir.side, reason));
    // Mid-frame, part of the frame is already forwarded and a close frame
    // cannot follow cleanly; between frames it can.
    if dir.cur.is_none() {
        dir.inject_order(shared, out);
    }
}

/// Offload decodes data frames toward the client, and compressed ones from it.
fn decoding<W>(dir: &Dir<W>, h: &Header, s: &Settings) -> bool {
    matches!(s.mode, Mode::Offload { .. })
        && !h.is_control()
        && (dir.side == Side::Downstream
            || dir.message.as_ref().is_some_and(|m| m.compressed)
            || h.rsv & RSV1 != 0)
}

fn start_frame<W>(
    dir: &mut Dir<W>,
    h: Header,
    raw: &[u8],
    out: &mut Vec<u8>,
    s: &Settings,
    shared: &Shared,
) {
    dir.cur = Some(h);
    dir.remaining = h.len;
    dir.offset = 0;
    dir.ctrl.clear();
    if !h.is_control() {
        dir.in_message = !h.fin;
    }
    if decoding(dir, &h, s) {
        if h.opcode != OP_CONT {
            dir.message = Some(Message {
                opcode: h.opcode,
                compressed: h.rsv & RSV1 != 0,
                data: Vec::new(),
            });
        }
        let size = dir.message.as_ref().map_or(0, |m| m.data.len() as u64) + h.len;
        if size > s.max_message {
            too_big(dir, shared, out);
        }
        return;
    }
    if dir.close_to_dst {
        return; // the destination already has our close: drop the rest
    }
    out.extend_from_slice(raw);
}

/// Offload: a message over the limit; 1009 toward the client.
pub fn too_big<W>(dir: &mut Dir<W>, shared: &Shared, out: &mut Vec<u8>) {
    dir.failed = true;
    shared.issue(Order::TOO_BIG);
    // Nothing of a decoded message was forwarded: the close goes out now.
    if dir.message.is_some() {
        dir.cur = None;
        dir.message = None;
        dir.inject_order(shared, out);
    }
}

fn payload<W>(dir: &mut Dir<W>, bytes: &[u8], out: &mut Vec<u8>, s: &Settings) {
    let Some(h) = dir.cur else { return };
    if h.is_control() {
        dir.ctrl.extend_from_slice(bytes);
    }
    if decoding(dir, &h, s) {
        let offset = dir.offset;
        if let Some(m) = dir.message.as_mut() {
            let start = m.data.len();
            m.data.extend_from_slice(bytes);
            if let Some(mask) = h.mask {
                frame::apply_mask(&mut m.data[start..], mask, offset);
            }
        }
        return;
    }
    if !dir.close_to_dst {
        out.extend_from_slice(bytes);
    }
}

fn end_frame<W>(dir: &mut Dir<W>, out: &mut Vec<u8>, shared: &Shared, s: &Settings) {
    let Some(h) = dir.cur.take() else { return };
    if !h.is_control() && !dir.close_to_dst {
        // A message ends with its final frame: counted once, there.
        s.stats
            .data_frames(dir.side.index(), h.len, u64::from(h.fin));
    }
    if h.opcode == OP_CLOSE && !dir.close_to_dst {
        // The close frame was forwarded as is; the destination now has a close.
        dir.close_to_dst = true;
        log_close(&dir.ctrl, h.mask);
    }
    if decoding(dir, &h, s) && h.fin {
        if let Some(m) = dir.message.take() {
            if !dir.close_to_dst {
                emit_message(dir, m, out, shared, s);
            }
        }
    }
    // A close order that arrived mid-frame goes out now, at the boundary.
    if !dir.close_to_dst && shared.current().is_some() {
        dir.inject_order(shared, out);
    }
}

fn log_close(payload: &[u8], mask: Option<[u8; 4]>) {
    let mut p = payload.to_vec();
    if let Some(mask) = mask {
        frame::apply_mask(&mut p, mask, 0);
    }
    if p.len() >= 2 {
        tracing::debug!(
            code = u16::from_be_bytes([p[0], p[1]]),
            "WebSocket close relayed"
        );
    }
}
