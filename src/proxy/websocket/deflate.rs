//! permessage-deflate (RFC 7692) for the `offload` mode: negotiating with
//! the client, and the per-message codec over flate2 (zlib-rs backend,
//! which honours window sizes below 15 bits).
//!
//! Owns: which client offers hpgate can honour, the answer it sends, and
//! compressing/inflating whole messages with the negotiated context
//! takeover and window rules. The inflater is bounded: a message that
//! inflates past the limit is refused (decompression bombs).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::handshake::{Offer, DEFLATE};

/// The bytes a sync flush ends with; the sender drops them (RFC 7692 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What was agreed with the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: u8,
}

impl Agreement {
    /// The Sec-WebSocket-Extensions answer for the client.
    pub fn response(&self, offered_server_bits: bool) -> String {
        let mut s = DEFLATE.to_string();
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if offered_server_bits {
            s.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        s
    }
}

/// Picks the first permessage-deflate offer hpgate can honour.
/// Returns the agreement and whether the offer named server_max_window_bits.
pub fn negotiate(offers: &[Offer]) -> Option<(Agreement, bool)> {
    offers.iter().filter(|o| o.name == DEFLATE).find_map(accept)
}

fn accept(offer: &Offer) -> Option<(Agreement, bool)> {
    let mut a = Agreement {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut server_bits = false;
    for (name, value) in &offer.params {
        if seen.contains(&name.as_str()) {
            return None; // RFC 7692 section 7: a repeated parameter voids the offer
        }
        seen.push(name);
        match (name.as_str(), value.as_deref()) {
            ("server_no_context_takeover", None) => a.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => a.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                let bits = window_bits(v)?;
                // zlib cannot produce an 8-bit window: decline rather than lie.
                if bits == 8 {
                    return None;
                }
                a.server_max_window_bits = bits;
                server_bits = true;
            }
            // The client may limit its own window; any size inflates with 15 bits.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
    }
    Some((a, server_bits))
}

fn window_bits(v: &str) -> Option<u8> {
    let ok = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0');
    let bits: u8 = v.parse().ok().filter(|_| ok)?;
    (8..=15).contains(&bits).then_some(bits)
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message inflates past the limit of {0} bytes")]
    TooBig(u64),
    #[error("invalid compressed data: {0}")]
    Corrupt(String),
}

/// hpgate's compressor toward the client and inflater from it.
pub struct Codec {
    agreement: Agreement,
    compress: Compress,
    decompress: Decompress,
}

impl Codec {
    pub fn new(agreement: Agreement, level: u32) -> Codec {
        Codec {
            agreement,
            compress: Compress::new_with_window_bits(
                Compression::new(level),
                false,
                agreement.server_max_window_bits,
            ),
            decompress: Decompress::new(false),
        }
    }

    /// Compresses one whole message (RSV1 goes on its first frame).
    pub fn deflate(&mut self, input: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let start = self.compress.total_in();
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let used = (self.compress.total_in() - start) as usize;
            self.compress
                .compress_vec(&input[used..], &mut out, FlushCompress::Sync)
                .map_err(|e| CodecError::Corrupt(e.to_string()))?;
            let used = (self.compress.total_in() - start) as usize;
            // A sync flush is complete once it leaves output space unused.
            if used == input.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.is_empty() {
            // Nothing was left to flush (an empty message with context
            // takeover): one empty fixed block (RFC 7692 section 7.2.3.6),
            // since an empty payload plus the tail does not inflate.
            out.push(0x00);
        }
        if self.agreement.server_no_context_takeover {
            self.compress.reset();
        }
        Ok(out)
    }

    /// Inflates one whole message, refusing output past `limit` bytes.
    pub fn inflate(&mut self, input: &[u8], limit: u64) -> Result<Vec<u8>, CodecError> {
        let mut out: Vec<u8> = Vec::with_capacity((input.len() * 4).min(limit as usize) + 64);
        let start_out = self.decompress.total_out();
        for (part, last) in [(input, false), (&TAIL[..], true)] {
            let part_start = self.decompress.total_in();
            loop {
                let used = (self.decompress.total_in() - part_start) as usize;
                if used >= part.len() && !last {
                    break;
                }
                if out.capacity() - out.len() < 1024 {
                    out.reserve(out.capacity().max(4096));
                }
                let before = (self.decompress.total_in(), self.decompress.total_out());
                let status = self
                    .decompress
                    .decompress_vec(&part[used..], &mut out, FlushDecompress::Sync)
                    .map_err(|e| CodecError::Corrupt(e.to_string()))?;
                if self.decompress.total_out() - start_out > limit {
                    return Err(CodecError::TooBig(limit));
                }
                let progressed =
                    (self.decompress.total_in(), self.decompress.total_out()) != before;
                let used = (self.decompress.total_in() - part_start) as usize;
                if status == Status::StreamEnd
                    || (!progressed && out.len() < out.capacity())
                    || (last && used >= part.len() && out.len() < out.capacity())
                {
                    break;
                }
            }
        }
        if self.agreement.client_no_context_takeover {
            self.decompress.reset(false);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(params: &[(&str, Option<&str>)]) -> Offer {
        Offer {
            name: DEFLATE.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect(),
        }
    }

    fn agreement(server_nct: bool, client_nct: bool) -> Agreement {
        Agreement {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: client_nct,
            server_max_window_bits: 15,
        }
    }

    #[test]
    fn rfc_7692_hello_examples() {
        // 7.2.3.1: "Hello" as one compressed message.
        let mut c = Codec::new(agreement(false, false), 6);
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(c.inflate(&hello, 1024).unwrap(), b"Hello");
        // 7.2.3.2: the same message again, using the shared window.
        assert_eq!(
            c.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], 1024).unwrap(),
            b"Hello"
        );
        // 7.2.3.3: a block with no compression.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        let mut c2 = Codec::new(agreement(false, false), 6);
        assert_eq!(c2.inflate(&stored, 1024).unwrap(), b"Hello");
        // And what hpgate sends for "Hello" is the RFC's first example.
        let mut d = Codec::new(agreement(false, false), 6);
        assert_eq!(d.deflate(b"Hello").unwrap(), hello);
    }

    #[test]
    fn context_takeover_on_and_off() {
        let text = b"the same words again and again and again".repeat(4);
        let mut with = Codec::new(agreement(false, false), 6);
        let first = with.deflate(&text).unwrap();
        let second = with.deflate(&text).unwrap();
        assert!(second.len() < first.len(), "takeover reuses the window");
        let mut without = Codec::new(agreement(true, false), 6);
        assert_eq!(
            without.deflate(&text).unwrap(),
            without.deflate(&text).unwrap()
        );
        // A receiver with its own takeover state decodes both streams.
        let mut rx = Codec::new(agreement(false, false), 6);
        assert_eq!(rx.inflate(&first, 1 << 20).unwrap(), text);
        assert_eq!(rx.inflate(&second, 1 << 20).unwrap(), text);
    }

    #[test]
    fn bombs_are_refused() {
        let mut tx = Codec::new(agreement(false, false), 9);
        let bomb = tx.deflate(&vec![0u8; 10 << 20]).unwrap();
        assert!(bomb.len() < 20_000);
        let mut rx = Codec::new(agreement(false, false), 6);
        assert!(matches!(
            rx.inflate(&bomb, 1 << 20),
            Err(CodecError::TooBig(_))
        ));
        assert!(rx.inflate(&[0xff, 0xff, 0xff], 1024).is_err());
    }

    #[test]
    fn empty_message_after_another_round_trips() {
        // Found by the deflate fuzz target: with context takeover the
        // compressor has nothing left to flush for an empty message, and an
        // empty payload plus the tail is not a valid block.
        let mut tx = Codec::new(agreement(false, false), 6);
        let mut rx = Codec::new(agreement(false, false), 6);
        for msg in [&b"abc"[..], b"", b"", b"abc"] {
            let z = tx.deflate(msg).unwrap();
            assert!(!z.is_empty(), "an empty payload for {msg:?}");
            assert_eq!(rx.inflate(&z, 1024).unwrap(), msg);
        }
    }

    #[test]
    fn large_and_empty_round_trip() {
        let mut tx = Codec::new(agreement(false, false), 1);
        let mut rx = Codec::new(agreement(false, false), 6);
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for msg in [&b""[..], &big[..], b"x"] {
            let z = tx.deflate(msg).unwrap();
            assert_eq!(rx.inflate(&z, 1 << 23).unwrap(), msg);
        }
    }

    #[test]
    fn negotiation() {
        let (a, bits) = negotiate(&[offer(&[("client_max_window_bits", None)])]).unwrap();
        assert_eq!(a, agreement(false, false));
        assert!(!bits);
        assert_eq!(a.response(bits), "permessage-deflate");
        let (a, bits) = negotiate(&[offer(&[
            ("server_no_context_takeover", None),
            ("client_no_context_takeover", None),
            ("server_max_window_bits", Some("10")),
        ])])
        .unwrap();
        assert_eq!(
            a.response(bits),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
        );
        // Declined: 8-bit server window, unknown or repeated parameter, bad values;
        // the next acceptable offer is taken instead.
        assert!(negotiate(&[offer(&[("server_max_window_bits", Some("8"))])]).is_none());
        assert!(negotiate(&[offer(&[("x", None)])]).is_none());
        assert!(negotiate(&[offer(&[
            ("server_no_context_takeover", None),
            ("server_no_context_takeover", None)
        ])])
        .is_none());
        assert!(negotiate(&[offer(&[("server_max_window_bits", Some("16"))])]).is_none());
        assert!(negotiate(&[offer(&[("server_max_window_bits", None)])]).is_none());
        let two = [offer(&[("server_max_window_bits", Some("8"))]), offer(&[])];
        assert_eq!(negotiate(&two).unwrap().0, agreement(false, false));
    }

    #[test]
    fn small_window_output_inflates() {
        let a = Agreement {
            server_max_window_bits: 9,
            ..agreement(false, false)
        };
        let mut tx = Codec::new(a, 6);
        let mut rx = Codec::new(agreement(false, false), 6);
        let msg = b"abcdefghij".repeat(500);
        let z = tx.deflate(&msg).unwrap();
        assert_eq!(rx.inflate(&z, 1 << 20).unwrap(), msg);
    }
}
