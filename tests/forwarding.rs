//! HTTP forwarding through the real binary to the stdlib test app.
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

const S: Duration = Duration::from_secs(1);

fn gateway(name: &str, attrs: &str, settings: &[(&str, &str)]) -> (Site, Gateway) {
    let site = Site::new(name);
    site.testapp_config("serve", attrs, settings);
    let g = Gateway::start(&site.dir, &[]);
    assert!(g.wait_log("app process is ready", 10 * S));
    (site, g)
}

fn echo(r: &Reply) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()))
}

fn header<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    v["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))?[1]
        .as_str()
}

fn count(g: &Gateway) -> u64 {
    g.get("/count").text().trim().parse().unwrap()
}

#[test]
fn request_line_headers_and_forwarding_headers() {
    let (_s, g) = gateway("headers", "", &[]);
    let r = request(
        g.addr,
        "PATCH",
        "/echo/a%2Fb/../c?x=1&y=%20z&x=2",
        &[
            ("X-First", "1"),
            ("Connection", "X-Secret"),
            ("X-Secret", "hop"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic eA=="),
            ("X-Forwarded-For", "6.6.6.6"),
            ("MS-ASPNETCORE-TOKEN", "spoof"),
            ("X-IIS-WindowsAuthToken", "spoof"),
            ("X-Last", "2"),
        ],
        b"body",
    );
    let v = echo(&r);
    assert_eq!(v["method"], "PATCH");
    assert_eq!(v["path"], "/echo/a%2Fb/../c?x=1&y=%20z&x=2");
    assert_eq!(v["body_len"], 4);
    assert_eq!(header(&v, "host"), Some(g.addr.to_string().as_str()));
    for gone in [
        "x-secret",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "ms-aspnetcore-token",
        "x-iis-windowsauthtoken",
    ] {
        assert_eq!(header(&v, gone), None, "{gone} must not reach the app");
    }
    let names: Vec<&str> = v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_str().unwrap())
        .collect();
    let first = names
        .iter()
        .position(|n| n.eq_ignore_ascii_case("x-first"))
        .unwrap();
    let last = names
        .iter()
        .position(|n| n.eq_ignore_ascii_case("x-last"))
        .unwrap();
    assert!(first < last, "order kept: {names:?}");
    assert_eq!(header(&v, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&v, "x-forwarded-proto"), Some("http"));
    assert_eq!(
        header(&v, "x-forwarded-host"),
        Some(g.addr.to_string().as_str())
    );
    assert_eq!(
        header(&v, "forwarded"),
        Some(format!("for=127.0.0.1;host=\"{}\";proto=http", g.addr).as_str())
    );

    let out = g.get("/headers-out");
    assert_eq!(out.header("x-test-one"), Some("1"));
    assert_eq!(out.header("x-hop"), None);
    assert_eq!(out.header("keep-alive"), None);
}

/// Every header line the app got, as (name, value), in order.
fn lines(v: &serde_json::Value) -> Vec<(String, String)> {
    v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let s = |i: usize| h[i].as_str().unwrap().to_ascii_lowercase();
            (s(0), s(1))
        })
        .collect()
}

/// A plain GET has its forwarding fields written with its head (no map
/// edits), one carrying such fields of its own has them replaced in the
/// map: the app gets the same fields, once each, either way.
#[test]
fn forwarding_headers_of_plain_gets() {
    let (_s, g) = gateway("plain-get", "", &[]);
    let host = g.addr.to_string();
    let forwarded = format!("for=127.0.0.1;host=\"{host}\";proto=http");
    let want = |accept: &str| {
        vec![
            ("host".to_string(), host.clone()),
            ("accept".to_string(), accept.to_string()),
            ("x-forwarded-for".to_string(), "127.0.0.1".to_string()),
            ("x-forwarded-proto".to_string(), "http".to_string()),
            ("x-forwarded-host".to_string(), host.clone()),
            ("forwarded".to_string(), forwarded.clone()),
        ]
    };
    let plain = echo(&request(
        g.addr,
        "GET",
        "/echo/p",
        &[("Accept", "*/*")],
        b"",
    ));
    assert_eq!(lines(&plain), want("*/*"), "connection is hop-by-hop");
    let spoofed = &[
        ("Accept", "text/plain"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "for=6.6.6.6"),
    ];
    let mut got = lines(&echo(&request(g.addr, "GET", "/echo/p", spoofed, b"")));
    got.sort();
    let mut replaced = want("text/plain");
    replaced.sort();
    assert_eq!(got, replaced);
}

#[test]
fn trusted_forwarded_headers_are_appended() {
    let (_s, g) = gateway("trust", "", &[("trustForwardedHeaders", "true")]);
    let v = echo(&request(
        g.addr,
        "GET",
        "/echo",
        &[("X-Forwarded-For", "6.6.6.6")],
        b"",
    ));
    assert_eq!(header(&v, "x-forwarded-for"), Some("6.6.6.6, 127.0.0.1"));
}

#[test]
fn http10_clients_are_served() {
    let (_s, g) = gateway("http10", "", &[]);
    let r = raw_request(g.addr, b"GET / HTTP/1.0\r\n\r\n", 5 * S);
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("hello from"));
}

#[test]
fn server_sent_events_stream_one_by_one() {
    let (_s, g) = gateway("sse", "", &[]);
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.write_all(b"GET /sse?n=5&interval=0.15 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut seen = Vec::new();
    let mut line = String::new();
    while seen.len() < 5 {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0);
        if line.starts_with("data: event") {
            seen.push(Instant::now());
        }
    }
    let spread = seen[4] - seen[0];
    assert!(
        spread >= Duration::from_millis(450),
        "events arrived together ({spread:?}): buffered"
    );
}

#[test]
fn chunked_upload_and_download_stream() {
    let (_s, g) = gateway("chunked", "", &[]);
    let r = request(
        g.addr,
        "POST",
        "/upload",
        &[("Transfer-Encoding", "chunked")],
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    let v = echo(&r);
    assert_eq!(v["body_len"], 11);
    let d = g.get("/download?size=300000&chunk=10000");
    assert_eq!(d.header("transfer-encoding"), Some("chunked"));
    assert_eq!(d.body.len(), 300000);
    assert!(d
        .body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i % 256) as u8));
}

#[test]
fn expect_100_continue_and_head() {
    let (_s, g) = gateway("expect", "", &[]);
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(5 * S)).unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line}");
    r.read_line(&mut line).unwrap();
    s.write_all(b"hello").unwrap();
    let reply = read_response(&mut r);
    assert_eq!(reply.status, 200);
    assert_eq!(echo(&reply)["body_len"], 5);

    let head = raw_request(
        g.addr,
        b"HEAD /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        5 * S,
    );
    assert_eq!(head.status, 200);
    assert!(head.header("content-length").is_some());
}

#[test]
fn one_gib_download_keeps_memory_flat() {
    let (_s, g) = gateway("bigdl", "", &[]);
    let base = rss_kib(g.pid()).unwrap();
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.write_all(b"GET /download?size=1073741824&chunk=1048576 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut peak = base;
    let mut last_sample = Instant::now();
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        if last_sample.elapsed() > Duration::from_millis(100) {
            peak = peak.max(rss_kib(g.pid()).unwrap_or(0));
            last_sample = Instant::now();
        }
    }
    assert!(total > 1 << 30, "got {total} bytes");
    assert!(
        peak - base < 40 * 1024,
        "RSS grew from {base} KiB to {peak} KiB"
    );
}

#[test]
fn big_upload_streams_with_flat_memory() {
    let (_s, g) = gateway("bigul", "", &[]);
    let base = rss_kib(g.pid()).unwrap();
    let size: usize = 256 << 20;
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.write_all(format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut peak = base;
    for i in 0..size / chunk.len() {
        s.write_all(&chunk).unwrap();
        if i % 16 == 0 {
            peak = peak.max(rss_kib(g.pid()).unwrap_or(0));
        }
    }
    let reply = read_response(&mut BufReader::new(s));
    assert_eq!(echo(&reply)["body_len"], size as u64);
    assert!(
        peak - base < 40 * 1024,
        "RSS grew from {base} KiB to {peak} KiB"
    );
}

#[test]
fn request_timeout_is_an_inactivity_limit() {
    let (_s, g) = gateway("timeout", "requestTimeout=\"00:00:02\"", &[]);
    let t0 = Instant::now();
    let r = g.get("/slow?delay=4");
    assert_eq!(r.status, 504);
    assert!(
        r.text().contains("requestTimeout") && r.text().contains("00:00:02"),
        "{}",
        r.text()
    );
    assert!(t0.elapsed() < 4 * S);
    // Bytes every second keep a 3-second stream alive past the 2-second limit.
    let r = g.get("/sse?n=4&interval=1");
    assert_eq!(r.status, 200);
    assert_eq!(r.text().matches("data: event").count(), 4);
    // Silence after headers: the connection is cut, not left hanging.
    let t0 = Instant::now();
    let r = g.get("/stall?after=10");
    assert!(t0.elapsed() < 6 * S);
    assert!(r.body.len() <= 10);
}

#[test]
fn crashes_give_502_and_cut_streams() {
    let (_s, g) = gateway("crashfwd", "", &[]);
    let t0 = Instant::now();
    let r = g.get("/crash");
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("exited while handling the request"),
        "{}",
        r.text()
    );
    assert!(t0.elapsed() < 5 * S);
    assert!(wait_until(5 * S, || g.get("/").status == 200));
    let t0 = Instant::now();
    let r = g.get("/crash-mid");
    assert!(t0.elapsed() < 5 * S);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), g.logs());
    assert!(r.body.len() <= 100);
}

#[test]
fn an_answer_written_after_the_exit_is_seen_still_counts() {
    // The supervisor can see the process exit before the proxy has read
    // what the app wrote last. Here a child sharing the socket answers
    // 50 ms after the exit (well before hpgate stops what is left of the
    // process group, 200 ms on): the answer reaches the client, not a 502.
    let (_s, g) = gateway("crashrace", "", &[]);
    let r = g.get("/answer-after-exit");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "later"),
        "{}",
        g.logs()
    );
    // With no answer at all the request still ends promptly, although the
    // child kept the socket open: 502, not a hang.
    assert!(wait_until(5 * S, || g.get("/").status == 200));
    let t0 = Instant::now();
    let r = g.get("/answer-after-exit?delay=3");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(t0.elapsed() < 2 * S, "{:?}", t0.elapsed());
}

#[test]
fn client_abort_leaves_the_gateway_working() {
    let (_s, g) = gateway("abort", "", &[]);
    for (mark, path) in [
        ("slow", "/slow?delay=2"),
        ("download", "/download?size=1073741824"),
    ] {
        let mut s = TcpStream::connect(g.addr).unwrap();
        s.write_all(format!("GET {path}&mark={mark} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        // Abort only once the app has the request: mid-exchange, not before.
        assert!(
            g.wait_log(&format!("testapp saw {mark}"), 10 * S),
            "{}",
            g.logs()
        );
        drop(s);
    }
    assert_eq!(g.get("/").status, 200);
}

/// Sends `raw`, expects 400 and a closed connection, and checks the app saw nothing.
fn rejected(g: &Gateway, raw: &[u8]) {
    rejected_seen(g, raw, 0)
}

/// As `rejected`, allowing the app to have seen `seen` requests (a body
/// error is found only after the head was forwarded).
fn rejected_seen(g: &Gateway, raw: &[u8], seen: u64) {
    let before = count(g);
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(5 * S)).unwrap();
    s.write_all(raw).unwrap();
    let mut r = BufReader::new(s);
    let reply = read_response(&mut r);
    assert_eq!(
        reply.status,
        400,
        "for {:?}: {}",
        String::from_utf8_lossy(raw),
        reply.text()
    );
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1"),
        "connection kept serving: {rest:?}"
    );
    assert!(
        count(g) <= before + 1 + seen,
        "the app saw the request: {:?}",
        String::from_utf8_lossy(raw)
    );
}

macro_rules! smuggling {
    ($($name:ident: $raw:expr;)*) => {$(
        #[test]
        fn $name() {
            let (_s, g) = gateway(stringify!($name), "", &[]);
            rejected(&g, $raw);
        }
    )*};
}

smuggling! {
    smuggle_cl_and_te: b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n";
    smuggle_two_cl_same: b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
    smuggle_two_cl_different: b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
    smuggle_cl_plus: b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello";
    smuggle_cl_list: b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello";
    smuggle_cl_text: b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n";
    smuggle_te_not_last: b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n";
    smuggle_te_identity: b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n";
    smuggle_te_xchunked: b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n";
    smuggle_te_twice: b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    smuggle_obs_fold: b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n";
    smuggle_bare_lf: b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: 1\nX-B: 2\r\n\r\n";
    smuggle_bare_cr: b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: 1\rX-B: 2\r\n\r\n";
    smuggle_space_before_colon: b"GET /echo HTTP/1.1\r\nHost : x\r\n\r\n";
}

#[test]
fn smuggle_bad_chunk_size() {
    let (_s, g) = gateway("badchunk", "", &[]);
    // The head is valid and reaches the app; the broken body ends it with a 400.
    rejected_seen(&g, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 1);
}

#[test]
fn size_limits_and_slowloris() {
    let (_s, g) = gateway(
        "limits",
        "",
        &[
            ("maxRequestHeaderBytes", "2048"),
            ("maxRequestHeaders", "20"),
            ("maxRequestLineBytes", "512"),
            ("headerReadTimeout", "1"),
        ],
    );
    let big = "v".repeat(3000);
    assert_eq!(
        request(g.addr, "GET", "/", &[("X-Big", &big)], b"").status,
        431
    );
    let many: Vec<(String, String)> = (0..25)
        .map(|i| (format!("X-H{i}"), "1".to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(request(g.addr, "GET", "/", &refs, b"").status, 431);
    assert_eq!(g.get(&format!("/{}", "p".repeat(600))).status, 414);

    let mut s = TcpStream::connect(g.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    s.set_read_timeout(Some(5 * S)).unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(t0.elapsed() < 3 * S, "slow client not cut off");
}

#[test]
fn connections_over_the_limit_get_503() {
    let (_s, g) = gateway("maxconn", "", &[("maxConnections", "3")]);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(g.addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        assert_eq!(read_response(&mut r).status, 200);
        held.push((s, r));
    }
    let r = raw_request(g.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 5 * S);
    assert_eq!(r.status, 503);
    drop(held);
    assert!(wait_until(5 * S, || g.get("/").status == 200));
}

#[test]
fn access_log_lines_and_no_secrets() {
    let site = Site::new("access");
    site.testapp_config("serve", "", &[]);
    let g = Gateway::start(&site.dir, &["--log-format", "json"]);
    let r = request(
        g.addr,
        "GET",
        "/status?code=201",
        &[
            ("Authorization", "secret-token"),
            ("Cookie", "c=secret-cookie"),
        ],
        b"",
    );
    assert_eq!(r.status, 201);
    assert!(g.wait_log("/status?code=201", 5 * S));
    let logs = g.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("/status?code=201"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["status"], 201);
    assert!(v["bytes"].as_u64().unwrap() > 0);
    assert!(v["pid"].as_str().unwrap().parse::<u32>().is_ok());
    assert!(!logs.contains("secret-token") && !logs.contains("secret-cookie"));
}

#[test]
fn upstream_connections_are_kept_alive_and_reused() {
    let (_s, g) = gateway("reuse", "", &[]);
    // Separate client connections, one after another: hpgate's pool should
    // carry them all over one app connection.
    let ports: std::collections::HashSet<u64> = (0..20)
        .map(|_| echo(&g.get("/echo"))["peer_port"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ports.len(),
        1,
        "20 sequential requests used {} app connections",
        ports.len()
    );
}

#[test]
fn app_closing_kept_alive_connections_loses_no_request() {
    let (_s, g) = gateway("appclose", "", &[]);
    // The app closes each connection right after answering, without saying
    // so: the next request finds a dead pooled connection and must still
    // reach the app (on a new connection), with no error page.
    for i in 0..40 {
        let r = g.get(if i % 2 == 0 { "/close-after" } else { "/echo" });
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
}

#[test]
fn a_request_the_app_dropped_unanswered_is_repeated_only_when_safe() {
    let (_s, g) = gateway("replay", "", &[]);
    // The app closes its kept-alive connection as the next request arrives.
    // A GET (safe to repeat, no body) is sent again on a new connection.
    for i in 0..5 {
        assert_eq!(g.get("/close-on-next").status, 200);
        let r = g.get("/echo");
        assert_eq!(r.status, 200, "GET {i}: {}", r.text());
    }
    // A POST may have had effects: it is not repeated, the client hears 502.
    // Requests with a body travel on hyper's pooled connections, bodiless
    // ones on the lean path's (proxy/lean/): both follow the rule.
    let r = request(g.addr, "POST", "/close-on-next", &[], b"x");
    assert_eq!(r.status, 200);
    let r = request(g.addr, "POST", "/echo", &[], b"once");
    assert_eq!(r.status, 502, "with a body: {}", r.text());
    assert!(r.text().contains("closed the connection"), "{}", r.text());
    assert_eq!(g.get("/close-on-next").status, 200);
    let r = request(g.addr, "POST", "/echo", &[("Content-Length", "0")], b"");
    assert_eq!(r.status, 502, "without a body: {}", r.text());
    assert!(r.text().contains("closed the connection"), "{}", r.text());
    // A DELETE is safe to repeat: sent again.
    assert_eq!(g.get("/close-on-next").status, 200);
    assert_eq!(request(g.addr, "DELETE", "/echo", &[], b"").status, 200);
}

#[test]
fn http10_request_without_host_and_absolute_form_target() {
    let (_s, g) = gateway("originform", "", &[]);
    let r = raw_request(
        g.addr,
        b"GET /echo?a=1 HTTP/1.0\r\n\r\n",
        Duration::from_secs(10),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = echo(&r);
    assert!(
        header(&v, "host").is_some_and(|h| h.starts_with("127.0.0.1:")),
        "HTTP/1.1 to the app needs a Host: {v}"
    );
    assert!(
        header(&v, "x-forwarded-host").is_none(),
        "the Host hpgate added is not the client's: {v}"
    );
    let abs = format!(
        "GET http://{}/echo/abs?q=2 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        g.addr, g.addr
    );
    let v = echo(&raw_request(
        g.addr,
        abs.as_bytes(),
        Duration::from_secs(10),
    ));
    assert_eq!(v["path"], "/echo/abs?q=2", "the app gets origin form");
}

#[test]
fn a_busy_pooled_connection_does_not_hold_up_the_next_request() {
    let (_s, g) = gateway("busypool", "", &[]);
    // Client A starts a large upload; the app answers at once without
    // reading it. A's response ends while its upload is still going out on
    // that app connection, so the pooled connection is busy.
    let mut a = TcpStream::connect(g.addr).unwrap();
    a.set_read_timeout(Some(10 * S)).unwrap();
    a.write_all(
        b"POST /early?hold=20 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nxxxx",
    )
    .unwrap();
    let mut ra = BufReader::new(a.try_clone().unwrap());
    let first = read_response(&mut ra);
    assert_eq!(first.status, 200, "{}", first.text());
    // B must not wait for A's upload (it would, for as long as A sends).
    let started = Instant::now();
    let r = g.get("/echo");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        started.elapsed() < 5 * S,
        "the next request waited {:?} behind a busy connection",
        started.elapsed()
    );
    drop(a);
}

/// Threads of a process, from /proc.
fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn worker_threads_sizes_the_runtime() {
    // hpgate runs no blocking-pool work, so at rest it has its main thread
    // plus exactly the worker threads asked for; one worker is the main
    // thread itself (a current-thread runtime, like one nginx worker).
    for (threads, expected) in [("1", 1), ("3", 4)] {
        let (_site, g) = gateway("threads", "", &[("workerThreads", threads)]);
        assert_eq!(g.get("/echo").status, 200);
        assert_eq!(thread_count(g.pid()), expected, "workerThreads={threads}");
    }
}
