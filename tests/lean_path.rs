//! The lean path (proxy/lean/: hpgate's own HTTP/1 client for requests
//! without a body) against raw app answers, through the real binary: every
//! framing RFC 9112 section 6.3 allows, informational heads, heads it must
//! refuse, and the same answers fetched with a body (hyper's client) to
//! show both paths give the client the same thing.
mod support;

use std::time::Duration;

use support::*;

const S: Duration = Duration::from_secs(1);

/// GET (the lean path) and POST with a body (hyper's client).
fn both(g: &Gateway, raw: &[u8]) -> (Reply, Reply) {
    let path = raw_path(raw);
    let lean = request(g.addr, "GET", &path, &[], b"");
    let hyper = request(g.addr, "POST", &path, &[], b"x");
    (lean, hyper)
}

#[test]
fn every_framing_reads_the_same_on_both_paths() {
    let (_s, g) = serving_testapp("lean-framing", &[]);
    let raw_chunks: &[u8] = b"2\r\nok\r\n0\r\n\r\n";
    let cases: [(&[u8], u16, &[u8]); 12] = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", 200, b"hello"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=\"y\"\r\nhello\r\n1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n",
            200,
            b"hello!",
        ),
        // Read to the close: no length, no chunks.
        (b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nuntil close", 200, b"until close"),
        (b"HTTP/1.0 200 OK\r\n\r\nold style", 200, b"old style"),
        // A coding other than chunked last: read to the close.
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz", 200, b"zzz"),
        // Only the last element of the last line counts, empty or not
        // visible ASCII (hyper's reading; both paths read it so).
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            200,
            raw_chunks,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: \r\n\r\n2\r\nok\r\n0\r\n\r\n",
            200,
            raw_chunks,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \xff, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            200,
            raw_chunks,
        ),
        // Informational heads come before the answer and are not passed on.
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
            201,
            b"ok",
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b""),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 404, b""),
    ];
    for (raw, status, body) in cases {
        let what = String::from_utf8_lossy(raw);
        let (lean, hyper) = both(&g, raw);
        assert_eq!(
            (lean.status, lean.body.as_slice()),
            (status, body),
            "lean: {what}"
        );
        assert_eq!(
            (hyper.status, hyper.body.as_slice()),
            (status, body),
            "hyper: {what}"
        );
        for r in [&lean, &hyper] {
            assert!(r.header("link").is_none(), "an interim head leaked: {what}");
            assert!(r.header("x-trailer").is_none(), "{what}");
        }
    }
}

/// The values of every field named `name`, in order.
fn all<'r>(r: &'r Reply, name: &str) -> Vec<&'r str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn the_apps_fields_reach_the_client_whichever_server_writes_the_head() {
    // A lean answer's fields travel as bytes: the front writes them as
    // they are, hyper's server (an HTTP/1.0 request) gets them as a map.
    let (_s, g) = serving_testapp("lean-fields", &[]);
    let raw = b"HTTP/1.1 200 OK\r\nX-App: 1\r\nContent-Type: text/plain\r\nx-app: 2\r\n\
        Date: Tue, 01 Jan 2030 00:00:00 GMT\r\nContent-Length: 2\r\n\r\nok";
    let path = raw_path(raw);
    let front = request(g.addr, "GET", &path, &[], b"");
    let old = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    let hyper = raw_request(g.addr, old.as_bytes(), 10 * S);
    for (r, how) in [(&front, "front"), (&hyper, "hyper")] {
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]), "{how}");
        assert_eq!(all(r, "x-app"), ["1", "2"], "{how}: {:?}", r.headers);
        assert_eq!(all(r, "content-type"), ["text/plain"], "{how}");
        assert_eq!(all(r, "date"), ["Tue, 01 Jan 2030 00:00:00 GMT"], "{how}");
        assert_eq!(all(r, "content-length"), ["2"], "{how}");
    }
    // An empty body with the app's own length: one length field.
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-App: 3\r\n\r\n";
    let r = request(g.addr, "GET", &raw_path(raw), &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(all(&r, "content-length"), ["0"], "{:?}", r.headers);
    assert_eq!(all(&r, "x-app"), ["3"]);
    assert_eq!(all(&r, "date").len(), 1, "{:?}", r.headers);
}

#[test]
fn a_head_trickled_in_a_byte_at_a_time_is_read_when_its_end_comes() {
    // Each byte its own read: the lean client parses again only once an
    // end may have come, and the end straddles two reads.
    let (_s, g) = serving_testapp("lean-trickle", &[]);
    let raw = b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    let path = format!("{}&pace=0.002", raw_path(raw));
    let r = request(g.addr, "GET", &path, &[], b"");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
}

#[test]
fn both_length_and_chunked_is_read_by_chunks_and_the_length_dropped() {
    let (_s, g) = serving_testapp("lean-te-cl", &[]);
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (lean, hyper) = both(&g, raw);
    for r in [lean, hyper] {
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert_ne!(r.header("content-length"), Some("3"));
    }
    assert!(g.wait_log("both Content-Length and Transfer-Encoding", 5 * S));
}

#[test]
fn heads_that_could_be_read_two_ways_are_refused_on_both_paths() {
    let (_s, g) = serving_testapp("lean-refused", &[]);
    for raw in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\nSet-Cookie: evil=2\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\rSet-Cookie: evil=2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
        b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded: b\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTQ/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        // HTTP/1.0 has no Transfer-Encoding: its framing cannot be trusted
        // (RFC 9112 section 6.1), and a kept connection could carry a
        // second answer the app did not mean as one.
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ] {
        let what = String::from_utf8_lossy(raw);
        let (lean, hyper) = both(&g, raw);
        assert_eq!(lean.status, 502, "lean: {what}: {}", lean.text());
        assert_eq!(hyper.status, 502, "hyper: {what}: {}", hyper.text());
        assert!(lean.header("set-cookie").is_none(), "{what}");
    }
    // Named as the app's malformed answer on both paths, not as a
    // connection it closed.
    assert!(g.wait_log(
        "could not read its head (unexpected transfer-encoding",
        5 * S
    ));
    let logs = g.logs();
    assert!(!logs.contains("without a complete answer"), "{logs}");
    // An unasked-for protocol switch.
    let r = g.get(&raw_path(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    ));
    assert_eq!(r.status, 502, "{}", r.text());
}

#[test]
fn a_broken_body_cuts_the_response_after_what_came() {
    let (_s, g) = serving_testapp("lean-cut", &[]);
    for raw in [
        // Shorter than its length, then the close.
        &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"[..],
        // A chunk size line with a bare LF.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\nabc\r\n0\r\n\r\n",
        // Chunk data longer than its size.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloEXTRA\r\n0\r\n\r\n",
        // The close before the last chunk.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ] {
        let what = String::from_utf8_lossy(raw);
        let r = g.get(&raw_path(raw));
        // The head and what came of the body reach the client; the
        // response then ends unfinished (never a clean, shorter body).
        assert_eq!(r.status, 200, "{what}");
        assert!(r.body.starts_with(b"hello") || r.body.is_empty(), "{what}");
        let cl = r.header("content-length").map(|v| v.to_string());
        assert!(
            cl.as_deref() == Some("10") || r.header("transfer-encoding").is_some(),
            "{what}: the client must be able to tell the body was cut"
        );
    }
    assert!(g.wait_log("complete=false", 5 * S));
}

#[test]
fn kept_alive_sockets_are_reused_and_head_answers_read_no_body() {
    let (_s, g) = serving_testapp("lean-reuse", &[]);
    let port = |r: Reply| -> u64 {
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        v["peer_port"].as_u64().expect("peer_port")
    };
    let first = port(g.get("/echo"));
    // A HEAD answer carries a Content-Length but no body: reading one would
    // hang or spoil the connection for the next request.
    for _ in 0..3 {
        let r = request(g.addr, "HEAD", "/echo", &[], b"");
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
    }
    for _ in 0..5 {
        assert_eq!(
            port(g.get("/echo")),
            first,
            "one app connection carries them all"
        );
    }
    // A DELETE without a body takes the same socket; a POST with one takes
    // hyper's connection (another port), and the lean socket stays.
    assert_eq!(port(request(g.addr, "DELETE", "/echo", &[], b"")), first);
    assert_ne!(port(request(g.addr, "POST", "/echo", &[], b"b")), first);
    assert_eq!(port(g.get("/echo")), first);
}
