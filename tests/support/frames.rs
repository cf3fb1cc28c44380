//! Raw WebSocket frames for tests that look at the wire: read one frame as
//! hpgate sent it, send one masked client frame of any length.
#![allow(dead_code)]

use std::io::{Read, Write};

/// Reads one frame: (first byte: FIN, RSV and opcode bits; payload).
/// Frames toward a client are never masked (RFC 6455 5.1): asserted.
pub fn read_frame(r: &mut impl Read) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).unwrap();
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    assert_eq!(h[1] & 0x80, 0, "frames to the client are unmasked");
    let mut p = vec![0u8; len];
    r.read_exact(&mut p).unwrap();
    (h[0], p)
}

/// One masked client frame (`first`: FIN, RSV and opcode bits), with the
/// length in the shortest of the three encodings.
pub fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Sends one masked client frame.
pub fn send_masked(mut w: impl Write, first: u8, payload: &[u8]) {
    w.write_all(&masked_frame(first, payload)).unwrap();
}
