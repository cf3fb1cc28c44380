//! The framing rule set: how a request head's Content-Length and
//! Transfer-Encoding lines decide where its body ends, and every way they
//! can be refused.
//!
//! Owns the one decision per case (docs/architecture.md has the table).
//! The scanner feeds it the raw values it collected; nothing else in
//! hpgate judges request framing. Pure functions, no I/O.

use crate::proxy::error::ProxyError;

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Fixed(u64),
    Chunked,
}

/// What the scanner saw of one head's framing lines.
#[derive(Debug, Default)]
pub struct Framing<'a> {
    pub http10: bool,
    /// Each Content-Length line's value, as sent.
    pub content_length: &'a [&'a [u8]],
    /// Each Transfer-Encoding line's value, as sent.
    pub transfer_encoding: &'a [&'a [u8]],
}

/// Decides the body of a request, or refuses it (RFC 9112 section 6).
pub fn decide(f: &Framing<'_>) -> Result<Body, ProxyError> {
    let (cl, te) = (f.content_length, f.transfer_encoding);
    if !cl.is_empty() && !te.is_empty() {
        return Err(ProxyError::BadRequest(
            "both Content-Length and Transfer-Encoding are present",
        ));
    }
    if cl.len() > 1 {
        return Err(ProxyError::BadRequest("Content-Length is repeated"));
    }
    if let Some(v) = cl.first() {
        return match content_length(v)? {
            0 => Ok(Body::None),
            n => Ok(Body::Fixed(n)),
        };
    }
    if te.is_empty() {
        return Ok(Body::None);
    }
    if f.http10 {
        // RFC 9112 section 6.1: the framing of such a request is faulty.
        return Err(ProxyError::BadRequest(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    transfer_encoding(te)
}

/// `1*DIGIT` with optional whitespace around it; nothing else.
fn content_length(v: &[u8]) -> Result<u64, ProxyError> {
    let v = trim(v);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(ProxyError::BadRequest("Content-Length is not a number"));
    }
    if v.len() > 18 {
        return Err(ProxyError::BadRequest("Content-Length is too large"));
    }
    Ok(v.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The codings of every Transfer-Encoding line, in order: exactly one
/// `chunked`, last; any other (well-formed) coding is 501.
fn transfer_encoding(lines: &[&[u8]]) -> Result<Body, ProxyError> {
    let codings = lines.iter().flat_map(|l| l.split(|b| *b == b','));
    let count = codings.clone().count();
    let mut chunked = 0;
    let mut other: Option<&[u8]> = None;
    for (i, raw) in codings.enumerate() {
        let c = trim(raw);
        let name = trim(c.split(|b| *b == b';').next().unwrap_or(c));
        if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) {
            return Err(ProxyError::BadRequest("Transfer-Encoding is malformed"));
        }
        if name.eq_ignore_ascii_case(b"chunked") {
            if c.len() != name.len() {
                return Err(ProxyError::BadRequest("chunked takes no parameters"));
            }
            chunked += 1;
            if i + 1 != count {
                return Err(ProxyError::BadRequest(
                    "Transfer-Encoding does not end with chunked",
                ));
            }
        } else {
            other = other.or(Some(name));
        }
    }
    if chunked == 0 {
        return Err(ProxyError::BadRequest(
            "Transfer-Encoding does not end with chunked",
        ));
    }
    match other {
        Some(name) => Err(ProxyError::CodingNotImplemented(
            String::from_utf8_lossy(name).to_ascii_lowercase(),
        )),
        None => Ok(Body::Chunked),
    }
}

/// RFC 9110 section 5.6.2 token characters.
pub fn is_tchar(b: u8) -> bool {
    crate::proxy::charset::TCHAR.has(b)
}

/// Which framing-relevant field a header line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Other,
    ContentLength,
    TransferEncoding,
    Upgrade,
}

/// What a header name is to the framing rules: `kept` holds its first
/// bytes, `len` its whole length (a longer name is none of these). The
/// scanner and its shortcut (`plain_head.rs`) both ask this.
pub fn classify(kept: &[u8], len: usize) -> Kind {
    if len != kept.len() {
        return Kind::Other;
    }
    if kept.eq_ignore_ascii_case(b"content-length") {
        Kind::ContentLength
    } else if kept.eq_ignore_ascii_case(b"transfer-encoding") {
        Kind::TransferEncoding
    } else if kept.eq_ignore_ascii_case(b"upgrade") {
        Kind::Upgrade
    } else {
        Kind::Other
    }
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn te(lines: &[&str]) -> Result<Body, u16> {
        let v: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        decide(&Framing {
            transfer_encoding: &v,
            ..Framing::default()
        })
        .map_err(|e| e.status().as_u16())
    }

    fn cl(lines: &[&str]) -> Result<Body, u16> {
        let v: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        decide(&Framing {
            content_length: &v,
            ..Framing::default()
        })
        .map_err(|e| e.status().as_u16())
    }

    #[test]
    fn content_length_cases() {
        assert_eq!(cl(&["5"]), Ok(Body::Fixed(5)));
        assert_eq!(cl(&[&format!("{}31", " ".repeat(70))]), Ok(Body::Fixed(31)));
        assert_eq!(cl(&["0"]), Ok(Body::None));
        for bad in [
            &["+5"][..],
            &["5, 5"],
            &["abc"],
            &[""],
            &["5", "5"],
            &["99999999999999999999"],
        ] {
            assert_eq!(cl(bad), Err(400), "{bad:?}");
        }
    }

    #[test]
    fn transfer_encoding_cases() {
        assert_eq!(te(&["chunked"]), Ok(Body::Chunked));
        assert_eq!(te(&["Chunked "]), Ok(Body::Chunked));
        for (v, status) in [
            (&["chunked, chunked"][..], 400),
            (&["chunked", "chunked"], 400),
            (&["chunked, identity"], 400),
            (&["identity"], 400),
            (&["gzip"], 400),
            (&["xchunked"], 400),
            (&["chunked,"], 400),
            (&["gzip,,chunked"], 400),
            (&["chunked;a=1"], 400),
            (&["gz\u{1}ip, chunked"], 400),
            (&["gzip, chunked"], 501),
            (&["gzip", "chunked"], 501),
            (&["x-custom;q=1, chunked"], 501),
        ] {
            assert_eq!(te(v), Err(status), "{v:?}");
        }
    }

    #[test]
    fn mixed_and_old_versions() {
        let v: Vec<&[u8]> = vec![b"chunked"];
        let both = Framing {
            content_length: &[b"3"],
            transfer_encoding: &v,
            http10: false,
        };
        assert_eq!(decide(&both).map_err(|e| e.status().as_u16()), Err(400));
        let old = Framing {
            transfer_encoding: &v,
            http10: true,
            ..Framing::default()
        };
        assert_eq!(decide(&old).map_err(|e| e.status().as_u16()), Err(400));
    }
}
