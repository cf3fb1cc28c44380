//! The chunked transfer coding of an app's response (RFC 9112 section 7.1),
//! decoded in place: data comes out as zero-copy slices of the read buffer;
//! chunk sizes, extensions and trailers are checked and consumed.
//!
//! Strict where a lenient reading could frame the body differently from
//! the app: every line ends in CRLF, a size is 1 to 16 hex digits.
//! Trailer fields are read and dropped (hpgate forwards none, as its
//! hyper path does for clients that did not ask with `TE: trailers`).

use bytes::{Buf, Bytes, BytesMut};

/// How many bytes of chunk extensions and trailer lines are read at most.
const MAX_CONTROL: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct ChunkError(&'static str);

#[derive(Debug, Clone, Copy)]
enum State {
    /// In a chunk-size line: the size so far and its digit count.
    Size {
        size: u64,
        digits: u32,
    },
    /// After the size, in the chunk extensions.
    Ext {
        size: u64,
    },
    /// The size line's CR was read.
    SizeLf {
        size: u64,
    },
    /// This many data bytes remain in the chunk.
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section: bytes on the current line.
    Trailer {
        line: usize,
    },
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// What the decoder made of the buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Data(Bytes),
    /// The buffer is used up before the body's end: read more.
    More,
    End,
}

#[derive(Debug)]
pub struct Chunked {
    state: State,
    /// Extension and trailer bytes read so far.
    control: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size { size: 0, digits: 0 },
            control: 0,
        }
    }
}

impl Chunked {
    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Decodes from the front of `buf`, consuming what it used.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        loop {
            if let State::Done = self.state {
                return Ok(Decoded::End);
            }
            if buf.is_empty() {
                return Ok(Decoded::More);
            }
            if let State::Data(left) = self.state {
                let n = (left as usize).min(buf.len());
                let rest = left - n as u64;
                self.state = if rest == 0 {
                    State::DataCr
                } else {
                    State::Data(rest)
                };
                return Ok(Decoded::Data(buf.split_to(n).freeze()));
            }
            let b = buf[0];
            buf.advance(1);
            self.state = self.step(b)?;
        }
    }

    fn step(&mut self, b: u8) -> Result<State, ChunkError> {
        Ok(match (self.state, b) {
            (State::Size { size, digits }, _) if b.is_ascii_hexdigit() => {
                if digits == 16 {
                    return Err(ChunkError("a chunk size over 16 hex digits"));
                }
                let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                State::Size {
                    size: size << 4 | d,
                    digits: digits + 1,
                }
            }
            (State::Size { digits: 0, .. }, _) => return Err(ChunkError("no chunk size")),
            (State::Size { size, .. }, b'\r') => State::SizeLf { size },
            (State::Size { size, .. }, b';' | b' ' | b'\t') => State::Ext { size },
            (State::Ext { size }, b'\r') => State::SizeLf { size },
            (State::Ext { .. }, b'\n') => return Err(ChunkError("a bare LF")),
            (State::Ext { size }, _) => {
                self.count()?;
                State::Ext { size }
            }
            (State::SizeLf { size: 0 }, b'\n') => State::Trailer { line: 0 },
            (State::SizeLf { size }, b'\n') => State::Data(size),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size { size: 0, digits: 0 },
            (State::Trailer { line }, b'\r') => State::TrailerLf { empty: line == 0 },
            (State::Trailer { .. }, b'\n') => return Err(ChunkError("a bare LF")),
            (State::Trailer { line }, _) => {
                self.count()?;
                State::Trailer { line: line + 1 }
            }
            (State::TrailerLf { empty: true }, b'\n') => State::Done,
            (State::TrailerLf { empty: false }, b'\n') => State::Trailer { line: 0 },
            (State::SizeLf { .. } | State::DataLf | State::TrailerLf { .. }, _) => {
                return Err(ChunkError("a CR not followed by LF"))
            }
            (State::DataCr, _) => return Err(ChunkError("chunk data longer than its size")),
            (State::Size { .. }, _) => return Err(ChunkError("a bad character in a chunk size")),
            (State::Data(_) | State::Done, _) => self.state,
        })
    }

    fn count(&mut self) -> Result<(), ChunkError> {
        self.control += 1;
        if self.control > MAX_CONTROL {
            return Err(ChunkError("over 64 KiB of chunk extensions and trailers"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `step` bytes: the data and whether
    /// the body ended, or the error.
    fn decode(wire: &[u8], step: usize) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut c = Chunked::default();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        for piece in wire.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match c.decode(&mut buf)? {
                    Decoded::Data(d) => data.extend_from_slice(&d),
                    Decoded::More => break,
                    Decoded::End => return Ok((data, true)),
                }
            }
        }
        Ok((data, false))
    }

    #[test]
    fn decodes_in_any_split() {
        let wire = b"5\r\nhello\r\n1;ext=\"a\"\r\n \r\n6\r\nworld!\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..wire.len() {
            let (data, ended) = decode(wire, step).unwrap();
            assert_eq!(data, b"hello world!", "step {step}");
            assert!(ended, "step {step}");
        }
        let (data, ended) = decode(b"A\r\n0123456789\r\n0\r\n\r\n", 3).unwrap();
        assert_eq!(data.len(), 10);
        assert!(ended);
    }

    #[test]
    fn stops_at_the_end_and_leaves_the_rest() {
        let mut c = Chunked::default();
        let mut buf = BytesMut::from(&b"0\r\n\r\nHTTP/1.1 200 OK"[..]);
        assert_eq!(c.decode(&mut buf).unwrap(), Decoded::End);
        assert!(c.is_done());
        assert_eq!(&buf[..], b"HTTP/1.1 200 OK");
    }

    #[test]
    fn refuses_what_could_be_framed_two_ways() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"\r\nhello\r\n",
            b"-5\r\nhello\r\n",
            b"0x5\r\nhello\r\n",
            b"11111111111111111\r\n",
            b"0\r\nX: 1\nY: 2\r\n\r\n",
            b"0\r\n\r\r",
            b"5;a\nb\r\nhello\r\n",
        ] {
            assert!(
                decode(bad, 1).is_err() && decode(bad, bad.len()).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn extensions_and_trailers_are_bounded() {
        let mut wire = b"1;".to_vec();
        wire.extend(std::iter::repeat_n(b'a', MAX_CONTROL + 1));
        assert!(decode(&wire, 4096).is_err());
    }
}
