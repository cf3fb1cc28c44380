//! Byte classes of the HTTP grammar as lookup tables: one load per byte
//! rather than a search through a list of punctuation (these run over
//! every request's header names and Host).
//!
//! Owns the tables and their definitions; must not know where they are
//! used.

/// A set of bytes.
pub struct Set([bool; 256]);

/// What a table starts from, before its own bytes are added or taken out.
enum Base {
    /// ASCII letters and digits.
    Alphanumeric,
    /// HTAB, SP and visible ASCII.
    Visible,
}

impl Set {
    /// `base`, with each of `bytes` then set to `to`.
    const fn build(base: Base, bytes: &[u8], to: bool) -> Set {
        let mut set = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            set[b] = match base {
                Base::Alphanumeric => c.is_ascii_alphanumeric(),
                Base::Visible => c == 0x09 || (c >= 0x20 && c < 0x7f),
            };
            b += 1;
        }
        let mut i = 0;
        while i < bytes.len() {
            set[bytes[i] as usize] = to;
            i += 1;
        }
        Set(set)
    }

    pub fn has(&self, b: u8) -> bool {
        self.0[usize::from(b)]
    }
}

/// RFC 9110 section 5.6.2 `tchar`.
const TCHAR_PUNCTUATION: &[u8] = b"!#$%&'*+-.^_`|~";
pub static TCHAR: Set = Set::build(Base::Alphanumeric, TCHAR_PUNCTUATION, true);

/// RFC 3986 `unreserved` and `sub-delims`: a reg-name's bytes, less the
/// percent-encoded ones (`host.rs` reads `%XX` itself).
const REG_NAME_PUNCTUATION: &[u8] = b"-._~!$&'()*+,;=";
pub static REG_NAME: Set = Set::build(Base::Alphanumeric, REG_NAME_PUNCTUATION, true);

/// What `HeaderValue::to_str` accepts: HTAB, SP and visible ASCII.
pub static VISIBLE: Set = Set::build(Base::Visible, b"", true);

/// Whether every byte of `value` is in `VISIBLE`: what `HeaderValue::to_str`
/// accepts, checked without building a `str`.
pub fn visible(value: &[u8]) -> bool {
    value.iter().all(|c| VISIBLE.has(*c))
}

/// RFC 9110 section 5.6.4 `qdtext`, ASCII only: what a quoted string
/// holds with no escaping.
pub static QDTEXT: Set = Set::build(Base::Visible, b"\"\\", false);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_hold_exactly_their_definitions() {
        for b in 0..=255u8 {
            let tchar = b.is_ascii_alphanumeric() || TCHAR_PUNCTUATION.contains(&b);
            assert_eq!(TCHAR.has(b), tchar, "{b:#x}");
            let reg = b.is_ascii_alphanumeric() || REG_NAME_PUNCTUATION.contains(&b);
            assert_eq!(REG_NAME.has(b), reg, "{b:#x}");
        }
        for b in 0..=255u8 {
            let visible = b == b'\t' || (b' '..=b'~').contains(&b);
            assert_eq!(VISIBLE.has(b), visible, "{b:#x}");
            assert_eq!(QDTEXT.has(b), visible && b != b'"' && b != b'\\', "{b:#x}");
        }
        assert!(!TCHAR.has(b':') && !REG_NAME.has(b'%') && !REG_NAME.has(0x80));
    }
}
