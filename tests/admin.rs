//! The admin listener (`--admin`): /metrics checked by promtool, the
//! probes, /status and `hpgate status`, against the real binary.
mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::frames::{read_frame, send_masked};
use support::*;

const S: Duration = Duration::from_secs(1);

fn start(site: &Site) -> (Gateway, SocketAddr) {
    let g = Gateway::start(&site.dir, &["--admin", "127.0.0.1:0"]);
    let admin = g.admin_addr();
    (g, admin)
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], b"")
}

/// Runs promtool with `args`, `input` on stdin; its output on failure.
fn promtool(args: &[&str], input: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn metrics_count_requests_and_pass_promtool() {
    let site = Site::new("admin-metrics");
    site.testapp_config("serve", "", &[]);
    let (g, admin) = start(&site);
    let mut body_bytes = 0;
    for _ in 0..3 {
        let r = g.get("/");
        assert_eq!(r.status, 200);
        body_bytes += r.body.len();
    }
    let r = request(g.addr, "POST", "/", &[], b"xyz");
    assert_eq!(r.status, 200);
    body_bytes += r.body.len();
    let m = get(admin, "/metrics");
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = m.text();
    let get_ok = r#"hpgate_requests_total{class="2xx",method="GET",protocol="HTTP/1.1"}"#;
    assert_eq!(metric_value(&text, get_ok), Some(3.0), "{text}");
    let post_ok = r#"hpgate_requests_total{class="2xx",method="POST",protocol="HTTP/1.1"}"#;
    assert_eq!(metric_value(&text, post_ok), Some(1.0), "{text}");
    let bytes_in = metric_value(&text, "hpgate_request_body_bytes_total");
    assert_eq!(bytes_in, Some(3.0), "{text}");
    let bytes_out = metric_value(&text, "hpgate_response_body_bytes_total");
    assert_eq!(bytes_out, Some(body_bytes as f64), "{text}");
    assert_eq!(
        metric_value(&text, "hpgate_request_duration_seconds_count"),
        Some(4.0)
    );
    assert_eq!(
        metric_value(&text, r#"hpgate_app_processes{state="ready"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&text, "hpgate_process_starts_total"),
        Some(1.0)
    );
    assert!(text.contains("hpgate_build_info{version=\""), "{text}");
    if let Err(e) = promtool(&["check", "metrics"], &text) {
        panic!("promtool check metrics:\n{e}\nexposition:\n{text}");
    }
    // Prometheus asks for OpenMetrics and gets it.
    let om = request(
        admin,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text;version=1.0.0")],
        b"",
    );
    assert!(om
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(om.text().ends_with("# EOF\n"));
}

/// The admin paths are the app's paths on the public listener.
#[test]
fn admin_paths_are_not_served_on_the_public_listener() {
    let site = Site::new("admin-private");
    site.testapp_config("serve", "", &[]);
    let (g, _admin) = start(&site);
    for path in ["/metrics", "/status", "/readyz"] {
        let r = g.get(path);
        assert!(!r.text().contains("hpgate_"), "{path}: {}", r.text());
        assert!(!r.text().contains("\"processes\""), "{path}: {}", r.text());
    }
    // Off by default: no admin listener without the setting.
    let plain = Gateway::start(&site.dir, &[]);
    assert!(!plain.logs().contains("admin listener"));
}

#[test]
fn readyz_is_503_while_app_offline_htm_is_up() {
    let site = Site::new("admin-ready");
    site.testapp_config("serve", "", &[("shutdownTimeLimit", "1")]);
    let (_g, admin) = start(&site);
    let live = get(admin, "/livez");
    assert_eq!((live.status, live.text().as_str()), (200, "ok\n"));
    assert!(wait_until(10 * S, || get(admin, "/readyz").status == 200));
    site.write("app_offline.htm", "<h1>Back soon</h1>");
    assert!(wait_until(5 * S, || get(admin, "/readyz").status == 503));
    let r = get(admin, "/readyz");
    assert!(r.text().contains("app_offline.htm"), "{}", r.text());
    assert_eq!(get(admin, "/livez").status, 200);
    std::fs::remove_file(site.path("app_offline.htm")).unwrap();
    assert!(wait_until(10 * S, || get(admin, "/readyz").status == 200));
}

#[test]
fn status_shows_each_process_and_hpgate_status_prints_it() {
    let site = Site::new("admin-status");
    site.testapp_config("serve", "", &[]);
    let (g, admin) = start(&site);
    let pid = app_pid(&g).expect("app answers");
    // A crash: the restart shows in /status and the exit in the metrics.
    assert_eq!(g.get("/exit?code=3").status, 200);
    assert!(wait_until(10 * S, || app_pid(&g).is_some_and(|p| p != pid)));
    let new_pid = app_pid(&g).unwrap();
    let r = get(admin, "/status");
    assert_eq!(r.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(json["ready"], true);
    assert_eq!(json["listeners"][0], format!("http://{}", g.addr));
    let cfg = json["config_file"].as_str().unwrap();
    assert!(cfg.ends_with("web.config"), "{cfg}");
    let p = &json["processes"][0];
    assert_eq!(p["pid"], new_pid);
    assert_eq!(p["state"], "ready");
    assert_eq!(p["restarts"], 1);
    assert_eq!(p["last_exit_cause"], "crashed");
    assert!(p["last_exit"].as_str().unwrap().contains(&pid.to_string()));
    assert!(p["port"].as_u64().is_some_and(|port| port > 0));
    assert!(p["uptime_seconds"].as_u64().is_some());
    assert_eq!(p["open_requests"], 0);
    let m = get(admin, "/metrics").text();
    assert_eq!(
        metric_value(&m, r#"hpgate_process_exits_total{cause="crashed"}"#),
        Some(1.0)
    );

    let out = Command::new(hpgate_bin())
        .args(["status", "--admin", &admin.to_string()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.contains(": ready"), "{table}");
    assert!(table.contains("PID"), "{table}");
    assert!(table.contains(&new_pid.to_string()), "{table}");
    let out = Command::new(hpgate_bin())
        .args(["status", "--json"])
        .env("HPGATE_ADMIN", admin.to_string())
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["processes"][0]["pid"], new_pid);
}

/// Not ready: `hpgate status` says why and exits 3; nothing there: exit 1.
#[test]
fn hpgate_status_exit_codes() {
    let site = Site::new("admin-notready");
    site.testapp_config("serve", "", &[("shutdownTimeLimit", "1")]);
    let (_g, admin) = start(&site);
    assert!(wait_until(10 * S, || get(admin, "/readyz").status == 200));
    site.write("app_offline.htm", "down");
    assert!(wait_until(5 * S, || get(admin, "/readyz")
        .text()
        .starts_with("offline")));
    let out = Command::new(hpgate_bin())
        .args(["status", "--admin", &admin.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("NOT READY: offline"), "{table}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let out = Command::new(hpgate_bin())
        .args(["status", "--admin", &addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the status"));
}

/// The example alert rules in docs/observability.md are valid.
#[test]
fn documented_alert_rules_pass_promtool() {
    let doc = std::fs::read_to_string(repo_root().join("docs/observability.md")).unwrap();
    let rules = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|r| r.split("```").next())
        .expect("a yaml block");
    let dir = Site::new("admin-rules");
    dir.write("rules.yml", rules);
    let path = dir.path("rules.yml");
    if let Err(e) = promtool(&["check", "rules", path.to_str().unwrap()], "") {
        panic!("promtool check rules:\n{e}");
    }
}

/// hpgate's own 503s (app_offline.htm) are counted by cause.
#[test]
fn unavailable_answers_are_counted_by_cause() {
    let site = Site::new("admin-unavailable");
    site.testapp_config("serve", "", &[("shutdownTimeLimit", "1")]);
    let (g, admin) = start(&site);
    assert_eq!(g.get("/").status, 200);
    site.write("app_offline.htm", "down");
    assert!(wait_until(5 * S, || g.get("/").status == 503));
    let m = get(admin, "/metrics").text();
    let series = r#"hpgate_unavailable_responses_total{status="503",cause="offline"}"#;
    assert!(metric_value(&m, series).is_some_and(|n| n >= 1.0), "{m}");
    // app_offline.htm stopped the process: an exit by recycle.
    let recycled = r#"hpgate_process_exits_total{cause="recycled"}"#;
    let stopped = wait_until(10 * S, || metric(admin, recycled) == 1.0);
    assert!(stopped, "{}", get(admin, "/metrics").text());
}

/// A Prometheus server kept running for one test; killed on drop.
struct Prometheus {
    child: std::process::Child,
    addr: SocketAddr,
    _site: Site,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Starts Prometheus on loopback, scraping `target` every second.
fn prometheus(target: SocketAddr) -> Prometheus {
    let site = Site::new("admin-prometheus");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: hpgate\n    static_configs:\n      - targets: ['{target}']\n"
    );
    site.write("prometheus.yml", &config);
    let addr = free_addr();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            site.path("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            site.path("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus; scripts/setup installs it)");
    let p = Prometheus {
        child,
        addr,
        _site: site,
    };
    assert!(
        wait_until(30 * S, || get(p.addr, "/-/ready").status == 200),
        "prometheus did not get ready"
    );
    p
}

/// The value Prometheus's API returns for an instant `query` (ASCII).
fn query(p: &Prometheus, query: &str) -> Option<f64> {
    let encoded: String = query
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '(' | ')' => c.to_string(),
            _ => format!("%{:02X}", c as u32),
        })
        .collect();
    let r = get(p.addr, &format!("/api/v1/query?query={encoded}"));
    let json: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// A real Prometheus scrapes the admin listener and sees the requests.
#[test]
fn prometheus_scrapes_the_request_counter() {
    let site = Site::new("admin-scrape");
    site.testapp_config("serve", "", &[]);
    let (g, admin) = start(&site);
    for _ in 0..7 {
        let r = request(g.addr, "DELETE", "/", &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let p = prometheus(admin);
    let q = "sum(hpgate_requests_total{method=\"DELETE\"})";
    let mut seen = None;
    let got = wait_until(60 * S, || {
        seen = query(&p, q);
        seen == Some(7.0)
    });
    assert!(got, "Prometheus saw {seen:?} for {q}");
    assert_eq!(query(&p, "up{job=\"hpgate\"}"), Some(1.0));
}

// ---- WebSockets, app connects, lock-outs, certificates ----

/// hpgate with `--admin` in front of the WebSocket echo server, in `mode`.
fn echo_gateway(mode: &str, server_compression: &str) -> (Site, Gateway, SocketAddr) {
    let site = Site::new(&format!("admin-ws-{mode}"));
    let server = repo_root().join("fixtures/websocket/echo_server.py");
    site.web_config(
        &format!(
            "processPath=\"{}\" arguments=\"{}\"",
            venv_python().display(),
            server.display()
        ),
        &format!("<environmentVariables><environmentVariable name=\"WS_COMPRESSION\" value=\"{server_compression}\"/></environmentVariables>"),
        &[("webSocketCompression", mode), ("shutdownTimeLimit", "2")],
    );
    let (g, admin) = start(&site);
    assert!(g.wait_log("app process is ready", 15 * S), "{}", g.logs());
    (site, g, admin)
}

/// Opens a raw WebSocket (after the 101), offering `extensions`.
fn ws_connect(g: &Gateway, extensions: &str) -> std::io::BufReader<std::net::TcpStream> {
    use std::io::BufRead;
    let mut s = std::net::TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(10 * S)).unwrap();
    let head = format!("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extensions}\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut r = std::io::BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            return r;
        }
    }
}

fn ws_series(name: &str, mode: &str, direction: &str) -> String {
    format!("{name}{{mode=\"{mode}\",direction=\"{direction}\"}}")
}

/// Passthrough: messages (not frames) and their payload bytes each way;
/// the open WebSocket shows under its mode until it closes.
#[test]
fn websocket_messages_and_bytes_are_counted() {
    let (_site, g, admin) = echo_gateway("passthrough", "off");
    let mut ws = ws_connect(&g, "");
    let (_, report) = read_frame(&mut ws);
    for _ in 0..3 {
        send_masked(ws.get_ref(), 0x81, b"hello");
        assert_eq!(read_frame(&mut ws).1, b"hello");
    }
    // One message in two frames: counted once.
    send_masked(ws.get_ref(), 0x01, b"frag-");
    send_masked(ws.get_ref(), 0x80, b"ment");
    assert_eq!(read_frame(&mut ws).1, b"frag-ment");
    let m = get(admin, "/metrics").text();
    let msgs = "hpgate_websocket_messages_total";
    let bytes = "hpgate_websocket_payload_bytes_total";
    let at = |name, dir| metric_value(&m, &ws_series(name, "passthrough", dir));
    assert_eq!(at(msgs, "client_to_app"), Some(4.0), "{m}");
    assert_eq!(at(bytes, "client_to_app"), Some(24.0), "{m}");
    assert_eq!(at(msgs, "app_to_client"), Some(5.0), "{m}");
    let down = report.len() + 24;
    assert_eq!(at(bytes, "app_to_client"), Some(down as f64), "{m}");
    let open = r#"hpgate_open_websockets{mode="passthrough"}"#;
    assert_eq!(metric_value(&m, open), Some(1.0), "{m}");
    assert_eq!(
        metric_value(&m, r#"hpgate_open_websockets{mode="offload"}"#),
        Some(0.0)
    );
    send_masked(ws.get_ref(), 0x88, &1000u16.to_be_bytes());
    drop(ws);
    assert!(wait_until(10 * S, || metric(admin, open) == 0.0));
}

/// Offload: bytes before and after compression each way; a compressible
/// message shrinks.
#[test]
fn websocket_offload_counts_bytes_before_and_after_compression() {
    let (_site, g, admin) = echo_gateway("offload", "on");
    let mut ws = ws_connect(&g, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    let mut to_client = read_frame(&mut ws).1.len();
    let text = "the quick brown fox jumps over the lazy dog ".repeat(200);
    send_masked(ws.get_ref(), 0x81, text.as_bytes());
    let (b0, echo) = read_frame(&mut ws);
    assert_eq!(b0 & 0x40, 0x40, "compressed toward the client");
    to_client += echo.len();
    // The same text compressed by the client (RFC 7692: a sync flush,
    // its final 00 00 ff ff left off).
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(text.as_bytes()).unwrap();
    z.flush().unwrap();
    let mut z = z.get_ref().clone();
    assert!(z.ends_with(&[0, 0, 0xff, 0xff]));
    z.truncate(z.len() - 4);
    send_masked(ws.get_ref(), 0xc1, &z);
    to_client += read_frame(&mut ws).1.len();
    let m = get(admin, "/metrics").text();
    let off = |dir, stage| {
        let s = format!(
            "hpgate_websocket_offload_bytes_total{{direction=\"{dir}\",stage=\"{stage}\"}}"
        );
        metric_value(&m, &s).unwrap_or_else(|| panic!("no {s} in\n{m}"))
    };
    assert_eq!(off("client_to_app", "uncompressed"), text.len() as f64);
    assert_eq!(off("client_to_app", "compressed"), z.len() as f64);
    let (plain, sent) = (
        off("app_to_client", "uncompressed"),
        off("app_to_client", "compressed"),
    );
    assert_eq!(sent, to_client as f64, "{m}");
    assert!(plain >= 2.0 * text.len() as f64, "{m}");
    assert!(sent * 5.0 < plain, "{sent} compressed of {plain}");
    let at = |name, dir| metric_value(&m, &ws_series(name, "offload", dir));
    let msgs = "hpgate_websocket_messages_total";
    assert_eq!(at(msgs, "client_to_app"), Some(2.0), "{m}");
    assert_eq!(at(msgs, "app_to_client"), Some(3.0), "{m}");
    // Bytes as the sender sent them: the app's are uncompressed.
    let bytes = "hpgate_websocket_payload_bytes_total";
    let up = (text.len() + z.len()) as f64;
    assert_eq!(at(bytes, "client_to_app"), Some(up), "{m}");
    assert_eq!(at(bytes, "app_to_client"), Some(plain), "{m}");
    assert_eq!(
        metric_value(&m, r#"hpgate_open_websockets{mode="offload"}"#),
        Some(1.0)
    );
    if let Err(e) = promtool(&["check", "metrics"], &m) {
        panic!("promtool check metrics:\n{e}\nexposition:\n{m}");
    }
}

/// An app process that stops accepting: the refused connects are counted.
#[test]
fn refused_app_connects_are_counted() {
    let site = Site::new("admin-refused");
    site.testapp_config("serve", "", &[]);
    let (g, admin) = start(&site);
    assert_eq!(g.get("/stop-listening").status, 200);
    // A request racing the close may still be taken into the backlog
    // and reset; the next ones are refused.
    let refused = r#"hpgate_app_connect_errors_total{cause="refused"}"#;
    let seen = wait_until(10 * S, || {
        g.get("/").status == 502 && metric(admin, refused) >= 1.0
    });
    assert!(seen, "{}", g.logs());
    assert_eq!(g.get("/").status, 502);
    let m = get(admin, "/metrics").text();
    let answered = r#"hpgate_unavailable_responses_total{status="502",cause="connect"}"#;
    assert!(metric_value(&m, answered).is_some_and(|n| n >= 1.0), "{m}");
    assert_eq!(
        metric_value(&m, r#"hpgate_app_connect_errors_total{cause="timeout"}"#),
        Some(0.0)
    );
}

/// Three crashes within the window of two: one lock-out, /readyz says so.
#[test]
fn rapid_fail_lockouts_are_counted() {
    let site = Site::new("admin-lockout");
    site.testapp_config("serve", "rapidFailsPerMinute=\"2\"", &[]);
    let (g, admin) = start(&site);
    for _ in 0..3 {
        assert!(wait_until(10 * S, || app_pid(&g).is_some()));
        let _ = g.get("/crash");
    }
    let lockouts = "hpgate_rapid_fail_lockouts_total";
    assert!(
        wait_until(10 * S, || metric(admin, lockouts) == 1.0),
        "{}",
        g.logs()
    );
    let r = get(admin, "/readyz");
    assert_eq!(r.status, 503, "{}", r.text());
    let m = get(admin, "/metrics").text();
    let crashed = r#"hpgate_process_exits_total{cause="crashed"}"#;
    assert_eq!(metric_value(&m, crashed), Some(3.0), "{m}");
}

/// notAfter of a certificate file, in Unix seconds (openssl and date).
fn not_after(cert: &std::path::Path) -> f64 {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let date = text
        .trim()
        .strip_prefix("notAfter=")
        .expect("openssl -enddate");
    let out = Command::new("date")
        .args(["-u", "-d", date, "+%s"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The https listener's certificate shows its notAfter by its DNS name,
/// and a reloaded certificate replaces it.
#[test]
fn certificate_expiry_is_exported_and_follows_a_reload() {
    let site = Site::new("admin-tls");
    site.testapp_config("serve", "", &[]);
    let (g, cert) = start_https_with(&site, &["--admin", "127.0.0.1:0"]);
    let key = cert.with_extension("key");
    let admin = g.admin_addr();
    let series = r#"hpgate_tls_certificate_expiry_timestamp_seconds{name="localhost"}"#;
    let m = get(admin, "/metrics").text();
    assert_eq!(metric_value(&m, series), Some(not_after(&cert)), "{m}");
    if let Err(e) = promtool(&["check", "metrics"], &m) {
        panic!("promtool check metrics:\n{e}\nexposition:\n{m}");
    }
    // A renewed certificate: the same name, a later notAfter (made
    // again until the second has turned).
    let old = not_after(&cert);
    let mut renewed = make_cert(&site, "renewed", "localhost");
    assert!(wait_until(5 * S, || {
        renewed = make_cert(&site, "renewed", "localhost");
        not_after(&renewed.0) > old
    }));
    let (new_cert, new_key) = renewed;
    let expected = not_after(&new_cert);
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
    let mut seen = 0.0;
    assert!(
        wait_until(15 * S, || {
            seen = metric(admin, series);
            seen == expected
        }),
        "saw {seen}, expected {expected}; log:\n{}",
        g.logs()
    );
}
