//! The WebSocket opening handshake as the gateway sees it (RFC 6455
//! section 4): validating the client's request and the extension header
//! rewriting each compression mode needs.
//!
//! Pure functions over headers; no I/O.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode, Version};

/// Headers from RFC 6455 and RFC 7692 by name.
pub const SEC_KEY: &str = "sec-websocket-key";
pub const SEC_VERSION: &str = "sec-websocket-version";
pub const SEC_EXTENSIONS: &str = "sec-websocket-extensions";

/// True for a request that asks for a WebSocket (any validity).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
        && has_token(headers, header::CONNECTION, "upgrade")
}

pub fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A rejected handshake: status, reason, and whether to advertise version 13.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub reason: &'static str,
}

/// Checks the client's handshake the way RFC 6455 section 4.2.1 asks.
pub fn validate<B>(req: &Request<B>) -> Result<(), Rejection> {
    let bad = |reason| Rejection {
        status: StatusCode::BAD_REQUEST,
        reason,
    };
    if req.method() != Method::GET {
        return Err(bad("a WebSocket handshake must be a GET"));
    }
    if req.version() != Version::HTTP_11 {
        return Err(bad("a WebSocket handshake needs HTTP/1.1"));
    }
    let h = req.headers();
    match h.get(SEC_VERSION).map(HeaderValue::as_bytes) {
        Some(b"13") => {}
        _ => {
            return Err(Rejection {
                status: StatusCode::UPGRADE_REQUIRED,
                reason: "unsupported Sec-WebSocket-Version; this server speaks version 13",
            })
        }
    }
    let keys: Vec<&HeaderValue> = h.get_all(SEC_KEY).iter().collect();
    let valid_key = keys.len() == 1 && decoded_len(keys[0].as_bytes()) == Some(16);
    if !valid_key {
        return Err(bad(
            "Sec-WebSocket-Key must be the base64 encoding of 16 bytes",
        ));
    }
    Ok(())
}

/// Length of the bytes a strict base64 string decodes to.
fn decoded_len(s: &[u8]) -> Option<usize> {
    if s.len() % 4 != 0 || s.is_empty() {
        return None;
    }
    let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &s[..s.len() - pad];
    let ok = body
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/');
    ok.then_some(s.len() / 4 * 3 - pad)
}

/// One extension offer: its name and the raw parameter strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub name: String,
    pub params: Vec<(String, Option<String>)>,
}

/// Parses Sec-WebSocket-Extensions (all header lines, in order).
pub fn parse_extensions(h: &HeaderMap) -> Vec<Offer> {
    h.get_all(SEC_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|offer| {
            let mut parts = offer.split(';').map(str::trim);
            let name = parts.next().filter(|n| !n.is_empty())?.to_ascii_lowercase();
            let params = parts
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (
                        k.trim().to_ascii_lowercase(),
                        Some(v.trim().trim_matches('"').to_string()),
                    ),
                    None => (p.to_ascii_lowercase(), None),
                })
                .collect();
            Some(Offer { name, params })
        })
        .collect()
}

pub fn render_extensions(offers: &[Offer]) -> String {
    offers
        .iter()
        .map(|o| {
            let mut s = o.name.clone();
            for (k, v) in &o.params {
                s.push_str("; ");
                s.push_str(k);
                if let Some(v) = v {
                    s.push('=');
                    s.push_str(v);
                }
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub const DEFLATE: &str = "permessage-deflate";

/// Removes every permessage-deflate offer, keeping other extensions.
pub fn remove_deflate(h: &mut HeaderMap) {
    let kept: Vec<Offer> = parse_extensions(h)
        .into_iter()
        .filter(|o| o.name != DEFLATE)
        .collect();
    h.remove(SEC_EXTENSIONS);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&render_extensions(&kept)) {
            h.insert(SEC_EXTENSIONS, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/ws");
        for (k, v) in pairs {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    const GOOD: &[(&str, &str)] = &[
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn validates_rfc_example() {
        let r = req(GOOD);
        assert!(is_upgrade(r.headers()));
        assert_eq!(validate(&r), Ok(()));
    }

    #[test]
    fn rejects_bad_key_and_version() {
        let mut bad_key = GOOD.to_vec();
        bad_key[3] = ("sec-websocket-key", "c2hvcnQ=");
        assert_eq!(
            validate(&req(&bad_key)).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let mut bad_ver = GOOD.to_vec();
        bad_ver[2] = ("sec-websocket-version", "8");
        assert_eq!(
            validate(&req(&bad_ver)).unwrap_err().status,
            StatusCode::UPGRADE_REQUIRED
        );
        assert!(decoded_len(b"!!!!").is_none());
    }

    #[test]
    fn removes_only_deflate() {
        let mut h = HeaderMap::new();
        h.append(
            SEC_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate; client_max_window_bits, x-foo; a=1"),
        );
        h.append(
            SEC_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate"),
        );
        remove_deflate(&mut h);
        assert_eq!(h.get(SEC_EXTENSIONS).unwrap(), "x-foo; a=1");
        let mut h = HeaderMap::new();
        h.insert(
            SEC_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate"),
        );
        remove_deflate(&mut h);
        assert!(h.get(SEC_EXTENSIONS).is_none());
    }
}
