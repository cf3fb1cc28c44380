//! Header rules of the forwarding path (RFC 9110 section 7.6.1 and the
//! de-facto X-Forwarded-* set).
//!
//! Owns: hop-by-hop removal in both directions, the
//! forwarding headers, and the anti-spoofing strip. Pure functions over
//! header maps, and `write_forwarded`, which writes the same forwarding
//! fields as head lines for a request with nothing to strip; no I/O.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::charset::{visible, QDTEXT};

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
        let kept = keep_upgrade && (name == header::CONNECTION || name == header::UPGRADE);
        (is_hop_by_hop(name) && !kept) || listed.contains(name)
    });
}

/// The fixed hop-by-hop set (RFC 9110 section 7.6.1, and `proxy-*`).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::UPGRADE
        || name == KEEP_ALIVE
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name.as_str().starts_with("proxy-")
}

/// Drops headers only IIS's own modules may set, so a client cannot
/// impersonate them (ANCM does the same).
pub fn strip_spoofable(headers: &mut HeaderMap) {
    remove_where(headers, is_spoofable);
}

fn is_spoofable(name: &HeaderName) -> bool {
    name.as_str().starts_with("ms-aspnetcore-") || name == "x-iis-windowsauthtoken"
}

fn is_forwarding(name: &HeaderName) -> bool {
    name == XFF || name == XFP || name == XFH || name == header::FORWARDED
}

/// True when a request carries nothing `strip_hop_by_hop`,
/// `strip_spoofable` or `add_forwarded` would drop, replace or append to:
/// then `write_forwarded` gives the app the same head without the map
/// edits. One look at each name, no hashing.
pub fn nothing_to_strip(headers: &HeaderMap) -> bool {
    !headers
        .keys()
        .any(|n| is_hop_by_hop(n) || is_spoofable(n) || is_forwarding(n))
}

/// Removes every field named `name`, keeping the others in their order.
pub fn remove_all(headers: &mut HeaderMap, name: &HeaderName) {
    remove_where(headers, |n| n == name);
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
    /// The connection came over TLS: the forwarding headers say `https`.
    pub tls: bool,
    /// `write_forwarded`'s fixed lines: X-Forwarded-For and -Proto.
    lines: Box<[u8]>,
    /// `write_forwarded`'s start of Forwarded, up to its `for=` node.
    forwarded_for: Box<[u8]>,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Peer {
        Peer::with_tls(addr, false)
    }

    pub fn with_tls(addr: SocketAddr, tls: bool) -> Peer {
        let text = addr.ip().to_string();
        let node = match addr.ip() {
            IpAddr::V4(_) => text.clone(),
            IpAddr::V6(_) => format!("\"[{text}]\""),
        };
        let ip = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("unknown"));
        let proto = if tls { "https" } else { "http" };
        let lines = format!(
            "x-forwarded-for: {}\r\nx-forwarded-proto: {proto}\r\n",
            ip.to_str().unwrap_or("unknown")
        );
        Peer {
            addr,
            ip,
            forwarded_for: format!("forwarded: for={node}").into_bytes().into(),
            node,
            tls,
            lines: lines.into_bytes().into(),
        }
    }

    fn ip_text(&self) -> &str {
        self.ip.to_str().unwrap_or("unknown")
    }
}

static HTTP: HeaderValue = HeaderValue::from_static("http");
static HTTPS: HeaderValue = HeaderValue::from_static("https");

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
        let proto = if peer.tls { &HTTPS } else { &HTTP };
        headers.insert(XFP.clone(), proto.clone());
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
    element.push_str(if peer.tls {
        ";proto=https"
    } else {
        ";proto=http"
    });
    let forwarded = match trust
        .then(|| join_values(headers, &header::FORWARDED))
        .flatten()
    {
        Some(p) => format!("{p}, {element}"),
        None => element,
    };
    set(headers, &header::FORWARDED, &forwarded);
}

/// The fields `add_forwarded` adds to a request that carries none of
/// them, in the same order and spelling, written as head lines (`host`:
/// the request's Host).
pub fn write_forwarded(out: &mut Vec<u8>, peer: &Peer, host: Option<&HeaderValue>) {
    out.extend_from_slice(&peer.lines);
    if let Some(h) = host {
        out.extend_from_slice(b"x-forwarded-host: ");
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&peer.forwarded_for);
    if let Some(h) = host.map(HeaderValue::as_bytes) {
        // A Host that passed `host::check` is all plain: one look.
        if h.iter().all(|c| QDTEXT.has(*c)) {
            out.extend_from_slice(b";host=\"");
            out.extend_from_slice(h);
            out.push(b'"');
        } else if visible(h) {
            out.extend_from_slice(b";host=\"");
            out.extend(h.iter().filter(|c| !matches!(c, b'"' | b'\\')));
            out.push(b'"');
        }
    }
    out.extend_from_slice(if peer.tls {
        b";proto=https\r\n"
    } else {
        b";proto=http\r\n"
    });
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

    fn lines(m: &HeaderMap) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in m {
            out.extend_from_slice(format!("{k}: ").as_bytes());
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn written_forwarding_fields_are_the_ones_the_map_gets() {
        let peers = [
            Peer::new("10.0.0.1:5000".parse().unwrap()),
            Peer::with_tls("[2001:db8::1]:443".parse().unwrap(), true),
        ];
        for peer in &peers {
            for host in [None, Some("example.com:8080"), Some("a\"b\\c"), Some("hé")] {
                let plain = match host {
                    Some(h) => map(&[("accept", "*/*"), ("host", h)]),
                    None => map(&[("accept", "*/*")]),
                };
                assert!(nothing_to_strip(&plain));
                for trust in [false, true] {
                    let mut edited = plain.clone();
                    add_forwarded(&mut edited, peer, trust);
                    let mut written = lines(&plain);
                    write_forwarded(&mut written, peer, plain.get(header::HOST));
                    assert_eq!(
                        String::from_utf8_lossy(&written),
                        String::from_utf8_lossy(&lines(&edited))
                    );
                }
            }
        }
    }

    #[test]
    fn anything_to_strip_or_forwarded_already_is_seen() {
        for name in [
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "ms-aspnetcore-token",
            "x-iis-windowsauthtoken",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
        ] {
            assert!(
                !nothing_to_strip(&map(&[("a", "1"), (name, "x")])),
                "{name}"
            );
        }
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
