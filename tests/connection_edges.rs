//! Connection-level edge cases through the real binary: malformed app
//! answers (raw bytes from the test app's `/raw`), half-closing and
//! stalling clients, the WebSocket count under a burst, running out of
//! file descriptors, and hpgate's own 503 being well formed.
mod support;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use support::*;

const S: Duration = Duration::from_secs(1);

fn gateway(name: &str, attrs: &str, settings: &[(&str, &str)]) -> (Site, Gateway) {
    let site = Site::new(name);
    site.testapp_config("serve", attrs, settings);
    let g = Gateway::start(&site.dir, &[]);
    assert!(g.wait_log("app process is ready", 10 * S), "{}", g.logs());
    (site, g)
}

fn count(g: &Gateway) -> u64 {
    g.get("/count").text().trim().parse().unwrap()
}

/// The access-log line of the request whose target starts with `prefix`.
fn access_line(g: &Gateway, prefix: &str) -> String {
    let needle = format!("path={prefix}");
    // Other lines of the request carry its path too (in its span at debug).
    let is_access = |l: &&str| l.contains(&needle) && l.contains(" complete=");
    assert!(
        wait_until(5 * S, || g.logs().lines().any(|l| is_access(&l))),
        "no access line:\n{}",
        g.logs()
    );
    g.logs()
        .lines()
        .find(is_access)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn content_length_with_chunked_from_the_app_is_read_as_chunked() {
    let (_s, g) = gateway("cl-te-resp", "", &[]);
    let body = b"0123456789abcdefghij";
    let mut raw =
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n"
            .to_vec();
    raw.extend_from_slice(body);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = g.get(&raw_path(&raw));
    assert_eq!(r.status, 200, "{}", g.logs());
    assert_eq!(r.body, body, "{:?}", r.headers);
    assert!(
        r.header("content-length").is_none_or(|v| v == "20"),
        "{:?}",
        r.headers
    );
    assert!(g.wait_log("both Content-Length and Transfer-Encoding", 5 * S));
    let warned = g
        .logs()
        .lines()
        .filter(|l| l.contains("both Content-Length and Transfer-Encoding"))
        .count();
    assert_eq!(warned, 1, "{}", g.logs());
    // The line is written when hpgate has finished the body, which can
    // be a moment after the client has read it.
    assert!(wait_until(5 * S, || access_line(&g, "/raw").contains("complete=true")));
    // A Content-Length longer than the chunked body is not passed on
    // either: the client would wait for bytes that never come.
    let r = g.get(&raw_path(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ));
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert!(r.header("content-length").is_none_or(|v| v == "5"));
}

#[test]
fn a_body_shorter_than_its_content_length_is_incomplete_and_closes() {
    let (_s, g) = gateway("short-body", "", &[]);
    let path = raw_path(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello");
    // A keep-alive client: it must see the connection end, or it would
    // wait for 95 more bytes or read the next answer as body.
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(10 * S)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut all = Vec::new();
    let t0 = Instant::now();
    let end = s.read_to_end(&mut all);
    assert!(end.is_ok(), "connection left open: {end:?}");
    assert!(t0.elapsed() < 5 * S);
    let text = String::from_utf8_lossy(&all);
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    assert!(
        wait_until(5 * S, || access_line(&g, "/raw").contains("complete=false")),
        "{}",
        access_line(&g, "/raw")
    );
}

#[test]
fn bare_lf_or_cr_in_an_app_header_is_refused() {
    let (_s, g) = gateway("resp-bare-lf", "", &[]);
    for raw in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\nSet-Cookie: evil=2\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\rSet-Cookie: evil=2\r\n\r\nok",
        b"HTTP/1.1 200 OK\nContent-Length: 2\nSet-Cookie: evil=2\n\nok",
    ] {
        // The answer before leaves a kept-alive connection that the bad
        // answer then comes on: the check starts again at each response.
        assert_eq!(g.get("/").status, 200);
        let r = g.get(&raw_path(raw));
        assert_eq!(r.status, 502, "{:?}: {:?}", String::from_utf8_lossy(raw), r);
        assert!(r.header("set-cookie").is_none());
        assert!(r.text().contains("malformed"), "{}", r.text());
    }
    assert!(
        g.wait_log("bare LF", Duration::from_secs(5))
            && g.wait_log("bare CR", Duration::from_secs(5))
    );
    // Good answers on the same pooled connections still pass.
    for _ in 0..3 {
        assert_eq!(g.get("/").status, 200);
    }
    let ok = g.get(&raw_path(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\r\n\r\nok",
    ));
    assert_eq!((ok.status, ok.text().as_str()), (200, "ok"));
}

#[test]
fn a_complete_request_then_half_close_is_answered() {
    let (_s, g) = gateway("half-close", "", &[]);
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(g.addr).unwrap();
        s.set_read_timeout(Some(10 * S)).unwrap();
        s.write_all(raw).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let r = read_response(&mut BufReader::new(s));
        assert_eq!(r.status, 200, "{:?}\n{}", String::from_utf8_lossy(raw), g.logs());
        let t = r.text();
        assert!(t.contains("hello from") || t.contains("\"body_len\": 5"), "{t}");
    }
    // An incomplete request is abandoned before the app sees it.
    let before = count(&g);
    for raw in [&b"GET /count HTTP/1.1\r\nHost: x\r\n"[..], b"GET /cou"] {
        let mut s = TcpStream::connect(g.addr).unwrap();
        s.set_read_timeout(Some(10 * S)).unwrap();
        s.write_all(raw).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        assert!(s.read_to_end(&mut rest).is_ok(), "left open");
        assert!(
            !String::from_utf8_lossy(&rest).contains(" 200 "),
            "{rest:?}"
        );
    }
    assert_eq!(count(&g), before + 1);
}

#[test]
fn a_client_stalling_mid_upload_gets_408_and_frees_the_app() {
    let (_s, g) = gateway(
        "client-stall",
        "requestTimeout=\"00:00:30\"",
        &[("clientBodyTimeout", "1")],
    );
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(20 * S)).unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        .unwrap();
    // The app is reading the body.
    assert!(wait_until(10 * S, || g.get("/open-uploads").text() == "1"));
    let t0 = Instant::now();
    let r = read_response(&mut BufReader::new(s));
    assert_eq!(r.status, 408, "{}\n{}", r.text(), g.logs());
    assert!(t0.elapsed() < 10 * S);
    assert!(r.text().contains("clientBodyTimeout"), "{}", r.text());
    // The app's connection is closed, not held.
    assert!(
        wait_until(5 * S, || g.get("/open-uploads").text() == "0"),
        "the app still reads the upload"
    );
    let logs = g.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("clientBodyTimeout"))
        .unwrap();
    assert!(line.contains("INFO"), "{line}");
    assert!(!logs.contains("ERROR"), "{logs}");
    // A slow but steady upload is not cut: bytes every 400 ms for 2.4 s.
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(20 * S)).unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
        .unwrap();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(400));
        s.write_all(b"x").unwrap();
    }
    let r = read_response(&mut BufReader::new(s));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The status code of the response on `s` (read byte by byte, so nothing
/// after the status line is consumed).
fn status_of(s: &TcpStream) -> String {
    s.set_read_timeout(Some(10 * S)).unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match (&*s).read(&mut b) {
            Ok(1) => line.push(b[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&line).into_owned();
    text.split_whitespace().nth(1).unwrap_or("").to_string()
}

#[test]
fn request_timeout_does_not_run_while_the_client_owes_its_body() {
    let (_s, g) = gateway(
        "client-owes",
        // Room on a loaded machine: the request must be on its way to the
        // app (the body polled) well inside requestTimeout.
        "requestTimeout=\"00:00:02\"",
        &[("clientBodyTimeout", "5")],
    );
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(20 * S)).unwrap();
    let t0 = Instant::now();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        .unwrap();
    let r = read_response(&mut BufReader::new(s));
    // The app waited on the client, not the other way round: no 504 after
    // 2 s, but the client's own limit.
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(t0.elapsed() >= 4 * S, "{:?}", t0.elapsed());
}

#[test]
fn max_web_sockets_holds_under_a_burst_of_handshakes() {
    let site = Site::new("ws-burst");
    site.python_app(
        "fixtures/websocket/echo_server.py",
        "",
        &[("maxWebSockets", "5")],
    );
    let g = Gateway::start(&site.dir, &[]);
    assert!(g.wait_log("app process is ready", 15 * S), "{}", g.logs());
    let handshake = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let mut socks: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(g.addr).unwrap())
        .collect();
    // All 30 handshakes are in before any answer is read.
    for s in &mut socks {
        s.write_all(handshake).unwrap();
    }
    let statuses: Vec<String> = socks.iter().map(status_of).collect();
    let upgraded = statuses.iter().filter(|s| *s == "101").count();
    let refused = statuses.iter().filter(|s| *s == "503").count();
    assert_eq!((upgraded, refused), (5, 25), "{statuses:?}");
    // Closing them frees the places.
    drop(socks);
    let mut last = String::new();
    assert!(
        wait_until(10 * S, || {
            let mut s = TcpStream::connect(g.addr).unwrap();
            s.write_all(handshake).unwrap();
            last = status_of(&s);
            last == "101"
        }),
        "{last}\n{}",
        g.logs()
    );
}

/// Open descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
fn running_out_of_descriptors_logs_a_count_and_recovers() {
    let (_s, g) = gateway("nofile", "", &[]);
    assert_eq!(g.get("/").status, 200);
    let limit = open_fds(g.pid()) + 8;
    let set = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", g.pid()))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("run prlimit");
    assert!(set.success());
    // More idle connections than descriptors are left; the rest wait in
    // the backlog while accept fails.
    let held: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(g.addr).unwrap())
        .collect();
    assert!(g.wait_log("accept failed", 5 * S), "{}", g.logs());
    // Long enough for about 30 failed accepts at one per 50 ms.
    std::thread::sleep(3 * S / 2);
    drop(held);
    assert!(wait_until(10 * S, || g.get("/").status == 200));
    assert!(
        g.wait_log("accept failed", 10 * S) && g.wait_log("times", 10 * S),
        "{}",
        g.logs()
    );
    let lines: Vec<String> = g
        .logs()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .map(str::to_string)
        .collect();
    assert!(lines.len() <= 3, "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains(" times")), "{lines:#?}");
}

#[test]
fn the_max_connections_503_is_well_formed() {
    let (_s, g) = gateway("maxconn-503", "", &[("maxConnections", "1")]);
    let mut held = TcpStream::connect(g.addr).unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(held.try_clone().unwrap());
    assert_eq!(read_response(&mut r).status, 200);
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(5 * S)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(len, body.len(), "{text}");
    assert!(body.contains("maxConnections"));
}
