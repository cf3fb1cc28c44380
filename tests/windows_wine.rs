//! The Windows build under wine: `hpgate.exe` (x86_64-pc-windows-gnu) runs
//! in front of a native Windows test app (fixtures/windows/winapp) and is
//! driven over TCP from Linux. Covers the Windows code paths: web.config
//! with Windows paths, the Job Object, Ctrl-C, the stop of the app, the
//! Win32 spawn errors. scripts/wine-setup builds everything and
//! HPGATE_TEST_WINE names it; without it every test prints a skip message
//! and passes. docs/windows.md says what wine cannot show.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use support::wine::{processes_with, win_path, wine, WinGateway, Wine};
use support::*;

const S: Duration = Duration::from_secs(1);

/// A site running `.\winapp.exe` with extra `<httpPlatform>` attributes,
/// inner XML and `hpgate:` settings.
fn app_site(w: &Wine, name: &str, attrs: &str, inner: &str, settings: &[(&str, &str)]) -> Site {
    let site = Site::new(name);
    w.copy_app(&site);
    site.web_config(
        &format!("processPath=\".\\winapp.exe\" arguments=\"--port %HTTP_PLATFORM_PORT%\" {attrs}"),
        inner,
        settings,
    );
    site
}

/// `K=V` lines of the app's /env answer.
fn env_of(g: &WinGateway) -> Vec<(String, String)> {
    let r = g.get("/env");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), g.logs());
    r.text()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn var<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} missing from {env:?}"))
}

/// The one file in `dir` whose name starts with `prefix`.
fn only_file(dir: &std::path::Path, prefix: &str) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let found: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {prefix}* in {}: {files:?}",
        dir.display()
    );
    found[0].clone()
}

#[test]
fn relative_windows_paths_port_handover_and_ancm_log_naming() {
    let Some(w) = wine() else { return };
    let inner = "<environmentVariables>\
        <environmentVariable name=\"APP_PORT\" value=\"%HTTP_PLATFORM_PORT%\"/>\
        <environmentVariable name=\"WIN_DIR\" value=\"%SystemRoot%\\x\"/>\
        </environmentVariables>";
    let site = Site::new("wine-paths");
    w.copy_app(&site);
    // A slow start: the first request must wait for the port, not fail.
    let attrs =
        "processPath=\".\\winapp.exe\" arguments=\"--port %HTTP_PLATFORM_PORT% --delay 2\" \
        stdoutLogEnabled=\"true\" stdoutLogFile=\".\\logs\\app\" startupTimeLimit=\"60\"";
    site.web_config(attrs, inner, &[]);
    let g = WinGateway::start(w, &site, &[]);
    let env = env_of(&g);
    let port = var(&env, "HTTP_PLATFORM_PORT");
    assert_eq!(var(&env, "argv2"), port, "arguments got the port");
    assert_eq!(
        var(&env, "APP_PORT"),
        port,
        "environment variables got the port"
    );
    assert!(
        var(&env, "WIN_DIR").eq_ignore_ascii_case("C:\\windows\\x"),
        "{env:?}"
    );
    assert_eq!(var(&env, "HTTP_PLATFORM_APPL_PATH"), "/");
    assert!(
        var(&env, "cwd").eq_ignore_ascii_case(&win_path(&site.dir)),
        "{env:?}"
    );
    // ANCM naming: <stdoutLogFile>_<yyyyMMddHHmmss>_<pid>.log
    let pid = g.app_pid().expect("pid");
    let log = only_file(&site.path("logs"), "app_");
    let name = log.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = name.trim_start_matches("app_").split('_').next().unwrap();
    assert_eq!(stamp.len(), 14, "{name}");
    assert!(stamp.bytes().all(|b| b.is_ascii_digit()), "{name}");
    assert!(
        name.ends_with(&format!("_{pid}.log")),
        "{name} for pid {pid}"
    );
    assert!(wait_until(5 * S, || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains(&format!("winapp {pid} listening")))
    }));
}

/// A folder in the prefix's drive C:, removed on drop.
struct DriveC(PathBuf);

impl Drop for DriveC {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn absolute_c_paths_and_system_drive() {
    let Some(w) = wine() else { return };
    let id = format!("t{}", std::process::id());
    let dir = DriveC(w.drive_c().join("hpgate-tests").join(&id));
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::copy(w.bin("winapp.exe"), dir.0.join("winapp.exe")).unwrap();
    let site = Site::new("wine-cdrive");
    site.web_config(
        &format!(
            "processPath=\"%SystemDrive%\\hpgate-tests\\{id}\\winapp.exe\" \
             stdoutLogEnabled=\"true\" stdoutLogFile=\"C:\\hpgate-tests\\{id}\\logs\\out\""
        ),
        "",
        &[],
    );
    let g = WinGateway::start(w, &site, &[]);
    let env = env_of(&g);
    let argv0 = var(&env, "argv0").to_lowercase();
    assert!(
        argv0.contains(&format!("c:\\hpgate-tests\\{id}\\winapp.exe")),
        "{argv0}"
    );
    let pid = g.app_pid().unwrap();
    let log = only_file(&dir.0.join("logs"), "out_");
    assert!(log.to_string_lossy().ends_with(&format!("_{pid}.log")));
}

/// The seed's web.config, unchanged: its interpreter path exists in the
/// prefix's drive C: (the test app stands in for python.exe; it ignores
/// waitress's arguments but takes --port).
#[test]
fn the_seed_web_config_runs_unchanged() {
    let Some(w) = wine() else { return };
    let seed = repo_root().join("fixtures/web.config/seed.web.config");
    let python = "Users/lextudio/AppData/Local/Programs/Python/Python310";
    let _user = DriveC(w.drive_c().join("Users/lextudio"));
    std::fs::create_dir_all(w.drive_c().join(python)).unwrap();
    std::fs::copy(
        w.bin("winapp.exe"),
        w.drive_c().join(python).join("python.exe"),
    )
    .unwrap();
    let site = Site::new("wine-seed");
    let (ok, shown) = run_exe(w, &site, &["config", "--config", &win_path(&seed)]);
    assert!(ok && shown.contains("waitress"), "{shown}");
    std::fs::copy(&seed, site.path("web.config")).unwrap();
    let g = WinGateway::start(w, &site, &[]);
    let r = g.get("/");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), g.logs());
    assert!(r.text().starts_with("hello from winapp"));
    let log = only_file(&site.dir, "python.log_");
    assert!(log.to_string_lossy().ends_with(".log"));
}

#[test]
fn streaming_and_a_large_body() {
    let Some(w) = wine() else { return };
    let site = app_site(w, "wine-stream", "", "", &[]);
    let g = WinGateway::start(w, &site, &[]);
    // Chunks pass as the app writes them: the first long before the last.
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(30 * S)).unwrap();
    let t0 = Instant::now();
    write!(
        s,
        "GET /stream?n=3&ms=1500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut seen = String::new();
    let mut first = None;
    let mut line = String::new();
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        if line.starts_with("chunk ") && first.is_none() {
            first = Some(t0.elapsed());
        }
        seen.push_str(&line);
        line.clear();
    }
    let (first, total) = (first.expect("a chunk"), t0.elapsed());
    assert!(seen.contains("chunk 2"), "{seen}");
    assert!(total >= 3 * S, "{total:?}");
    assert!(
        first + 2 * S < total,
        "first chunk at {first:?}, end at {total:?}"
    );
    // 8 MiB up and back.
    let body: Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let r = request(g.addr, "POST", "/echo", &[], &body);
    assert_eq!(r.status, 200, "{}", g.logs());
    assert!(
        r.body == body,
        "echoed {} bytes of {}",
        r.body.len(),
        body.len()
    );
}

// -- WebSocket ------------------------------------------------------------

struct Ws {
    r: BufReader<TcpStream>,
    w: TcpStream,
    inflate: Decompress,
}

/// Opens a WebSocket on `path`, offering permessage-deflate when `deflate`;
/// returns it and the response head.
fn ws_connect(g: &WinGateway, path: &str, deflate: bool) -> (Ws, String) {
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(20 * S)).unwrap();
    let ext = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    } else {
        ""
    };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 101"), "{head}\n{}", g.logs());
    let inflate = Decompress::new(false);
    (Ws { r, w: s, inflate }, head)
}

impl Ws {
    fn send(&mut self, payload: &[u8], compress: bool) {
        let data = if compress {
            deflate(payload)
        } else {
            payload.to_vec()
        };
        let first = if compress { 0xC2 } else { 0x82 };
        support::frames::send_masked(&mut self.w, first, &data);
    }

    /// The next message: (was it compressed, its inflated payload).
    fn recv(&mut self) -> (bool, Vec<u8>) {
        let mut h = [0u8; 2];
        self.r.read_exact(&mut h).unwrap();
        assert_eq!(h[0] & 0x8f, 0x82, "one unfragmented binary frame: {h:?}");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.r.read_exact(&mut b).unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.r.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.r.read_exact(&mut payload).unwrap();
        let compressed = h[0] & 0x40 != 0;
        if compressed {
            payload = inflate(&mut self.inflate, &payload);
        }
        (compressed, payload)
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert_eq!(c.total_in() as usize, data.len());
    out.truncate(out.len() - 4);
    out
}

fn inflate(d: &mut Decompress, data: &[u8]) -> Vec<u8> {
    let input = [data, &[0, 0, 0xff, 0xff]].concat();
    let mut out = Vec::with_capacity(1 << 22);
    let start = d.total_in();
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    assert_eq!((d.total_in() - start) as usize, input.len());
    out
}

/// `ext?` answers what the app negotiated; a big message comes back whole.
fn ws_round_trip(ws: &mut Ws, compress: bool) -> (bool, String) {
    ws.send(b"ext?", compress);
    let (compressed, answer) = ws.recv();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 97) as u8).collect();
    ws.send(&big, compress);
    assert!(ws.recv().1 == big, "the big message came back changed");
    (compressed, String::from_utf8(answer).unwrap())
}

fn ws_gateway(w: &Wine, mode: &str) -> (Site, WinGateway) {
    let settings = [
        ("webSocketCompression", mode),
        ("webSocketCompressionMinSize", "0"),
    ];
    let site = app_site(w, &format!("wine-ws-{mode}"), "", "", &settings);
    let g = WinGateway::start(w, &site, &[]);
    (site, g)
}

#[test]
fn websocket_passthrough() {
    let Some(w) = wine() else { return };
    let (_site, g) = ws_gateway(w, "passthrough");
    let (mut ws, head) = ws_connect(&g, "/ws-deflate", true);
    assert!(head.contains("permessage-deflate"), "{head}");
    assert_eq!(
        ws_round_trip(&mut ws, true),
        (true, "ext=permessage-deflate".into())
    );
    let (mut ws, head) = ws_connect(&g, "/ws", false);
    assert!(!head.contains("permessage-deflate"), "{head}");
    assert_eq!(ws_round_trip(&mut ws, false), (false, "ext=none".into()));
}

#[test]
fn websocket_disable() {
    let Some(w) = wine() else { return };
    let (_site, g) = ws_gateway(w, "disable");
    let (mut ws, head) = ws_connect(&g, "/ws-deflate", true);
    assert!(!head.contains("permessage-deflate"), "{head}");
    assert_eq!(ws_round_trip(&mut ws, false), (false, "ext=none".into()));
}

#[test]
fn websocket_offload() {
    let Some(w) = wine() else { return };
    let (_site, g) = ws_gateway(w, "offload");
    let (mut ws, head) = ws_connect(&g, "/ws-deflate", true);
    assert!(head.contains("permessage-deflate"), "{head}");
    // hpgate compresses; the app negotiated nothing.
    assert_eq!(ws_round_trip(&mut ws, true), (true, "ext=none".into()));
}

// -- supervision ----------------------------------------------------------

#[test]
fn crash_restarts_and_rapid_fails_lock_out() {
    let Some(w) = wine() else { return };
    let site = app_site(w, "wine-crash", "rapidFailsPerMinute=\"2\"", "", &[]);
    let g = WinGateway::start(w, &site, &[]);
    let first = g.app_pid().expect("app answers");
    assert_eq!(g.get("/crash?code=7").text(), "exiting with 7");
    let mut second = None;
    assert!(wait_until(30 * S, || {
        second = g.app_pid();
        second.is_some_and(|p| p != first)
    }));
    assert!(g.wait_log("exited with exit code 7", 5 * S), "{}", g.logs());
    for _ in 0..2 {
        assert!(wait_until(30 * S, || g.app_pid().is_some()), "{}", g.logs());
        let _ = g.get("/crash?code=7");
    }
    assert!(
        wait_until(30 * S, || g.get("/").text().contains("too many crashes")),
        "{}",
        g.logs()
    );
    let r = g.get("/");
    assert_eq!(r.status, 502);
    assert!(r.text().contains("next try at"), "{}", r.text());
}

#[test]
fn app_offline_htm_takes_the_app_down_and_back() {
    let Some(w) = wine() else { return };
    let site = app_site(w, "wine-offline", "", "", &[("shutdownTimeLimit", "2")]);
    let g = WinGateway::start(w, &site, &[]);
    let pid = g.app_pid().unwrap();
    let app = win_path(&site.path("winapp.exe"));
    site.write("app_offline.htm", "<h1>Back soon</h1>");
    assert!(wait_until(30 * S, || g.get("/").status == 503));
    assert_eq!(g.get("/").text(), "<h1>Back soon</h1>");
    assert!(
        wait_until(30 * S, || processes_with(&app).is_empty()),
        "app still runs"
    );
    std::fs::remove_file(site.path("app_offline.htm")).unwrap();
    assert!(
        wait_until(30 * S, || g.get("/").status == 200),
        "{}",
        g.logs()
    );
    assert_ne!(g.app_pid(), Some(pid));
}

#[test]
fn editing_web_config_recycles_the_app() {
    let Some(w) = wine() else { return };
    let env_xml = |v: &str| {
        format!("<environmentVariables><environmentVariable name=\"GEN\" value=\"{v}\"/></environmentVariables>")
    };
    let attrs = "processPath=\".\\winapp.exe\" arguments=\"--port %HTTP_PLATFORM_PORT%\"";
    let site = Site::new("wine-recycle");
    w.copy_app(&site);
    site.web_config(attrs, &env_xml("one"), &[("shutdownTimeLimit", "2")]);
    let g = WinGateway::start(w, &site, &[]);
    let first = g.app_pid().unwrap();
    assert_eq!(var(&env_of(&g), "GEN"), "one");
    site.web_config(attrs, &env_xml("two"), &[("shutdownTimeLimit", "2")]);
    assert!(
        wait_until(30 * S, || g.get("/env").text().contains("GEN=two")),
        "{}",
        g.logs()
    );
    assert_ne!(g.app_pid(), Some(first));
}

#[test]
fn ctrl_c_stops_hpgate_and_the_app_promptly() {
    let Some(w) = wine() else { return };
    // A long limit: the stop must not wait for it.
    let site = app_site(w, "wine-stop", "", "", &[("shutdownTimeLimit", "30")]);
    let mut g = WinGateway::start(w, &site, &[]);
    assert!(g.app_pid().is_some());
    let app = win_path(&site.path("winapp.exe"));
    assert_eq!(processes_with(&app).len(), 1);
    let t0 = Instant::now();
    g.signal("INT");
    let status = g.wait_exit(20 * S);
    assert!(
        status.is_some(),
        "hpgate.exe still runs after 20 s:\n{}",
        g.logs()
    );
    assert!(g.wait_log("Ctrl-C received", 5 * S), "{}", g.logs());
    assert!(t0.elapsed() < 20 * S);
    assert!(
        wait_until(10 * S, || processes_with(&app).is_empty()),
        "the app outlived hpgate"
    );
}

#[test]
fn kill_9_of_hpgate_leaves_no_app_and_no_grandchild() {
    let Some(w) = wine() else { return };
    let site = app_site(w, "wine-kill9", "", "", &[]);
    let mut g = WinGateway::start(w, &site, &[]);
    let r = g.get("/grandchild");
    assert_eq!(r.status, 200, "{}", g.logs());
    let app = win_path(&site.path("winapp.exe"));
    assert!(
        wait_until(20 * S, || processes_with(&app).len() == 2),
        "app and grandchild: {:?}",
        processes_with(&app)
    );
    g.signal("KILL");
    assert!(g.wait_exit(10 * S).is_some());
    assert!(
        wait_until(30 * S, || processes_with(&app).is_empty()),
        "left behind: {:?}",
        processes_with(&app)
    );
}

/// A worker the app starts in its very first instant, before hpgate could
/// put a running app in its job, is in the job too: the app starts
/// suspended and runs only once it is in. Under wine the race of an
/// after-start assignment does not show (the app needs far longer to load
/// than hpgate to assign it), so this is a guard.
#[test]
fn kill_9_of_hpgate_leaves_no_grandchild_started_at_once() {
    let Some(w) = wine() else { return };
    let site = Site::new("wine-kill9-early");
    w.copy_app(&site);
    let args = "--port %HTTP_PLATFORM_PORT% --grandchild-first";
    site.web_config(
        &format!("processPath=\".\\winapp.exe\" arguments=\"{args}\""),
        "",
        &[],
    );
    let mut g = WinGateway::start(w, &site, &[]);
    assert!(g.app_pid().is_some(), "{}", g.logs());
    assert!(
        g.wait_log("started at once: grandchild", 20 * S),
        "{}",
        g.logs()
    );
    let app = win_path(&site.path("winapp.exe"));
    assert!(
        wait_until(20 * S, || processes_with(&app).len() == 2),
        "app and grandchild: {:?}",
        processes_with(&app)
    );
    g.signal("KILL");
    assert!(g.wait_exit(10 * S).is_some());
    let gone = wait_until(30 * S, || processes_with(&app).is_empty());
    let left = processes_with(&app);
    for pid in &left {
        let _ = std::process::Command::new("kill")
            .arg("-9")
            .arg(pid.to_string())
            .status();
    }
    assert!(gone, "escaped the job: {left:?}");
}

// -- failure pages --------------------------------------------------------

/// The app runs, then `change` breaks its program and the app crashes: the
/// restart fails and the failure page says why.
fn failure_page(w: &Wine, name: &str, change: impl Fn(&Site)) -> String {
    let site = app_site(w, name, "", "", &[]);
    let g = WinGateway::start(w, &site, &[]);
    assert!(g.app_pid().is_some(), "{}", g.logs());
    change(&site);
    let _ = g.get("/crash?code=3");
    let mut page = String::new();
    let failed = wait_until(30 * S, || {
        let r = g.get("/");
        page = r.text();
        r.status == 502 && page.contains("could not start")
    });
    assert!(failed, "{page}\n{}", g.logs());
    page
}

#[test]
fn failure_page_for_a_missing_interpreter() {
    let Some(w) = wine() else { return };
    let page = failure_page(w, "wine-missing", |site| {
        std::fs::remove_file(site.path("winapp.exe")).unwrap();
    });
    assert!(page.contains("no such file"), "{page}");
}

/// Wine cannot model access denied: it runs as one Unix user (root here,
/// who may read anything), and starting a folder as a program, error 5
/// (ERROR_ACCESS_DENIED) on Windows, is error 6 under wine. So this covers
/// the Win32 error's path to the page and its HRESULT; failure.rs's unit
/// test covers the words for error 5.
#[test]
fn failure_page_for_a_program_windows_refuses() {
    let Some(w) = wine() else { return };
    let page = failure_page(w, "wine-denied", |site| {
        std::fs::remove_file(site.path("winapp.exe")).unwrap();
        std::fs::create_dir(site.path("winapp.exe")).unwrap();
    });
    if page.contains("permission denied") {
        assert!(page.contains("[0x80070005]"), "{page}");
    } else {
        assert!(page.contains("[0x80070006]"), "wine's error 6: {page}");
    }
}

// -- the Windows service ----------------------------------------------------

/// `wine hpgate.exe args...` to its end (deadline one minute), with its
/// output in a file of the site: wine's service manager, started by the
/// first command that needs it, inherits that command's standard handles
/// and outlives it, so no pipe may be handed over.
fn run_exe(w: &Wine, site: &Site, args: &[&str]) -> (bool, String) {
    let out = site.path("hpgate-cli.txt");
    let file = std::fs::File::create(&out).unwrap();
    let mut child = w
        .exe("hpgate.exe", args)
        .current_dir(&site.dir)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut status = None;
    let done = wait_until(60 * S, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !done {
        let _ = child.kill();
    }
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    (status.is_some_and(|s| s.success()), text)
}

fn service(w: &Wine, site: &Site, args: &[&str]) -> (bool, String) {
    run_exe(w, site, &[&["service"], args].concat())
}

/// Stops and removes the test service, whatever the test did.
struct Installed<'a>(&'a Wine, &'a Site, String);

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        let _ = service(self.0, self.1, &["stop", "--name", &self.2]);
        let _ = service(self.0, self.1, &["uninstall", "--name", &self.2]);
    }
}

#[test]
fn service_install_start_stop_uninstall() {
    let Some(w) = wine() else { return };
    let site = app_site(w, "wine-service", "", "", &[("shutdownTimeLimit", "30")]);
    let port = free_port();
    let name = format!("hpgate-test-{}", std::process::id());
    let config = win_path(&site.path("web.config"));
    let listen = format!("127.0.0.1:{port}");
    let (ok, text) = service(
        w,
        &site,
        &[
            "install", "--name", &name, "--config", &config, "--listen", &listen,
        ],
    );
    assert!(ok, "{text}");
    let _installed = Installed(w, &site, name.clone());
    assert!(text.contains("service run --name"), "{text}");
    let (ok, text) = service(w, &site, &["start", "--name", &name]);
    assert!(ok, "{text}");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let log = site.path("logs/hpgate-service.log");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(30 * S, || request(addr, "GET", "/pid", &[], b"").status
            == 200),
        "{}",
        read_log()
    );
    let app = win_path(&site.path("winapp.exe"));
    assert_eq!(processes_with(&app).len(), 1);
    // The stop does not wait shutdownTimeLimit (30 s) for an app that
    // Ctrl-Break cannot reach (a service has no console).
    let t0 = Instant::now();
    let (ok, text) = service(w, &site, &["stop", "--name", &name]);
    assert!(ok, "{text}\n{}", read_log());
    assert!(t0.elapsed() < 20 * S, "{:?}", t0.elapsed());
    assert!(read_log().contains("INFO stopped"), "{}", read_log());
    assert!(
        wait_until(10 * S, || processes_with(&app).is_empty()),
        "the app outlived the service"
    );
    let (ok, text) = service(w, &site, &["uninstall", "--name", &name]);
    assert!(ok, "{text}");
}
