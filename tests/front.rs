//! The front (proxy/front/: hpgate's own HTTP/1.1 server side for GET and
//! HEAD without a body) through the real binary, in raw bytes: requests it
//! serves and requests it hands to hyper on one connection, in order; a
//! refused head after served ones; an upgrade after plain requests; HEAD,
//! `Connection: close`, hpgate's own pages, a head in pieces, and the
//! keep-alive timer.
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

const S: Duration = Duration::from_secs(1);

fn connect(g: &Gateway) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(10 * S)).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn echoed(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|_| panic!("not JSON: {reply:?}"))
}

/// What is left on the connection after the responses read so far: None
/// when it closed.
fn closed(r: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    matches!(r.read_to_end(&mut rest), Ok(0))
}

#[test]
fn pipelined_requests_cross_the_hand_off_in_order() {
    let (_s, g) = serving_testapp("front-pipeline", &[]);
    let (mut s, mut r) = connect(&g);
    // Served by the front, then a body (hyper from here on), then more.
    s.write_all(
        b"GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /echo?n=2 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\n\r\n\
          POST /echo?n=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz\
          GET /echo?n=4 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    for (n, method, body_len) in [(1, "GET", 0), (2, "GET", 0), (3, "POST", 3), (4, "GET", 0)] {
        let reply = read_response(&mut r);
        assert_eq!(reply.status, 200, "request {n}: {reply:?}");
        let e = echoed(&reply);
        assert_eq!(e["path"], format!("/echo?n={n}"));
        assert_eq!(e["method"], method);
        assert_eq!(e["body_len"], body_len);
    }
    // Repeated fields reach the app as sent, forwarding headers added.
    s.write_all(b"GET /echo?n=5 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\n\r\n")
        .unwrap();
    let e = echoed(&read_response(&mut r));
    let names: Vec<String> = e["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(names.iter().filter(|n| *n == "x-a").count(), 2, "{names:?}");
    assert!(names.contains(&"x-forwarded-for".to_string()), "{names:?}");
}

#[test]
fn a_refused_head_after_served_requests_is_answered_after_them() {
    let (_s, g) = serving_testapp("front-refusal", &[]);
    let (mut s, mut r) = connect(&g);
    s.write_all(
        b"GET /status?code=201 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    )
    .unwrap();
    assert_eq!(read_response(&mut r).status, 201);
    let refusal = read_response(&mut r);
    assert_eq!(refusal.status, 400, "{refusal:?}");
    assert!(closed(&mut r), "the connection ends after a refusal");
    // A bare LF in the second head of one read: the same.
    let (mut s, mut r) = connect(&g);
    s.write_all(b"GET /status?code=202 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r).status, 202);
    assert_eq!(read_response(&mut r).status, 400);
    assert!(closed(&mut r));
}

/// The log lines that matter name their connection (`conn=` and `peer=`)
/// whichever server part wrote them: the front's access lines, hyper's
/// after the hand-off, a request error, and the guard's refusal; another
/// connection gets another number. At info level, where no span carries
/// them.
#[test]
fn every_line_about_a_connection_names_it() {
    let site = Site::new("front-conn-tag");
    site.testapp_config("serve", "", &[]);
    let g = Gateway::start_env(&site.dir, &[], &[("HPGATE_LOG", "info")]);
    assert!(g.wait_log("app process is ready", 10 * S), "{}", g.logs());
    let (mut s, mut r) = connect(&g);
    let peer = format!("peer={}", s.local_addr().unwrap());
    let bad = raw_path(b"HTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n");
    s.write_all(format!("GET /echo?tag=1 HTTP/1.1\r\nHost: x\r\n\r\nGET {bad}&tag=2 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut r).status, 200);
    assert_eq!(read_response(&mut r).status, 502, "{}", g.logs());
    // hyper's part of the connection, then a head the guard refuses.
    s.write_all(
        b"POST /echo?tag=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx\
          GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    )
    .unwrap();
    assert_eq!(read_response(&mut r).status, 200);
    assert_eq!(read_response(&mut r).status, 400);
    let (mut s2, mut r2) = connect(&g);
    let peer2 = format!("peer={}", s2.local_addr().unwrap());
    s2.write_all(b"GET /echo?tag=4 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r2).status, 200);
    let line = |needle: &str| {
        assert!(
            wait_until(5 * S, || g.logs().lines().any(|l| l.contains(needle))),
            "no line with {needle}:\n{}",
            g.logs()
        );
        g.logs()
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
            .to_string()
    };
    let conn_of = |l: &str| {
        let at = l
            .find(" conn=")
            .unwrap_or_else(|| panic!("no conn= in {l}"));
        l[at + 6..]
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let lines = [
        line("tag=1 "),
        line("tag=2 "),
        line("malformed response"),
        line("tag=3 "),
        line("refused a request"),
    ];
    let first = conn_of(&lines[0]);
    for l in &lines {
        assert!(!l.contains("conn{"), "no span at info: {l}");
        assert!(l.contains(&peer), "{peer} not in {l}");
        assert_eq!(conn_of(l), first, "{l}");
    }
    let other = line("tag=4 ");
    assert!(other.contains(&peer2), "{other}");
    assert_ne!(conn_of(&other), first, "{other}");
}

#[test]
fn an_upgrade_after_plain_requests_switches() {
    let (_s, g) = serving_testapp("front-upgrade", &[]);
    let (mut s, mut r) = connect(&g);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r).status, 200);
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 101"), "{line}");
}

#[test]
fn head_close_and_hpgates_own_pages() {
    let (_s, g) = serving_testapp("front-head", &[]);
    let (mut s, mut r) = connect(&g);
    s.write_all(b"HEAD /status?code=200 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(
        head.contains("content-length: 10\r\n"),
        "the app's length stays: {head}"
    );
    // No body followed the HEAD answer: the next answer comes right after.
    s.write_all(b"GET /status?code=203 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reply = read_response(&mut r);
    assert_eq!(reply.status, 203);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(closed(&mut r), "closed after Connection: close");

    // hpgate's own page (two Host fields) has its length and a date.
    let (mut s, mut r) = connect(&g);
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        .unwrap();
    let reply = read_response(&mut r);
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.header("date").is_some(), "{reply:?}");
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
}

#[test]
fn a_head_in_pieces_is_served_and_an_idle_connection_timed_out() {
    let (_s, g) = serving_testapp("front-pieces", &[("keepAliveTimeout", "1")]);
    let (mut s, mut r) = connect(&g);
    // Pieces of 5 bytes: the head's closing CRLFCRLF is split between
    // the last two reads.
    for b in b"GET /status?code=200 HTTP/1.1\r\nHost: x\r\n\r\n".chunks(5) {
        s.write_all(b).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let reply = read_response(&mut r);
    assert_eq!((reply.status, reply.text().as_str()), (200, "status 200"));
    // Kept alive, then closed when idle past keepAliveTimeout (1 s).
    let t0 = Instant::now();
    assert!(closed(&mut r));
    let idle = t0.elapsed();
    assert!(
        idle >= Duration::from_millis(800) && idle < 5 * S,
        "{idle:?}"
    );
}

#[test]
fn bodies_of_unknown_length_are_chunked_and_the_connection_kept() {
    let (_s, g) = serving_testapp("front-framing", &[]);
    let (mut s, mut r) = connect(&g);
    // The app answers without a length and closes: the client must get
    // chunks, and its connection stays usable.
    let path = raw_path(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nuntil close");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let reply = read_response(&mut r);
    assert_eq!(
        reply.header("transfer-encoding"),
        Some("chunked"),
        "{reply:?}"
    );
    assert_eq!(reply.text(), "until close");
    // A chunked app body in 64 KiB pieces (larger than what the front
    // gathers behind a head): every byte, in order, on the same connection.
    s.write_all(b"GET /download?size=300000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_response(&mut r);
    assert_eq!(reply.status, 200);
    let expected: Vec<u8> = (0..300_000usize).map(|i| (i % 256) as u8).collect();
    assert!(reply.body == expected, "{} bytes", reply.body.len());
    s.write_all(b"GET /status?code=200 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r).text(), "status 200");
}

#[test]
fn shutdown_closes_idle_connections_and_ends_the_request_in_flight_with_close() {
    let (_s, mut g) = serving_testapp("front-stop", &[("shutdownTimeLimit", "3")]);
    let (mut idle, mut idle_r) = connect(&g);
    idle.write_all(b"GET /status?code=200 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle_r).status, 200);
    let (mut s, mut r) = connect(&g);
    s.write_all(b"GET /slow?delay=1&mark=front-stop HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(g.wait_log("testapp saw front-stop", 10 * S), "{}", g.logs());
    let stopper = std::thread::spawn(move || g.stop(10 * S));
    // The answer in flight still arrives, says the connection ends, and
    // it does; the kept-alive idle connection is closed too.
    let reply = read_response(&mut r);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(closed(&mut r));
    assert!(closed(&mut idle_r));
    assert_eq!(stopper.join().unwrap(), Some(0));
}
