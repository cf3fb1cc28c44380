//! One direction's state: where in the frame stream it is, and what its
//! destination has been sent.

use super::super::deflate::Codec;
use super::super::frame::{self, Header};
use super::order::{Order, Shared};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Frames from the client, written to the app.
    Upstream,
    /// Frames from the app, written to the client.
    Downstream,
}

impl Side {
    /// Who sends this direction's frames, for log lines.
    pub fn source_name(self) -> &'static str {
        match self {
            Side::Upstream => "client",
            Side::Downstream => "app",
        }
    }

    /// The direction's index in the WebSocket metrics.
    pub fn index(self) -> usize {
        match self {
            Side::Upstream => 0,
            Side::Downstream => 1,
        }
    }
}

/// Offload: a data message being collected to be re-framed.
pub struct Message {
    /// `OP_TEXT` or `OP_BINARY`, from the first frame.
    pub opcode: u8,
    /// RSV1 was set on the first frame: `data` is deflated.
    pub compressed: bool,
    /// Unmasked payload so far.
    pub data: Vec<u8>,
}

pub struct Dir<W> {
    pub side: Side,
    pub dst: W,
    /// A header being collected across reads.
    pub hdr: [u8; frame::MAX_HEADER],
    pub hdr_len: usize,
    /// The frame whose payload is passing, if any.
    pub cur: Option<Header>,
    pub remaining: u64,
    pub offset: u64,
    /// A data message is in progress (a non-final data frame was seen).
    pub in_message: bool,
    /// Control payload collected (close codes are read from it).
    pub ctrl: Vec<u8>,
    /// Offload: the message being decoded.
    pub message: Option<Message>,
    /// Boxed: most connections never compress, and this keeps the
    /// per-connection future small.
    pub codec: Option<Box<Codec>>,
    /// The destination has a close frame: drop what follows.
    pub close_to_dst: bool,
    /// The source broke the protocol: ignore the rest of it.
    pub failed: bool,
}

impl<W> Dir<W> {
    pub fn new(side: Side, dst: W, codec: Option<Box<Codec>>) -> Dir<W> {
        Dir {
            side,
            dst,
            hdr: [0; frame::MAX_HEADER],
            hdr_len: 0,
            cur: None,
            remaining: 0,
            offset: 0,
            in_message: false,
            ctrl: Vec::new(),
            message: None,
            codec,
            close_to_dst: false,
            failed: false,
        }
    }

    /// Between frames: a frame of hpgate's own can go out cleanly.
    pub fn at_boundary(&self) -> bool {
        self.cur.is_none() && self.hdr_len == 0
    }

    /// Client-to-app frames are masked (RFC 6455 5.3).
    pub fn mask(&self) -> Option<[u8; 4]> {
        (self.side == Side::Upstream).then(frame::new_mask)
    }

    /// Appends the current order's close frame, if there is an order and
    /// the destination has no close yet: it gets one, whoever sent it.
    pub fn inject_order(&mut self, shared: &Shared, out: &mut Vec<u8>) {
        if self.close_to_dst {
            return;
        }
        if let Some(o) = shared.current() {
            out.extend_from_slice(&self.close_frame(&o));
            self.close_to_dst = true;
        }
    }

    fn close_frame(&self, o: &Order) -> Vec<u8> {
        frame::close(o.code_toward(self.side), o.reason, self.mask())
    }
}
