//! The Host rules of RFC 9112 section 3.2: an HTTP/1.1 request has exactly
//! one Host, its value is a valid authority, and an absolute-form target's
//! authority replaces it.
//!
//! Owns the check (400 before anything reaches the app) and the one
//! rewrite. The value ends up in `X-Forwarded-Host` and `Forwarded`, so
//! nothing that is not an authority may pass. Pure functions, no I/O.

use http::header::{self, HeaderValue};
use http::{HeaderMap, Uri, Version};

use super::charset::REG_NAME;
use super::error::ProxyError;

/// 400 for a missing (HTTP/1.1), repeated or malformed Host.
pub fn check(version: Version, headers: &HeaderMap) -> Result<(), ProxyError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => Err(ProxyError::BadRequest(
            "an HTTP/1.1 request needs a Host header",
        )),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(ProxyError::BadRequest("more than one Host header")),
        (Some(v), None) if !is_authority(v.as_bytes()) => Err(ProxyError::BadRequest(
            "the Host header is not a valid host[:port]",
        )),
        (Some(_), None) => Ok(()),
    }
}

/// An absolute-form target (`GET http://example.com/ HTTP/1.1`) names the
/// host; the Host header it came with is ignored (RFC 9112 section 3.2.2).
pub fn from_target(uri: &Uri, headers: &mut HeaderMap) -> Result<(), ProxyError> {
    let Some(auth) = uri.authority() else {
        return Ok(());
    };
    // Without any userinfo: the target's `user@` never reaches the app.
    let value = match auth.port() {
        Some(p) => format!("{}:{}", auth.host(), p.as_str()),
        None => auth.host().to_string(),
    };
    if !is_authority(value.as_bytes()) {
        return Err(ProxyError::BadRequest(
            "the request target's host is not a valid host[:port]",
        ));
    }
    let value = HeaderValue::from_str(&value)
        .map_err(|_| ProxyError::BadRequest("the request target's host cannot be forwarded"))?;
    headers.insert(header::HOST, value);
    Ok(())
}

/// `uri-host [ ":" port ]`: a reg-name or IPv4 address (unreserved,
/// percent-encoded and sub-delim characters) or a bracketed IPv6 literal,
/// then optional digits. No userinfo, no whitespace, not empty.
fn is_authority(v: &[u8]) -> bool {
    let (host, port) = match v.first() {
        Some(b'[') => match v.iter().position(|b| *b == b']') {
            Some(end) => {
                let literal = &v[1..end];
                let ok = !literal.is_empty()
                    && literal
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.');
                if !ok {
                    return false;
                }
                (&v[..0], &v[end + 1..])
            }
            None => return false,
        },
        _ => match v.iter().rposition(|b| *b == b':') {
            Some(i) => (&v[..i], &v[i..]),
            None => (v, &v[v.len()..]),
        },
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    let bracketed = v.first() == Some(&b'[');
    port_ok && (bracketed || (!host.is_empty() && reg_name(host)))
}

fn reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        let b = host[i];
        if b == b'%' {
            let hex = host.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !REG_NAME.has(b) {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        for ok in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:80",
            "a-b_c~d%20e",
            "x:",
        ] {
            assert!(is_authority(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "user@host",
            "host:port",
            "host:123456",
            "[::1",
            "[]",
            "[zz]",
            "a/b",
            "a\"b",
            "%zz",
            ":80",
            "host:80:80",
        ] {
            assert!(!is_authority(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn counts_and_versions() {
        let mut h = HeaderMap::new();
        assert!(check(Version::HTTP_11, &h).is_err());
        assert!(check(Version::HTTP_10, &h).is_ok());
        h.append(header::HOST, HeaderValue::from_static("a"));
        assert!(check(Version::HTTP_11, &h).is_ok());
        h.append(header::HOST, HeaderValue::from_static("a"));
        assert!(check(Version::HTTP_11, &h).is_err());
    }

    #[test]
    fn absolute_form_wins() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("spoofed"));
        let uri: Uri = "http://user@real.example:81/x".parse().unwrap();
        from_target(&uri, &mut h).unwrap();
        assert_eq!(h[header::HOST], "real.example:81");
    }
}
