//! The smuggling guard and the Host rules through the real binary, in raw
//! bytes: the guard stays on until a 101, framing headers of any length,
//! transfer codings (400 / 501), Host (RFC 9112 section 3.2), and every
//! response hpgate writes itself framed exactly (Content-Length = body).
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

const S: Duration = Duration::from_secs(1);

/// Requests the app has seen (the count includes this request).
fn count(g: &Gateway) -> u64 {
    g.get("/count").text().trim().parse().unwrap()
}

/// One response cut from the raw bytes of a connection.
#[derive(Debug)]
struct Wire {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Sends `raw` on one connection, reads until hpgate closes it, and splits
/// what came back into responses by their Content-Length. Panics on bytes
/// that are not a well-framed response: a wrong length shows up here.
fn exchange(g: &Gateway, raw: &[u8]) -> Vec<Wire> {
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(10 * S)).unwrap();
    s.write_all(raw).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    split_responses(&all)
}

fn split_responses(mut all: &[u8]) -> Vec<Wire> {
    let mut out = Vec::new();
    while !all.is_empty() {
        let end = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("not a response head: {:?}", String::from_utf8_lossy(all)));
        let head = String::from_utf8_lossy(&all[..end]).to_string();
        assert!(head.starts_with("HTTP/1."), "not a response: {head:?}");
        let status = head[9..12].parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no Content-Length: {head}"));
        let rest = &all[end + 4..];
        assert!(
            rest.len() >= len,
            "body shorter than Content-Length: {head}"
        );
        out.push(Wire {
            status,
            head,
            body: rest[..len].to_vec(),
        });
        all = &rest[len..];
    }
    out
}

fn statuses(w: &[Wire]) -> Vec<u16> {
    w.iter().map(|r| r.status).collect()
}

const TECL: &[u8] = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";

#[test]
fn guard_stays_on_after_an_upgrade_forwarded_as_http() {
    let (_s, g) = serving_testapp("guard-h2c", &[]);
    let before = count(&g);
    let first = b"GET /echo?a HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
    let got = exchange(&g, &[&first[..], TECL].concat());
    assert_eq!(statuses(&got), [200, 400], "{got:?}");
    assert_eq!(
        count(&g),
        before + 2,
        "the smuggled request reached the app"
    );
}

#[test]
fn guard_stays_on_after_a_refused_handshake() {
    let (_s, g) = serving_testapp("guard-refused", &[]);
    let before = count(&g);
    // A WebSocket handshake with a malformed key: 400, connection kept.
    let refused = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n";
    let got = exchange(
        &g,
        &[&refused[..], b"GET /lf HTTP/1.1\nHost: x\n\n"].concat(),
    );
    assert_eq!(got.first().map(|w| w.status), Some(400), "{got:?}");
    assert!(
        got.iter().skip(1).all(|w| w.status == 400),
        "the bare-LF request was answered: {got:?}"
    );
    assert_eq!(count(&g), before + 1, "the bare-LF request reached the app");
    // And the same after an app's non-101 answer to a WebSocket handshake.
    let before = count(&g);
    let app_refused = b"GET /status?code=403 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let got = exchange(&g, &[&app_refused[..], TECL].concat());
    assert_eq!(statuses(&got), [403, 400], "{got:?}");
    assert_eq!(count(&g), before + 2);
}

#[test]
fn long_framing_header_lines_are_recognized() {
    let (_s, g) = serving_testapp("guard-long", &[]);
    let before = count(&g);
    // A 31-byte body that looks like an upgrade request head.
    let body = "GET /x HTTP/1.1\r\nUpgrade: y\r\n\r\n";
    let first = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length:{}31\r\n\r\n{body}",
        " ".repeat(70)
    );
    let got = exchange(&g, &[first.as_bytes(), TECL].concat());
    assert_eq!(statuses(&got), [200, 400], "{got:?}");
    let echoed: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(echoed["body_len"], 31);
    assert_eq!(
        count(&g),
        before + 2,
        "the smuggled request reached the app"
    );
}

#[test]
fn transfer_codings_are_refused_once_and_alike() {
    let (_s, g) = serving_testapp("guard-te", &[]);
    let before = count(&g);
    for (te, want) in [
        ("gzip, chunked", 501),
        ("chunked, chunked", 400),
        ("chunked, gzip", 400),
        ("gzip", 400),
        ("chunked, ", 400),
        ("gz ip, chunked", 400),
    ] {
        let raw = format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let got = exchange(&g, raw.as_bytes());
        assert_eq!(statuses(&got), [want], "for {te:?}: {got:?}");
        assert!(got[0].head.contains("Connection: close"), "{}", got[0].head);
    }
    let raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(statuses(&exchange(&g, raw)), [400]);
    assert_eq!(count(&g), before + 1, "a refused request reached the app");
    // The accepted form still works.
    let ok = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let got = exchange(&g, ok);
    assert_eq!(statuses(&got), [200]);
    let echoed: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(echoed["body_len"], 5);
}

#[test]
fn connect_is_not_implemented() {
    let (_s, g) = serving_testapp("guard-connect", &[]);
    let before = count(&g);
    let got = exchange(
        &g,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    );
    assert_eq!(statuses(&got), [501], "{got:?}");
    assert_eq!(count(&g), before + 1);
}

#[test]
fn host_rules() {
    let (_s, g) = serving_testapp("guard-host", &[]);
    let before = count(&g);
    for raw in [
        &b"GET /echo HTTP/1.1\r\n\r\n"[..],
        b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: user@evil\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: \r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: x:99999999\r\n\r\n",
    ] {
        let got = exchange(&g, raw);
        assert_eq!(
            statuses(&got),
            [400],
            "for {:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(
        count(&g),
        before + 1,
        "a request with a bad Host reached the app"
    );

    // HTTP/1.0 without Host is fine; absolute-form replaces Host.
    let got = exchange(&g, b"GET /echo HTTP/1.0\r\n\r\n");
    assert_eq!(statuses(&got), [200]);
    let got = exchange(
        &g,
        b"GET http://real.example:8080/echo HTTP/1.1\r\nHost: spoofed.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(statuses(&got), [200], "{got:?}");
    let echoed: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    let headers = echoed["headers"].as_array().unwrap();
    let value = |name: &str| {
        headers
            .iter()
            .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|h| h[1].as_str().unwrap().to_string())
    };
    assert_eq!(value("host").as_deref(), Some("real.example:8080"));
    assert_eq!(
        value("x-forwarded-host").as_deref(),
        Some("real.example:8080")
    );
    assert_eq!(echoed["path"], "/echo");
}

/// Reads one connection's answer to `raw`: every response until hpgate
/// closes the connection or `want` responses have come.
fn answers(g: &Gateway, raw: &[u8], want: usize) -> Vec<Wire> {
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(10 * S)).unwrap();
    s.write_all(raw).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let complete =
            std::panic::catch_unwind(|| split_responses(&all)).is_ok_and(|r| r.len() >= want);
        if complete {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    split_responses(&all)
}

/// Every response hpgate renders itself says exactly how long its body is:
/// the guard's refusals, the service's 400/414/431/501, WebSocket
/// refusals, and the 504 and 502 pages, as text and as HTML.
#[test]
fn own_responses_are_well_framed() {
    let (_site, g) = serving_testapp(
        "guard-framed",
        &[("maxRequestLineBytes", "512"), ("maxRequestHeaders", "20")],
    );
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "p".repeat(600));
    let many: String = (0..25).map(|i| format!("X-H{i}: 1\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let ws = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
    let cases: Vec<(String, u16)> = vec![
        ("GET / HTTP/1.1\nHost: x\r\n\r\n".into(), 400),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nX: a\rb\r\n\r\n".into(),
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(),
            501,
        ),
        ("CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n".into(), 501),
        ("GET / HTTP/1.1\r\n\r\n".into(), 400),
        ("GET / HTTP/1.1\r\nAccept: text/html\r\n\r\n".into(), 400),
        (long, 414),
        (many, 431),
        (
            format!("GET / HTTP/1.1\r\nHost: x\r\n{ws}Sec-WebSocket-Key: c2hvcnQ=\r\n\r\n"),
            400,
        ),
        (format!("GET / HTTP/1.1\r\nHost: x\r\n{ws}\r\n"), 400),
    ];
    for (raw, want) in cases {
        let got = answers(&g, raw.as_bytes(), 1);
        assert_eq!(statuses(&got), [want], "for {raw:?}");
    }
}

#[test]
fn error_pages_are_well_framed() {
    let site = Site::new("guard-pages");
    site.testapp_config("serve", "requestTimeout=\"00:00:01\"", &[]);
    let g = Gateway::start(&site.dir, &[]);
    assert!(g.wait_log("app process is ready", 10 * S), "{}", g.logs());
    for accept in ["text/plain", "text/html"] {
        let raw = format!("GET /slow?delay=5 HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n");
        let got = answers(&g, raw.as_bytes(), 1);
        assert_eq!(statuses(&got), [504], "{}", g.logs());
        // The app crashing under the request: a 502 page.
        let raw = format!("GET /crash HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n");
        let got = answers(&g, raw.as_bytes(), 1);
        assert_eq!(statuses(&got), [502], "{}", g.logs());
        assert!(wait_until(10 * S, || g.get("/").status == 200));
    }
}

#[test]
fn websocket_bytes_sent_with_the_handshake_are_kept() {
    let site = Site::new("guard-ws-early");
    site.python_app("fixtures/websocket/echo_server.py", "", &[]);
    let g = Gateway::start(&site.dir, &[]);
    assert!(g.wait_log("app process is ready", 15 * S), "{}", g.logs());
    // Handshake and a masked text frame "hi" in one write, before the 101.
    let mut raw = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec();
    let mask = [1u8, 2, 3, 4];
    raw.extend_from_slice(&[0x81, 0x82]);
    raw.extend_from_slice(&mask);
    raw.extend(b"hi".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(10 * S)).unwrap();
    s.write_all(&raw).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let want_tail = [0x81u8, 0x02, b'h', b'i'];
    while !got.ends_with(&want_tail) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101"));
}

#[test]
fn malformed_trailer_lines_are_refused() {
    // Found by the guard-versus-h11 differential (docs/fuzzing.md): trailer
    // lines follow the head's rules. The whole request is in one read, so
    // it is refused before dispatch and the pipelined one never runs.
    let (_s, g) = serving_testapp("guard-trailer", &[]);
    let before = count(&g);
    for trailer in [" folded", "T", "T : 1", "T: a\x01"] {
        let raw = format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n{trailer}\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let got = exchange(&g, raw.as_bytes());
        assert_eq!(statuses(&got), [400], "for {trailer:?}: {got:?}");
    }
    assert_eq!(count(&g), before + 1, "a refused request reached the app");
    let ok = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nT: 1\r\n\r\n";
    assert_eq!(statuses(&exchange(&g, ok)), [200]);
}
