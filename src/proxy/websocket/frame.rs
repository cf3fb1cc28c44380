//! WebSocket frame headers (RFC 6455 section 5.2): parse, build, mask.
//!
//! Only headers are decoded; payload bytes are the relay's business. Pure
//! functions, unit-tested with the RFC's examples.

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;

/// The RSV1 bit of `Header::rsv`: permessage-deflate's "compressed" flag.
pub const RSV1: u8 = 0b100;

/// Longest possible frame header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// RSV1..3 as the top three bits of the low nibble (0b100 = RSV1).
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("control frame longer than 125 bytes or fragmented")]
    BadControl,
    #[error("payload length has its most significant bit set")]
    BadLength,
}

impl Header {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }

    /// Parses a header from the front of `buf`: `Ok(None)` if more bytes
    /// are needed, else the header and its encoded size.
    pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, FrameError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let opcode = b0 & 0x0F;
        if matches!(opcode, 0x3..=0x7 | 0xB..=0xF) {
            return Err(FrameError::ReservedOpcode(opcode));
        }
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7F {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(b);
                if len >> 63 != 0 {
                    return Err(FrameError::BadLength);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            if buf.len() < at + 4 {
                return Ok(None);
            }
            let m = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
            at += 4;
            Some(m)
        } else {
            None
        };
        let h = Header {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x7,
            opcode,
            mask,
            len,
        };
        if h.is_control() && (!h.fin || h.len > 125) {
            return Err(FrameError::BadControl);
        }
        Ok(Some((h, at)))
    }

    /// Appends the encoded header to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push((u8::from(self.fin) << 7) | (self.rsv << 4) | self.opcode);
        let m = if self.mask.is_some() { 0x80 } else { 0 };
        match self.len {
            n if n < 126 => out.push(m | n as u8),
            n if n <= u64::from(u16::MAX) => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        if let Some(mask) = self.mask {
            out.extend_from_slice(&mask);
        }
    }
}

/// XORs `data` with `mask`, starting at payload offset `offset`.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    let shift = (offset % 4) as usize;
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[(i + shift) % 4];
    }
}

/// A whole frame: header plus payload (masked with `mask` if given).
pub fn build(opcode: u8, rsv: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let h = Header {
        fin: true,
        rsv,
        opcode,
        mask,
        len: payload.len() as u64,
    };
    let mut out = Vec::with_capacity(MAX_HEADER + payload.len());
    h.encode(&mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(m) = mask {
        apply_mask(&mut out[start..], m, 0);
    }
    out
}

/// A close frame with a status code and a reason (cut to fit 125 bytes).
pub fn close(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    let mut r = reason;
    while r.len() > 123 {
        let mut cut = 123;
        while !r.is_char_boundary(cut) {
            cut -= 1;
        }
        r = &r[..cut];
    }
    payload.extend_from_slice(r.as_bytes());
    build(OP_CLOSE, 0, &payload, mask)
}

/// A fresh masking key. Masks only need to be unpredictable to scripts in
/// browsers; hpgate's own frames to the app come from here.
pub fn new_mask() -> [u8; 4] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (h.finish() as u32).to_ne_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples() {
        // RFC 6455 5.7: unmasked "Hello", masked "Hello", 256-byte binary.
        let (h, n) = Header::parse(&[0x81, 0x05, 0x48, 0x65]).unwrap().unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.len, h.mask, n),
            (true, OP_TEXT, 5, None, 2)
        );
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = Header::parse(&masked).unwrap().unwrap();
        let mut p = masked[n..].to_vec();
        apply_mask(&mut p, h.mask.unwrap(), 0);
        assert_eq!(p, b"Hello");
        let (h, n) = Header::parse(&[0x82, 0x7E, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.len, n), (256, 4));
        // Fragmented "Hel" + "lo".
        let (h, _) = Header::parse(&[0x01, 0x03]).unwrap().unwrap();
        assert!(!h.fin && h.opcode == OP_TEXT);
    }

    #[test]
    fn round_trips_and_errors() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let f = build(OP_BINARY, 0b100, &vec![7u8; len], Some([1, 2, 3, 4]));
            let (h, n) = Header::parse(&f).unwrap().unwrap();
            assert_eq!((h.len as usize, h.rsv, f.len() - n), (len, 0b100, len));
        }
        assert!(Header::parse(&[0x81]).unwrap().is_none());
        assert!(Header::parse(&[0x81, 0xFE, 0x00]).unwrap().is_none());
        assert_eq!(
            Header::parse(&[0x83, 0x00]),
            Err(FrameError::ReservedOpcode(3))
        );
        assert_eq!(Header::parse(&[0x09, 0x00]), Err(FrameError::BadControl));
        assert_eq!(
            Header::parse(&[0x89, 0x7E, 0, 126]),
            Err(FrameError::BadControl)
        );
        let mut big = vec![0x82, 0x7F];
        big.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(Header::parse(&big), Err(FrameError::BadLength));
    }

    #[test]
    fn mask_offsets_continue() {
        let mut a = b"abcdefg".to_vec();
        let m = [9, 8, 7, 6];
        let mut whole = a.clone();
        apply_mask(&mut whole, m, 0);
        let (x, y) = a.split_at_mut(3);
        apply_mask(x, m, 0);
        apply_mask(y, m, 3);
        assert_eq!(a, whole);
    }

    #[test]
    fn close_frame_has_code_and_reason() {
        let f = close(1001, "going away", None);
        assert_eq!(&f[..4], &[0x88, 12, 0x03, 0xE9]);
        assert!(close(1000, &"é".repeat(100), None).len() <= 2 + 125);
    }
}
