//! Byte classes of the HTTP grammar as lookup tables: one load per byte
//! rather than a search through a list of punctuation (these run over
//! every request's header names and Host).
//!
//! Owns the tables and their definitions; must not know where they are
//! used.

/// A set of bytes.
pub struct Set([bool; 256]);

impl Set {
    /// ASCII letters and digits, and `extra`.
    const fn alphanumeric_and(extra: &[u8]) -> Set {
        let mut set = [false; 256];
        let mut b = 0;
        while b < 256 {
            set[b] = (b as u8).is_ascii_alphanumeric();
            b += 1;
        }
        let mut i = 0;
        while i < extra.len() {
            set[extra[i] as usize] = true;
            i += 1;
        }
        Set(set)
    }

    /// HTAB, SP and visible ASCII, less `out`.
    const fn visible_less(out: &[u8]) -> Set {
        let mut set = [false; 256];
        let mut b = 0;
        while b < 256 {
            set[b] = b == 0x09 || (b >= 0x20 && b < 0x7f);
            b += 1;
        }
        let mut i = 0;
        while i < out.len() {
            set[out[i] as usize] = false;
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
pub static TCHAR: Set = Set::alphanumeric_and(TCHAR_PUNCTUATION);

/// RFC 3986 `unreserved` and `sub-delims`: a reg-name's bytes, less the
/// percent-encoded ones (`host.rs` reads `%XX` itself).
const REG_NAME_PUNCTUATION: &[u8] = b"-._~!$&'()*+,;=";
pub static REG_NAME: Set = Set::alphanumeric_and(REG_NAME_PUNCTUATION);

/// RFC 9110 section 5.6.4 `qdtext`, ASCII only: what a quoted string
/// holds with no escaping.
pub static QDTEXT: Set = Set::visible_less(b"\"\\");

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
            assert_eq!(QDTEXT.has(b), visible && b != b'"' && b != b'\\', "{b:#x}");
        }
        assert!(!TCHAR.has(b':') && !REG_NAME.has(b'%') && !REG_NAME.has(0x80));
    }
}
