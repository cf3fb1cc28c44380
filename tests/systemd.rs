//! systemd integration with the real tools, no systemd as PID 1 needed:
//! `Type=notify` messages arrive on a test-owned NOTIFY_SOCKET, and
//! `systemd-socket-activate` hands hpgate its listening socket.
#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{free_port, hpgate_bin, request, wait_until, Site};

/// A process whose stderr is collected; SIGTERM then SIGKILL on drop.
struct Proc {
    child: Child,
    logs: Arc<Mutex<String>>,
}

impl Proc {
    fn start(mut cmd: Command) -> Proc {
        cmd.env("HPGATE_LOG", "info,hpgate=debug")
            .env_remove("HPGATE_LISTEN")
            .env_remove("HPGATE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(String::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Proc { child, logs }
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Whether `needle` shows up in the log within 5 s: the reader thread
    /// lags hpgate, so a line may land after a notify message that follows it.
    fn logged(&self, needle: &str) -> bool {
        wait_until(Duration::from_secs(5), || self.logs().contains(needle))
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut code = None;
        wait_until(within, || match self.child.try_wait() {
            Ok(Some(s)) => {
                code = s.code();
                true
            }
            _ => false,
        });
        code
    }
}

impl Drop for Proc {
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

/// The test's end of NOTIFY_SOCKET: every datagram hpgate sends.
struct Notify {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn bind(site: &Site) -> Notify {
        let path = site.path("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        Notify { sock, path }
    }

    /// The next message other than WATCHDOG=1 (None past `within`).
    fn next(&self, within: Duration) -> Option<String> {
        self.next_matching(within, |m| m != "WATCHDOG=1")
    }

    fn next_matching(&self, within: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if want(&msg) {
                    return Some(msg);
                }
            }
        }
        None
    }
}

/// hpgate under `Type=notify` in front of an app that takes 1 s to listen;
/// TESTAPP_STAMP records when each app process started listening.
fn notified_gateway(site: &Site, notify: &Notify, extra_env: &[(&str, &str)]) -> Proc {
    site.testapp_config("sleep --delay 1", "", &[]);
    let mut cmd = Command::new(hpgate_bin());
    cmd.args(["run", "--listen", &format!("127.0.0.1:{}", free_port())])
        .current_dir(&site.dir)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("TESTAPP_STAMP", site.path("stamp"));
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Proc::start(cmd)
}

/// How many app processes have started listening so far.
fn listened(site: &Site) -> usize {
    std::fs::read_to_string(site.path("stamp"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn hpgate_addr(p: &Proc) -> SocketAddr {
    let mut addr = None;
    wait_until(Duration::from_secs(10), || {
        addr = p
            .logs()
            .split("listening on http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        addr.is_some()
    });
    addr.unwrap_or_else(|| panic!("hpgate did not listen; log:\n{}", p.logs()))
}

fn app_pid(addr: SocketAddr) -> Option<u32> {
    let r = request(addr, "GET", "/", &[], b"");
    r.text()
        .strip_prefix("hello from ")
        .and_then(|s| s.trim().parse().ok())
}

/// READY=1 only once the app listens; SIGHUP gives RELOADING=1 then
/// READY=1 once the new app process listens (a recycle: a new pid);
/// SIGTERM gives STOPPING=1; in that order, nothing in between.
#[test]
fn notify_ready_reload_stopping_in_order() {
    let site = Site::new("systemd-notify");
    let notify = Notify::bind(&site);
    let mut gw = notified_gateway(&site, &notify, &[]);
    let addr = hpgate_addr(&gw);

    let ready = notify.next(Duration::from_secs(20));
    assert_eq!(
        ready.as_deref(),
        Some("READY=1\nSTATUS=serving"),
        "{}",
        gw.logs()
    );
    assert_eq!(listened(&site), 1, "READY=1 came before the app listened");
    let first = app_pid(addr).expect("the app answers");

    gw.signal("HUP");
    let reloading = notify.next(Duration::from_secs(10));
    assert_eq!(reloading.as_deref(), Some("RELOADING=1"), "{}", gw.logs());
    let ready = notify.next(Duration::from_secs(20));
    assert_eq!(ready.as_deref(), Some("READY=1"), "{}", gw.logs());
    assert_eq!(
        listened(&site),
        2,
        "READY=1 came before the new app listened"
    );
    let second = app_pid(addr).expect("the app answers after the reload");
    assert_ne!(first, second, "SIGHUP recycled the app");
    assert!(gw.logged("SIGHUP received: reloading"), "{}", gw.logs());

    gw.signal("TERM");
    let stopping = notify.next(Duration::from_secs(10));
    assert_eq!(stopping.as_deref(), Some("STOPPING=1"), "{}", gw.logs());
    assert_eq!(gw.wait_exit(Duration::from_secs(15)), Some(0));
}

/// WATCHDOG_USEC set: WATCHDOG=1 keeps coming (every 200 ms for 400 ms),
/// before READY too (the app takes 1 s to start).
#[test]
fn watchdog_keep_alive_when_asked() {
    let site = Site::new("systemd-watchdog");
    let notify = Notify::bind(&site);
    let gw = notified_gateway(&site, &notify, &[("WATCHDOG_USEC", "400000")]);
    let is_watchdog = |m: &str| m == "WATCHDOG=1";
    for _ in 0..3 {
        let got = notify.next_matching(Duration::from_secs(10), is_watchdog);
        assert!(got.is_some(), "no WATCHDOG=1; log:\n{}", gw.logs());
    }
}

/// The app processes inherit neither NOTIFY_SOCKET nor the watchdog.
#[test]
fn app_does_not_inherit_systemd_variables() {
    let site = Site::new("systemd-env");
    let notify = Notify::bind(&site);
    let gw = notified_gateway(&site, &notify, &[("WATCHDOG_USEC", "400000")]);
    let addr = hpgate_addr(&gw);
    let ready = notify.next(Duration::from_secs(20));
    assert!(ready.is_some(), "no READY=1; log:\n{}", gw.logs());
    let pid = app_pid(addr).expect("the app answers");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    for var in ["NOTIFY_SOCKET=", "WATCHDOG_USEC=", "LISTEN_FDS="] {
        assert!(!environ.contains(var), "the app got {var}");
    }
}

fn socket_activated(site: &Site, port: u16, fdname: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args(["-l", &format!("127.0.0.1:{port}"), "--fdname", fdname])
        .args(["-E", "HPGATE_LOG=info,hpgate=debug"])
        .arg(hpgate_bin())
        .arg("run")
        .args(args)
        .current_dir(&site.dir);
    Proc::start(cmd)
}

fn have_socket_activate() -> bool {
    Command::new("systemd-socket-activate")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// systemd-socket-activate holds the port and starts hpgate on the first
/// connection: hpgate serves on the passed socket (its own --listen is not
/// bound) and the queued request is answered.
#[test]
fn serves_on_the_socket_systemd_passes() {
    if !have_socket_activate() {
        eprintln!("skipped: systemd-socket-activate not installed");
        return;
    }
    let site = Site::new("systemd-activate");
    site.testapp_config("serve", "", &[]);
    let port = free_port();
    let unused = free_port();
    let listen = format!("127.0.0.1:{unused}");
    let gw = socket_activated(&site, port, "http", &["--listen", &listen]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(
            addr
        )
        .is_ok()),
        "systemd-socket-activate did not listen"
    );
    // This connection waits in the socket's queue while hpgate starts.
    let r = request(addr, "GET", "/", &[], b"");
    assert_eq!(r.status, 200, "{r:?}\nlog:\n{}", gw.logs());
    assert!(r.text().starts_with("hello from "), "{}", r.text());
    let logs = gw.logs();
    assert!(
        logs.contains("socket activation: serving on the 1 socket(s)"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("listening on http://{addr} (socket http)")),
        "{logs}"
    );
    assert!(
        std::net::TcpStream::connect(listen.as_str()).is_err(),
        "--listen was bound too"
    );
}

/// A passed socket named `https` terminates TLS.
#[test]
fn a_socket_named_https_is_a_tls_listener() {
    if !have_socket_activate() {
        eprintln!("skipped: systemd-socket-activate not installed");
        return;
    }
    let site = Site::new("systemd-activate-https");
    site.testapp_config("serve", "", &[]);
    let (cert, key) = support::self_signed(&site);
    let port = free_port();
    let args = ["--tls-cert", path_str(&cert), "--tls-key", path_str(&key)];
    let gw = socket_activated(&site, port, "https", &args);
    let url = format!("https://127.0.0.1:{port}/");
    let mut out = None;
    wait_until(Duration::from_secs(20), || {
        let o = Command::new("curl")
            .args(["-sk", "--max-time", "10", &url])
            .output()
            .expect("curl");
        let ok = o.status.success();
        out = Some(o);
        ok
    });
    let out = out.expect("curl ran");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.starts_with("hello from "),
        "{body:?}\nlog:\n{}",
        gw.logs()
    );
    assert!(gw.logged("listening on https://"), "{}", gw.logs());
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// packaging/systemd's units pass `systemd-analyze verify` with nothing to
/// say (ExecStart pointed at the binary under test: verify checks it exists).
#[test]
fn unit_files_verify_clean() {
    let have = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        eprintln!("skipped: systemd-analyze not installed");
        return;
    }
    let site = Site::new("systemd-units");
    let units = support::repo_root().join("packaging/systemd");
    let service = std::fs::read_to_string(units.join("hpgate.service")).expect("service");
    assert!(service.contains("ExecStart=/usr/local/bin/hpgate run"));
    site.write(
        "hpgate.service",
        &service.replace("/usr/local/bin/hpgate", hpgate_bin()),
    );
    let socket = std::fs::read_to_string(units.join("hpgate.socket")).expect("socket");
    site.write("hpgate.socket", &socket);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(site.path("hpgate.service"))
        .arg(site.path("hpgate.socket"))
        .output()
        .expect("systemd-analyze");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// `Accept=yes` (a connected socket per connection) is refused with a
/// message that says what to use, instead of failing at every accept.
#[test]
fn a_connected_socket_is_refused() {
    if !have_socket_activate() {
        eprintln!("skipped: systemd-socket-activate not installed");
        return;
    }
    let site = Site::new("systemd-accept");
    site.testapp_config("serve", "", &[]);
    let port = free_port();
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args(["--accept", "-l", &format!("127.0.0.1:{port}")])
        .arg(hpgate_bin())
        .arg("run")
        .current_dir(&site.dir);
    let activator = Proc::start(cmd);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut conn = None;
    wait_until(Duration::from_secs(10), || {
        conn = std::net::TcpStream::connect(addr).ok();
        conn.is_some()
    });
    assert!(conn.is_some(), "systemd-socket-activate did not listen");
    let refused = "is not a listening socket (Accept=yes is not supported; use Accept=no)";
    assert!(
        wait_until(Duration::from_secs(10), || activator
            .logs()
            .contains(refused)),
        "{}",
        activator.logs()
    );
}

/// SIGHUP with a broken web.config: RELOADING=1, then READY=1 (the reload
/// is over), and the old app process keeps serving.
#[test]
fn reload_of_a_broken_config_keeps_the_old_app() {
    let site = Site::new("systemd-reload-broken");
    let notify = Notify::bind(&site);
    let gw = notified_gateway(&site, &notify, &[]);
    let addr = hpgate_addr(&gw);
    let ready = notify.next(Duration::from_secs(20));
    assert!(ready.is_some(), "no READY=1; log:\n{}", gw.logs());
    let before = app_pid(addr).expect("the app answers");
    site.write("web.config", "<configuration><system.webServer>");
    gw.signal("HUP");
    assert_eq!(
        notify.next(Duration::from_secs(10)).as_deref(),
        Some("RELOADING=1")
    );
    assert_eq!(
        notify.next(Duration::from_secs(10)).as_deref(),
        Some("READY=1")
    );
    assert!(
        gw.logged("configuration changed but has errors"),
        "{}",
        gw.logs()
    );
    assert_eq!(app_pid(addr), Some(before));
}
