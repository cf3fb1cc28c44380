//! Header rules of the forwarding path (RFC 9110 section 7.6.1 and the
//! de-facto X-Forwarded-* set).
//!
//! Owns: request framing checks that hyper leaves to the application
//! (smuggling vectors), hop-by-hop removal in both directions, the
//! forwarding headers, and the anti-spoofing strip. Pure functions over
//! header maps; no I/O.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::error::ProxyError;

/// Rejects framing that two parsers could read differently. hyper's own
/// parser already refuses obs-fold, whitespace before the colon, bad
/// chunk sizes and conflicting Content-Length values; these are the cases
/// it tolerates.
pub fn check_framing(headers: &HeaderMap) -> Result<(), ProxyError> {
    let cl: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    let te: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    if !cl.is_empty() && !te.is_empty() {
        return Err(ProxyError::BadRequest(
            "both Content-Length and Transfer-Encoding are present",
        ));
    }
    if cl.len() > 1 || cl.iter().any(|v| v.as_bytes().contains(&b',')) {
        return Err(ProxyError::BadRequest("Content-Length is repeated"));
    }
    if let Some(v) = cl.first() {
        let ok = !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_digit);
        if !ok {
            return Err(ProxyError::BadRequest("Content-Length is not a number"));
        }
    }
    if !te.is_empty() {
        let codings: Vec<String> = te
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        let chunked_last_only = codings.last().map(String::as_str) == Some("chunked")
            && codings.iter().filter(|c| *c == "chunked").count() == 1
            && codings.iter().all(|c| !c.is_empty());
        if !chunked_last_only {
            return Err(ProxyError::BadRequest(
                "Transfer-Encoding must end with a single chunked",
            ));
        }
    }
    Ok(())
}

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Removes Connection and every header it names, and the fixed hop-by-hop
/// set. `keep_upgrade` keeps Upgrade/Connection for a WebSocket handshake.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    remove_where(headers, |name| {
        name == KEEP_ALIVE
            || name == header::TE
            || name == header::TRAILER
            || name == header::TRANSFER_ENCODING
            || name.as_str().starts_with("proxy-")
            || (!keep_upgrade && (name == header::CONNECTION || name == header::UPGRADE))
            || listed.contains(name)
    });
}

/// Drops headers only IIS's own modules may set, so a client cannot
/// impersonate them (ANCM does the same).
pub fn strip_spoofable(headers: &mut HeaderMap) {
    remove_where(headers, |name| {
        name.as_str().starts_with("ms-aspnetcore-") || name == "x-iis-windowsauthtoken"
    });
}

/// Removes every header whose name matches, keeping the others in their
/// order: `HeaderMap::remove` moves the last header into the hole, and apps
/// (and signatures over headers) can care about order. One pass over the
/// names when nothing matches, which is the common case.
fn remove_where(headers: &mut HeaderMap, matches: impl Fn(&HeaderName) -> bool) {
    if !headers.keys().any(&matches) {
        return;
    }
    let old = std::mem::take(headers);
    headers.reserve(old.keys_len());
    // into_iter names each header once, then yields its further values
    // with no name.
    let mut current: Option<HeaderName> = None;
    for (name, value) in old {
        if let Some(name) = name {
            current = (!matches(&name)).then_some(name);
        }
        if let Some(name) = &current {
            headers.append(name.clone(), value);
        }
    }
}

static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
static XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
static XFH: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The client end of one connection, with the forwarding-header pieces
/// worked out once per connection rather than once per request.
#[derive(Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The address as X-Forwarded-For carries it.
    ip: HeaderValue,
    /// The address as a Forwarded `for=` node (IPv6 quoted and bracketed).
    node: String,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Peer {
        let text = addr.ip().to_string();
        let node = match addr.ip() {
            IpAddr::V4(_) => text.clone(),
            IpAddr::V6(_) => format!("\"[{text}]\""),
        };
        let ip = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("unknown"));
        Peer { addr, ip, node }
    }

    fn ip_text(&self) -> &str {
        self.ip.to_str().unwrap_or("unknown")
    }
}

static HTTP: HeaderValue = HeaderValue::from_static("http");

/// Adds X-Forwarded-For/Proto/Host and Forwarded. Client-sent values are
/// kept (and appended to) only when `trust` is set; otherwise replaced.
pub fn add_forwarded(headers: &mut HeaderMap, peer: &Peer, trust: bool) {
    let host = headers.get(header::HOST).cloned();

    match trust.then(|| join_values(headers, &XFF)).flatten() {
        Some(prior) => set(headers, &XFF, &format!("{prior}, {}", peer.ip_text())),
        None => {
            headers.insert(XFF.clone(), peer.ip.clone());
        }
    }
    if !(trust && headers.contains_key(&XFP)) {
        headers.insert(XFP.clone(), HTTP.clone());
    }
    if !(trust && headers.contains_key(&XFH)) {
        match &host {
            Some(h) => {
                headers.insert(XFH.clone(), h.clone());
            }
            None => remove_where(headers, |name| name == XFH),
        }
    }

    let mut element = String::with_capacity(64);
    element.push_str("for=");
    element.push_str(&peer.node);
    if let Some(h) = host.as_ref().and_then(|h| h.to_str().ok()) {
        element.push_str(";host=\"");
        element.extend(h.chars().filter(|c| !matches!(c, '"' | '\\')));
        element.push('"');
    }
    element.push_str(";proto=http");
    let forwarded = match trust
        .then(|| join_values(headers, &header::FORWARDED))
        .flatten()
    {
        Some(p) => format!("{p}, {element}"),
        None => element,
    };
    set(headers, &header::FORWARDED, &forwarded);
}

fn join_values(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let vals: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!vals.is_empty()).then(|| vals.join(", "))
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn names_and_values(m: &HeaderMap) -> Vec<String> {
        m.iter()
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap()))
            .collect()
    }

    #[test]
    fn stripping_keeps_the_order_of_the_rest() {
        let mut m = map(&[
            ("a", "1"),
            ("connection", "x-secret, keep-alive"),
            ("b", "2"),
            ("x-secret", "s"),
            ("c", "3"),
            ("c", "4"),
            ("ms-aspnetcore-token", "t"),
            ("proxy-authorization", "p"),
            ("d", "5"),
            ("keep-alive", "timeout=5"),
            ("e", "6"),
        ]);
        strip_hop_by_hop(&mut m, false);
        strip_spoofable(&mut m);
        assert_eq!(
            names_and_values(&m),
            ["a=1", "b=2", "c=3", "c=4", "d=5", "e=6"]
        );
        // Nothing to strip: the map is left as it was.
        let mut m = map(&[("z", "1"), ("y", "2")]);
        strip_hop_by_hop(&mut m, false);
        assert_eq!(names_and_values(&m), ["z=1", "y=2"]);
        // A WebSocket handshake keeps Connection and Upgrade.
        let mut m = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("te", "x"),
        ]);
        strip_hop_by_hop(&mut m, true);
        assert_eq!(
            names_and_values(&m),
            ["connection=Upgrade", "upgrade=websocket"]
        );
    }

    #[test]
    fn framing_vectors() {
        assert!(check_framing(&map(&[("content-length", "5")])).is_ok());
        assert!(check_framing(&map(&[("transfer-encoding", "chunked")])).is_ok());
        assert!(check_framing(&map(&[("transfer-encoding", "gzip, chunked")])).is_ok());
        for bad in [
            &[("content-length", "5"), ("transfer-encoding", "chunked")][..],
            &[("content-length", "5"), ("content-length", "5")],
            &[("content-length", "5, 5")],
            &[("content-length", "+5")],
            &[("transfer-encoding", "chunked, gzip")],
            &[("transfer-encoding", "chunked, chunked")],
            &[("transfer-encoding", "identity")],
        ] {
            assert!(check_framing(&map(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hop_by_hop_removed() {
        let mut m = map(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "x"),
            ("upgrade", "h2c"),
            ("x-keep", "1"),
        ]);
        strip_hop_by_hop(&mut m, false);
        assert_eq!(m.len(), 1);
        assert!(m.contains_key("x-keep"));
    }

    #[test]
    fn forwarded_replaces_unless_trusted() {
        let mut m = map(&[("host", "example.com"), ("x-forwarded-for", "6.6.6.6")]);
        add_forwarded(&mut m, &Peer::new("10.0.0.1:5000".parse().unwrap()), false);
        assert_eq!(m["x-forwarded-for"], "10.0.0.1");
        assert_eq!(m["x-forwarded-host"], "example.com");
        assert_eq!(
            m["forwarded"],
            "for=10.0.0.1;host=\"example.com\";proto=http"
        );

        let mut m = map(&[("x-forwarded-for", "6.6.6.6")]);
        add_forwarded(&mut m, &Peer::new("[::1]:5000".parse().unwrap()), true);
        assert_eq!(m["x-forwarded-for"], "6.6.6.6, ::1");
        assert_eq!(m["forwarded"], "for=\"[::1]\";proto=http");
    }

    #[test]
    fn spoofable_removed() {
        let mut m = map(&[
            ("ms-aspnetcore-token", "x"),
            ("x-iis-windowsauthtoken", "y"),
            ("a", "b"),
        ]);
        strip_spoofable(&mut m);
        assert_eq!(m.len(), 1);
    }
}
