//! WebSocket through the real binary with real peers: Python `websockets`
//! (server with compression on and off; client on and off) and Node `ws`,
//! in every compression mode; raw-socket checks for the handshake rules
//! and the bytes on the wire; close codes on shutdown and on app death.
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::frames::{read_frame, send_masked};
use support::*;

const S: Duration = Duration::from_secs(1);

fn echo_gateway(mode: &str, server_compression: &str) -> (Site, Gateway) {
    let site = Site::new(&format!("ws-{mode}-{server_compression}"));
    let server = repo_root().join("fixtures/websocket/echo_server.py");
    site.web_config(
        &format!("processPath=\"{}\" arguments=\"{}\"", venv_python().display(), server.display()),
        &format!("<environmentVariables><environmentVariable name=\"WS_COMPRESSION\" value=\"{server_compression}\"/></environmentVariables>"),
        &[("webSocketCompression", mode), ("shutdownTimeLimit", "2")],
    );
    let g = Gateway::start(&site.dir, &[]);
    assert!(g.wait_log("app process is ready", 15 * S), "{}", g.logs());
    (site, g)
}

/// The echo server with these `hpgate:` settings, hpgate started in front.
fn echo_with(name: &str, settings: &[(&str, &str)]) -> (Site, Gateway) {
    let site = Site::new(name);
    site.python_app("fixtures/websocket/echo_server.py", "", settings);
    let g = Gateway::start(&site.dir, &[]);
    (site, g)
}

fn run_json(mut cmd: Command) -> serde_json::Value {
    let out = cmd.output().expect("run client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "client output: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn python_client(g: &Gateway, compression: &str, action: &str) -> serde_json::Value {
    let mut cmd = Command::new(venv_python());
    cmd.arg(repo_root().join("fixtures/websocket/client.py"))
        .arg(format!("ws://{}/", g.addr))
        .arg(compression)
        .arg(action);
    run_json(cmd)
}

fn node_client(g: &Gateway) -> serde_json::Value {
    let mut cmd = Command::new("node");
    cmd.arg(repo_root().join("fixtures/websocket/client.mjs"))
        .arg(format!("ws://{}/", g.addr));
    run_json(cmd)
}

fn has_deflate(v: &serde_json::Value) -> bool {
    v.as_str().is_some_and(|s| s.contains("permessage-deflate"))
}

/// Every client x server x mode: echo works, and the negotiation each side
/// sees matches the mode.
fn matrix(mode: &str) {
    for server in ["on", "off"] {
        let (_site, g) = echo_gateway(mode, server);
        for client in ["on", "off"] {
            let r = python_client(&g, client, "echo");
            assert_eq!(r["ok"], true, "{mode} server={server} client={client}: {r}");
            assert_eq!(r["close_code"], 4000);
            assert_eq!(r["close_reason"], "bye from client");
            let offered = client == "on";
            let (server_sees, client_agrees) = match mode {
                "passthrough" => (offered, offered && server == "on"),
                "disable" => (false, false),
                _ => (false, offered),
            };
            assert_eq!(
                has_deflate(&r["server_saw"]),
                server_sees,
                "{mode} {server} {client}: {r}"
            );
            assert_eq!(
                has_deflate(&r["agreed"]),
                client_agrees,
                "{mode} {server} {client}: {r}"
            );
        }
        let r = node_client(&g);
        assert_eq!(r["ok"], true, "node, {mode} server={server}: {r}");
        assert_eq!(r["close_code"], 4001);
        let node_agrees = match mode {
            "passthrough" => server == "on",
            "disable" => false,
            _ => true,
        };
        assert_eq!(
            has_deflate(&r["agreed"]),
            node_agrees,
            "node {mode} {server}: {r}"
        );
    }
}

#[test]
fn passthrough_matrix() {
    matrix("passthrough");
}

#[test]
fn disable_matrix() {
    matrix("disable");
}

#[test]
fn offload_matrix() {
    matrix("offload");
}

/// The sample key of RFC 6455 section 1.3.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A valid WebSocket handshake request for `path`, then `extra` header
/// lines (each ending in CRLF).
fn handshake(path: &str, extra: &str) -> String {
    upgrade_request(
        "GET",
        path,
        &format!("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}"),
    )
}

/// An upgrade request with Host, Upgrade and Connection; `headers` (each
/// line ending in CRLF) choose the rest, so a handshake can be made wrong.
fn upgrade_request(method: &str, path: &str, headers: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{headers}\r\n"
    )
}

/// Opens a raw WebSocket with the given extension offer; returns the stream
/// (after the 101) and the response head.
fn raw_connect(g: &Gateway, extensions: Option<&str>) -> (BufReader<TcpStream>, String) {
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(10 * S)).unwrap();
    let ext = extensions
        .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
        .unwrap_or_default();
    s.write_all(handshake("/", &ext).as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (r, head)
}

#[test]
fn bytes_on_the_wire_are_compressed_only_in_offload() {
    let text = "the quick brown fox jumps over the lazy dog ".repeat(200);
    for (mode, compressed) in [("offload", true), ("disable", false)] {
        let (_site, g) = echo_gateway(mode, "on");
        let (mut r, head) = raw_connect(&g, Some("permessage-deflate; client_max_window_bits"));
        assert_eq!(head.contains("permessage-deflate"), compressed, "{head}");
        let _first = read_frame(&mut r); // the server's report
        let mut s = r.get_ref().try_clone().unwrap();
        send_masked(&mut s, 0x81, text.as_bytes());
        let (b0, payload) = read_frame(&mut r);
        if compressed {
            assert_eq!(b0 & 0x40, 0x40, "RSV1 set on a compressed message");
            assert!(
                payload.len() < text.len() / 10,
                "{} bytes for {}",
                payload.len(),
                text.len()
            );
            let mut z = payload.clone();
            z.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let mut out = Vec::new();
            let _ = flate2::read::DeflateDecoder::new(&z[..]).read_to_end(&mut out);
            assert_eq!(String::from_utf8_lossy(&out), text);
        } else {
            assert_eq!(b0 & 0x70, 0);
            assert_eq!(payload, text.as_bytes());
        }
    }
}

#[test]
fn offload_refuses_a_decompression_bomb() {
    // 64 MiB of zeros compresses to ~64 KiB; the limit is 16 MiB. Made
    // before connecting: in a debug build on a loaded machine this takes
    // long enough for the echo server's unanswered pings to close the
    // connection (1011) before the bomb is even sent.
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&vec![0u8; 64 << 20]).unwrap();
    let mut z = enc.finish().unwrap();
    z.extend_from_slice(&[0x00]); // keep it a valid stream start; no final sync tail needed
    let (_site, g) = echo_gateway("offload", "off");
    let (mut r, _) = raw_connect(&g, Some("permessage-deflate"));
    let _first = read_frame(&mut r);
    let mut s = r.get_ref().try_clone().unwrap();
    send_masked(&mut s, 0xC1, &z);
    // The echo server pings every 20 s, which compressing 64 MiB in a debug
    // build on a loaded machine may outlast: skip to the close frame.
    let payload = read_until_opcode(&mut r, 0x8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
}

#[test]
fn bad_handshakes_never_reach_the_app() {
    let site = Site::new("ws-bad");
    site.testapp_config("serve", "", &[]);
    let g = Gateway::start(&site.dir, &[]);
    let count = |g: &Gateway| g.get("/count").text().trim().parse::<u64>().unwrap();
    let before = count(&g);
    let cases = [
        (
            upgrade_request(
                "GET",
                "/",
                &format!("Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {KEY}\r\n"),
            ),
            426,
        ),
        (
            upgrade_request(
                "GET",
                "/",
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n",
            ),
            400,
        ),
        (
            upgrade_request("GET", "/", "Sec-WebSocket-Version: 13\r\n"),
            400,
        ),
        (
            upgrade_request(
                "POST",
                "/",
                &format!(
                    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\nContent-Length: 0\r\n"
                ),
            ),
            400,
        ),
    ];
    for (raw, status) in cases {
        let r = raw_request(g.addr, raw.as_bytes(), 5 * S);
        assert_eq!(r.status, status, "{raw}");
        if status == 426 {
            assert_eq!(r.header("sec-websocket-version"), Some("13"));
        }
    }
    assert_eq!(
        count(&g),
        before + 1,
        "only the /count request reached the app"
    );
    // An app that refuses the upgrade is heard as is.
    let r = raw_request(g.addr, handshake("/status?code=403", "").as_bytes(), 5 * S);
    assert_eq!(r.status, 403);
}

#[test]
fn unmasked_client_frames_are_a_protocol_error() {
    let (_site, g) = echo_gateway("passthrough", "off");
    let (mut r, _) = raw_connect(&g, None);
    let _first = read_frame(&mut r);
    let mut s = r.get_ref().try_clone().unwrap();
    s.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    let (b0, payload) = read_frame(&mut r);
    assert_eq!(b0 & 0x0f, 0x8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
    // The log line names the connection in its own fields (` conn=`; a
    // span would print `conn{`).
    let peer = format!("peer={}", s.local_addr().unwrap());
    let named = |l: &str| {
        l.contains("WebSocket protocol error") && l.contains(" conn=") && l.contains(&peer)
    };
    assert!(
        wait_until(5 * S, || g.logs().lines().any(named)),
        "{}",
        g.logs()
    );
}

/// Starts a waiting Python client and returns it once connected.
fn waiting_client(g: &Gateway) -> std::process::Child {
    let mut child = Command::new(venv_python())
        .arg(repo_root().join("fixtures/websocket/client.py"))
        .arg(format!("ws://{}/", g.addr))
        .arg("on")
        .arg("wait")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("ready"), "{line}");
    child
}

fn close_code(child: std::process::Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(s.lines().last().unwrap_or("{}")).unwrap()
}

#[test]
fn shutdown_sends_1001_and_app_death_sends_1012() {
    let (_site, mut g) = echo_gateway("passthrough", "on");
    let client = waiting_client(&g);
    // Kill the app process (the gateway's child): the client hears 1012.
    let app = children_of(g.pid()).into_iter().find(|p| {
        std::fs::read_to_string(format!("/proc/{p}/cmdline"))
            .is_ok_and(|c| c.contains("echo_server"))
    });
    let app = app.expect("echo server process");
    let _ = Command::new("kill").arg("-9").arg(app.to_string()).status();
    let r = close_code(client);
    assert_eq!(r["close_code"], 1012, "{r}");

    assert!(wait_until(10 * S, || g
        .logs()
        .matches("app process is ready")
        .count()
        >= 2));
    let client = waiting_client(&g);
    g.signal("TERM");
    let r = close_code(client);
    assert_eq!(r["close_code"], 1001, "{r}");
    assert_eq!(g.wait_exit(10 * S), Some(0));
}

fn read_until_opcode(r: &mut impl Read, opcode: u8) -> Vec<u8> {
    for _ in 0..20 {
        let (b0, p) = read_frame(r);
        if b0 & 0x0f == opcode {
            return p;
        }
    }
    panic!("no frame with opcode {opcode:#x}");
}

#[test]
fn server_close_code_and_reason_are_relayed() {
    for mode in ["passthrough", "offload"] {
        let (_site, g) = echo_gateway(mode, "off");
        let (mut r, _) = raw_connect(&g, None);
        let _first = read_frame(&mut r);
        let mut s = r.get_ref().try_clone().unwrap();
        send_masked(&mut s, 0x81, b"please close");
        let p = read_until_opcode(&mut r, 0x8);
        assert_eq!(u16::from_be_bytes([p[0], p[1]]), 4002, "{mode}");
        assert_eq!(&p[2..], b"server says bye", "{mode}");
    }
}

#[test]
fn offload_handles_a_ping_between_compressed_fragments() {
    let (_site, g) = echo_gateway("offload", "off");
    let (mut r, head) = raw_connect(&g, Some("permessage-deflate"));
    assert!(head.contains("permessage-deflate"));
    let _first = read_frame(&mut r);
    let text = "fragmented and compressed ".repeat(40);
    let mut c = flate2::Compress::new(flate2::Compression::default(), false);
    let mut z = Vec::with_capacity(text.len() + 64);
    c.compress_vec(text.as_bytes(), &mut z, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(z.ends_with(&[0, 0, 0xff, 0xff]));
    z.truncate(z.len() - 4);
    let (a, b) = z.split_at(z.len() / 2);
    let mut s = r.get_ref().try_clone().unwrap();
    send_masked(&mut s, 0x41, a); // text, RSV1, not final
    send_masked(&mut s, 0x89, b"between"); // ping between fragments
    send_masked(&mut s, 0x80, b); // final continuation
    let pong = read_until_opcode(&mut r, 0xA);
    assert_eq!(pong, b"between");
    let (b0, payload) = read_frame(&mut r);
    assert_eq!(b0, 0xC1, "one final compressed text frame");
    let mut zz = payload;
    zz.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::new();
    let _ = flate2::read::DeflateDecoder::new(&zz[..]).read_to_end(&mut out);
    assert_eq!(String::from_utf8_lossy(&out), text);
}

#[test]
fn websocket_limits_idle_timeout_and_pings() {
    let (_site, g) = echo_with(
        "ws-limits",
        &[
            ("maxWebSockets", "1"),
            ("webSocketIdleTimeout", "2"),
            ("webSocketPingInterval", "1"),
        ],
    );
    let (mut r, _) = raw_connect(&g, None);
    let _first = read_frame(&mut r);
    // A second WebSocket is over maxWebSockets.
    let second = raw_request(g.addr, handshake("/", "").as_bytes(), 5 * S);
    assert_eq!(second.status, 503);
    // hpgate pings the idle client, then closes it when the idle limit passes.
    let ping = read_until_opcode(&mut r, 0x9);
    assert_eq!(ping, b"hpgate");
    let close = read_until_opcode(&mut r, 0x8);
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1001);
}

#[test]
fn client_traffic_alone_keeps_a_websocket_past_the_idle_limit() {
    let (_site, g) = echo_with("ws-idle-up", &[("webSocketIdleTimeout", "2")]);
    let (mut r, _) = raw_connect(&g, None);
    let _first = read_frame(&mut r);
    let mut s = r.get_ref().try_clone().unwrap();
    // The app stops answering; the client keeps talking for 3.5 s, longer
    // than the 2 s limit: frames in one direction are activity.
    send_masked(&mut s, 0x81, b"be quiet");
    for _ in 0..7 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        send_masked(&mut s, 0x81, b"still here");
    }
    r.get_ref()
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = r.read(&mut byte);
    assert!(
        early.is_err(),
        "closed while the client was active: {early:?}"
    );
    // Then silence both ways: the idle limit closes it (1001).
    r.get_ref().set_read_timeout(Some(5 * S)).unwrap();
    let close = read_until_opcode(&mut r, 0x8);
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1001);
}

#[test]
fn disable_mode_refuses_an_app_that_compresses_anyway() {
    let site = Site::new("ws-misbehave");
    let server = repo_root().join("fixtures/websocket/bad_server.py");
    site.web_config(
        &format!("processPath=\"python3\" arguments=\"{}\"", server.display()),
        "",
        &[("webSocketCompression", "disable")],
    );
    let g = Gateway::start(&site.dir, &[]);
    let r = raw_request(
        g.addr,
        handshake("/", "Sec-WebSocket-Extensions: permessage-deflate\r\n").as_bytes(),
        5 * S,
    );
    assert_eq!(r.status, 502);
    assert!(
        r.text()
            .contains("accepted permessage-deflate although hpgate removed it"),
        "{}",
        r.text()
    );
}

#[test]
fn recycling_the_app_closes_websockets_with_1012() {
    let (site, g) = echo_gateway("passthrough", "on");
    let client = waiting_client(&g);
    // Any edit of web.config recycles the app.
    let text = std::fs::read_to_string(site.path("web.config")).unwrap();
    site.write("web.config", &text.replace("value=\"on\"", "value=\"off\""));
    let r = close_code(client);
    assert_eq!(r["close_code"], 1012, "{r}");
}

#[test]
fn half_close_after_a_close_frame_ends_both_legs() {
    let (_site, g) = echo_gateway("passthrough", "off");
    let (mut r, _) = raw_connect(&g, None);
    let _first = read_frame(&mut r);
    let mut s = r.get_ref().try_clone().unwrap();
    send_masked(&mut s, 0x88, &1000u16.to_be_bytes());
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let p = read_until_opcode(&mut r, 0x8);
    assert_eq!(u16::from_be_bytes([p[0], p[1]]), 1000);
    // hpgate then closes its side too: nothing is left half-open.
    let t0 = std::time::Instant::now();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(t0.elapsed() < 5 * S);
}

#[test]
fn websockets_count_toward_max_connections() {
    let (_site, g) = echo_with("ws-maxconn", &[("maxConnections", "2")]);
    assert!(g.wait_log("app process is ready", 15 * S), "{}", g.logs());
    // Two WebSockets take both places: each holds two descriptors in
    // hpgate, like any proxied connection.
    let first = raw_connect(&g, None);
    let second = raw_connect(&g, None);
    let r = raw_request(g.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 5 * S);
    assert_eq!(r.status, 503, "a third connection is over maxConnections");
    drop(first);
    // The place comes back when the WebSocket ends (the echo app answers
    // a plain GET itself, with a status of its own).
    assert!(wait_until(5 * S, || {
        let s = raw_request(g.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 5 * S).status;
        s != 503 && s != 0
    }));
    drop(second);
}
