//! The admin listener (`--admin`): /metrics checked by promtool, the
//! probes, /status and `hpgate status`, against the real binary.
mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const S: Duration = Duration::from_secs(1);

/// The admin address from the "admin listener on http://ADDR" log line.
fn admin_addr(g: &Gateway) -> SocketAddr {
    let mut found = None;
    wait_until(10 * S, || {
        found = g
            .logs()
            .split("admin listener on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok());
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no admin listener; log:\n{}", g.logs()))
}

fn start(site: &Site) -> (Gateway, SocketAddr) {
    let g = Gateway::start(&site.dir, &["--admin", "127.0.0.1:0"]);
    let admin = admin_addr(&g);
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

/// The value of the series `line_start` (name and labels) in `text`.
fn value(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

#[test]
fn metrics_count_requests_and_pass_promtool() {
    let site = Site::new("admin-metrics");
    site.testapp_config("serve", "", &[]);
    let (g, admin) = start(&site);
    for _ in 0..3 {
        assert_eq!(g.get("/").status, 200);
    }
    assert_eq!(request(g.addr, "POST", "/", &[], b"x").status, 200);
    let m = get(admin, "/metrics");
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = m.text();
    let get_ok = r#"hpgate_requests_total{class="2xx",method="GET",protocol="HTTP/1.1"}"#;
    assert_eq!(value(&text, get_ok), Some(3.0), "{text}");
    let post_ok = r#"hpgate_requests_total{class="2xx",method="POST",protocol="HTTP/1.1"}"#;
    assert_eq!(value(&text, post_ok), Some(1.0), "{text}");
    assert_eq!(
        value(&text, "hpgate_request_duration_seconds_count"),
        Some(4.0)
    );
    assert_eq!(
        value(&text, r#"hpgate_app_processes{state="ready"}"#),
        Some(1.0)
    );
    assert_eq!(value(&text, "hpgate_process_starts_total"), Some(1.0));
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
        value(&m, r#"hpgate_process_exits_total{cause="crashed"}"#),
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
    site.write("app_offline.htm", "down");
    assert!(wait_until(5 * S, || g.get("/").status == 503));
    let m = get(admin, "/metrics").text();
    let series = r#"hpgate_unavailable_responses_total{status="503",cause="offline"}"#;
    assert!(value(&m, series).is_some_and(|n| n >= 1.0), "{m}");
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
