//! Shared helpers for integration tests: start the real `hpgate` binary on
//! a free port (`--listen 127.0.0.1:0`) in a temporary site folder, talk
//! HTTP over plain TCP, wait on conditions with deadlines, and always clean
//! up (hpgate is stopped and its folder removed when the handle drops).
#![allow(dead_code)]

pub mod frames;
pub mod wine;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn hpgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_hpgate")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stdlib-only controllable backend.
pub fn testapp() -> PathBuf {
    repo_root().join("fixtures/backends/testapp.py")
}

/// Python with the project's dependencies (the venv made by scripts/setup),
/// falling back to python3 on PATH.
pub fn venv_python() -> PathBuf {
    let p = repo_root().join(".venv/bin/python");
    if p.exists() {
        p
    } else {
        PathBuf::from("python3")
    }
}

/// A temporary site folder, removed on drop.
pub struct Site {
    pub dir: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Site {
    pub fn new(name: &str) -> Site {
        let dir = std::env::temp_dir().join(format!(
            "hpgate-test-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create site dir");
        Site { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, content).expect("write file");
    }

    /// Writes web.config with the given `<httpPlatform>` attributes (raw XML
    /// text), inner XML for `<httpPlatform>`, and `hpgate:` appSettings.
    /// Writes web.config for a Python script of this repository run by the
    /// project's venv, with `inner` XML (environment variables) and
    /// `hpgate:` settings.
    pub fn python_app(&self, script: &str, inner: &str, settings: &[(&str, &str)]) {
        let script = repo_root().join(script);
        self.web_config(
            &format!(
                "processPath=\"{}\" arguments=\"{}\"",
                venv_python().display(),
                script.display()
            ),
            inner,
            settings,
        );
    }

    pub fn web_config(&self, attrs: &str, inner: &str, settings: &[(&str, &str)]) {
        let app: String = settings
            .iter()
            .map(|(k, v)| format!("    <add key=\"hpgate:{k}\" value=\"{v}\"/>\n"))
            .collect();
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration>\n  <appSettings>\n{app}  </appSettings>\n  <system.webServer>\n    <httpPlatform {attrs}>\n{inner}\n    </httpPlatform>\n  </system.webServer>\n</configuration>\n"
        );
        self.write("web.config", &xml);
    }

    /// web.config that runs the stdlib test app in `mode` with extra attributes.
    pub fn testapp_config(&self, mode: &str, attrs: &str, settings: &[(&str, &str)]) {
        let a = format!(
            "processPath=\"python3\" arguments=\"{} --mode {mode}\" {attrs}",
            testapp().display()
        );
        self.web_config(&a, "", settings);
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// hpgate in front of the test app (`serve` mode) with these settings,
/// once the app is ready.
pub fn serving_testapp(name: &str, settings: &[(&str, &str)]) -> (Site, Gateway) {
    let site = Site::new(name);
    site.testapp_config("serve", "", settings);
    let g = Gateway::start(&site.dir, &[]);
    assert!(
        g.wait_log("app process is ready", Duration::from_secs(10)),
        "{}",
        g.logs()
    );
    (site, g)
}

/// A running hpgate; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<String>>,
}

impl Gateway {
    /// Starts `hpgate run --listen 127.0.0.1:0 <args>` in `dir` and waits for
    /// its "listening on" line.
    pub fn start(dir: &Path, args: &[&str]) -> Gateway {
        Gateway::start_env(dir, args, &[])
    }

    pub fn start_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        Gateway::start_bin(Path::new(hpgate_bin()), dir, args, env)
    }

    /// `start_env` with another hpgate binary (the one a wheel installed).
    pub fn start_bin(bin: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        Gateway::launch(Command::new(bin), dir, args, env)
    }

    /// `start_env` inside network namespace `ns` (`ip netns exec`, which
    /// execs hpgate: the child's pid is hpgate's).
    pub fn start_in_netns(ns: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, hpgate_bin()]);
        Gateway::launch(cmd, dir, args, env)
    }

    fn launch(mut cmd: Command, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        cmd.arg("run")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .current_dir(dir)
            .env("HPGATE_LOG", "info,hpgate=debug")
            .env_remove("HPGATE_LISTEN")
            .env_remove("HPGATE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start hpgate");
        let logs = Arc::new(Mutex::new(String::new()));
        let rx = read_logs(&mut child, logs.clone());
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "hpgate did not start listening; log:\n{}",
                    logs.lock().unwrap()
                );
            }
        };
        Gateway { child, addr, logs }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The address of the first https listener (`--listen https://...` in
    /// the arguments): waits for its "listening on https://" line.
    pub fn https_addr(&self) -> SocketAddr {
        self.logged_addr("listening on https://", "https listener")
    }

    /// The admin listener's address (`--admin 127.0.0.1:0`): waits for its
    /// "admin listener on http://" line.
    pub fn admin_addr(&self) -> SocketAddr {
        self.logged_addr("admin listener on http://", "admin listener")
    }

    /// The address that follows the first `prefix` in the log, waited for.
    fn logged_addr(&self, prefix: &str, what: &str) -> SocketAddr {
        let mut found = None;
        wait_until(Duration::from_secs(10), || {
            found = self.logs().split(prefix).nth(1).and_then(|rest| {
                let end = rest
                    .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
                    .unwrap_or(rest.len());
                rest[..end].parse().ok()
            });
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no {what}; log:\n{}", self.logs()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        wait_until(within, || self.logs().contains(needle))
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// SIGTERM, then waits for exit; returns the exit code.
    pub fn stop(&mut self, within: Duration) -> Option<i32> {
        self.signal("TERM");
        self.wait_exit(within)
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[], b"")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("TERM");
            if self.wait_exit(Duration::from_secs(15)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), body decoded
/// from Content-Length, chunked, or read to EOF. Status 0 if the
/// connection failed or closed without a response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty()
        && !headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
        })
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw_request(addr, &raw, Duration::from_secs(30))
}

/// The value of the series `line_start` (name and labels) in `text`.
pub fn metric_value(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

/// A series' value in the admin listener's /metrics (0 when absent).
pub fn metric(admin: SocketAddr, series: &str) -> f64 {
    metric_value(&request(admin, "GET", "/metrics", &[], b"").text(), series).unwrap_or(0.0)
}

/// The test app's path that makes it answer exactly `raw` (any bytes,
/// however malformed) and close.
pub fn raw_path(raw: &[u8]) -> String {
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    format!("/raw?hex={hex}")
}

/// Sends raw bytes and parses the first response (status 0 on none).
pub fn raw_request(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Reply {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return Reply {
            status: 0,
            headers: vec![],
            body: vec![],
        };
    };
    let _ = s.set_read_timeout(Some(timeout));
    if s.write_all(bytes).is_err() {
        return Reply {
            status: 0,
            headers: vec![],
            body: vec![],
        };
    }
    read_response(&mut BufReader::new(s))
}

pub fn read_response(r: &mut impl BufRead) -> Reply {
    let empty = Reply {
        status: 0,
        headers: vec![],
        body: vec![],
    };
    let mut line = String::new();
    // Skip interim 1xx responses.
    let (status, headers) = loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return empty;
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                break;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        if !(100..200).contains(&status) {
            break (status, headers);
        }
    };
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = reply
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut body = vec![0; len];
        let n = read_fully(r, &mut body);
        body.truncate(n);
        reply.body = body;
    } else if reply
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            let mut size = String::new();
            if r.read_line(&mut size).unwrap_or(0) == 0 {
                break;
            }
            let Ok(n) = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            else {
                break;
            };
            if n == 0 {
                let mut end = String::new();
                let _ = r.read_line(&mut end);
                break;
            }
            let mut chunk = vec![0; n + 2];
            let got = read_fully(r, &mut chunk);
            chunk.truncate(got.min(n));
            reply.body.extend_from_slice(&chunk);
        }
    } else if status != 204 && status != 304 {
        let _ = r.read_to_end(&mut reply.body);
    }
    reply
}

fn read_fully(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True while a process exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Child pids of `pid` (direct children, from /proc).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                let ppid = stat
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().nth(1))
                    .and_then(|s| s.parse::<u32>().ok());
                if ppid == Some(pid) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Resident memory of a process in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The pid the test app reports at `/`.
pub fn app_pid(g: &Gateway) -> Option<u32> {
    let r = g.get("/");
    r.text()
        .strip_prefix("hello from ")
        .and_then(|s| s.trim().parse().ok())
}

/// Collects a started hpgate's stderr lines into `logs`; sends the address
/// of the first "listening on http://" line (native and wine runs alike).
pub fn read_logs(
    child: &mut Child,
    logs: Arc<Mutex<String>>,
) -> std::sync::mpsc::Receiver<SocketAddr> {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                // Text and JSON logs both: the address ends where its characters do.
                let end = rest
                    .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
                    .unwrap_or(rest.len());
                if let (Some(tx), Ok(addr)) = (tx.take(), rest[..end].parse::<SocketAddr>()) {
                    let _ = tx.send(addr);
                }
            }
            logs.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    rx
}

/// hpgate in `site` with an https listener (beside the plain one) serving
/// a new self-signed certificate; returns the certificate for clients to trust.
pub fn start_https(site: &Site) -> (Gateway, PathBuf) {
    start_https_with(site, &[])
}

/// The same with more arguments (`extra`); the key is `cert.key` beside it.
pub fn start_https_with(site: &Site, extra: &[&str]) -> (Gateway, PathBuf) {
    let (cert, key) = self_signed(site);
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let args = [
        "--listen",
        "https://127.0.0.1:0",
        "--tls-cert",
        &c,
        "--tls-key",
        &k,
    ];
    (
        Gateway::start(&site.dir, &[&args[..], extra].concat()),
        cert,
    )
}

/// A self-signed ECDSA P-256 certificate for localhost and 127.0.0.1, as
/// `cert.pem` and `key.pem` in the site folder.
pub fn self_signed(site: &Site) -> (PathBuf, PathBuf) {
    make_cert(site, "cert", "localhost")
}

/// The same with this common name, as `NAME.pem` and `NAME.key` (tests
/// that swap certificates tell them apart by it).
pub fn make_cert(site: &Site, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        site.path(&format!("{name}.pem")),
        site.path(&format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "30", "-subj", &format!("/CN={cn}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// A port nothing listens on now, and never one this test process handed
/// out before: a listener bound to port 0 is dropped at once, and the
/// kernel may offer the same port to the next caller (two picks for one
/// test, or tests on parallel threads), which then collide.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = l.local_addr().expect("its address").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A private redis-server on a free port (scripts/setup installs it); killed on drop.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup installs it)");
        let up = wait_until(Duration::from_secs(5), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "redis-server did not start on port {port}");
        Redis { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
