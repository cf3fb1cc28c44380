//! WebSockets over HTTP/2 (RFC 8441): an extended CONNECT from the client
//! becomes an ordinary HTTP/1.1 upgrade to the app, and the app's 101 the
//! client's 200.
//!
//! Owns the translation both ways (the app never knows the client spoke
//! HTTP/2) and the fresh `Sec-WebSocket-Key` the app needs. Must not touch
//! frames: after the answer the relay runs on the HTTP/2 stream as on any
//! other.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};

use super::handshake::{Rejection, SEC_KEY, SEC_VERSION};

/// An HTTP/2 extended CONNECT for the `websocket` protocol.
pub fn is_extended_connect(method: &Method, version: Version, ext: &http::Extensions) -> bool {
    version == Version::HTTP_2
        && method == Method::CONNECT
        && ext
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// RFC 8441 section 5: the version rule of RFC 6455 holds; there is no key.
pub fn validate<B>(req: &Request<B>) -> Result<(), Rejection> {
    match req.headers().get(SEC_VERSION).map(HeaderValue::as_bytes) {
        Some(b"13") => Ok(()),
        _ => Err(Rejection {
            status: StatusCode::UPGRADE_REQUIRED,
            reason: "unsupported Sec-WebSocket-Version; this server speaks version 13",
        }),
    }
}

/// The head the app gets: a GET with `Upgrade: websocket` and a key of
/// hpgate's own (the app's accept value is for hpgate, not the client).
pub fn to_app(parts: &mut http::request::Parts) {
    parts.method = Method::GET;
    parts.extensions.remove::<hyper::ext::Protocol>();
    let h = &mut parts.headers;
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(key) = HeaderValue::from_str(&fresh_key()) {
        h.insert(SEC_KEY, key);
    }
}

/// The app's 101 as the client hears it over HTTP/2: 200, without the
/// HTTP/1.1 upgrade fields (RFC 8441 section 5).
pub fn to_client<B>(resp: &mut Response<B>) {
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.remove(header::UPGRADE);
    h.remove(header::CONNECTION);
    h.remove(header::SEC_WEBSOCKET_ACCEPT);
}

/// 16 bytes, base64: a nonce per handshake (RFC 6455 section 4.1). Taken
/// from the standard library's per-process random hash keys and a counter,
/// which is unpredictable enough for a nonce that only the app sees.
fn fresh_key() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    base64(&bytes)
}

fn base64(input: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }

    #[test]
    fn keys_are_valid_and_differ() {
        let (a, b) = (fresh_key(), fresh_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        let mut req = Request::new(());
        req.headers_mut()
            .insert(SEC_KEY, HeaderValue::from_str(&a).unwrap());
        req.headers_mut()
            .insert(SEC_VERSION, HeaderValue::from_static("13"));
        req.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(super::super::handshake::validate(&req), Ok(()));
    }
}
