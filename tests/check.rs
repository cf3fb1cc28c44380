//! `hpgate check`: one fixture per failure (fixtures/check/, and the user
//! story's permission failures built in a temporary folder), each run
//! through the real binary with `--json`, asserting the line that names the
//! problem and the exit code (0 all ok, 1 warnings only, 2 a failure).
#![cfg(unix)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{hpgate_bin, repo_root, Site};

/// Runs `hpgate check --json` with `args`; returns the exit code and the lines.
fn check(args: &[&str]) -> (i32, Vec<Value>) {
    let out = Command::new(hpgate_bin())
        .arg("check")
        .arg("--json")
        .args(args)
        .output()
        .expect("run hpgate check");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let code = out.status.code().expect("exit code");
    assert_eq!(v["exitCode"], code, "{text}");
    (code, v["checks"].as_array().cloned().unwrap_or_default())
}

fn fixture(name: &str) -> String {
    repo_root()
        .join("fixtures/check")
        .join(name)
        .join("web.config")
        .display()
        .to_string()
}

/// The one line of check `name` with `status` (panics with all lines if none).
fn line<'a>(lines: &'a [Value], name: &str, status: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l["check"] == name && l["status"] == status)
        .and_then(|l| l["message"].as_str())
        .unwrap_or_else(|| panic!("no {status} line for {name}: {lines:#?}"))
}

fn fix_of<'a>(lines: &'a [Value], name: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l["check"] == name && l["fix"].is_string())
        .and_then(|l| l["fix"].as_str())
        .unwrap_or_else(|| panic!("no fix for {name}: {lines:#?}"))
}

fn is_root() -> bool {
    nix_uid() == 0
}

fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid()
        })
        .unwrap_or(1)
}

#[test]
fn a_good_site_is_all_ok() {
    let (code, lines) = check(&["--config", &fixture("good"), "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 0, "{lines:#?}");
    let start = line(&lines, "start", "ok");
    assert!(start.contains("ready on its port after"), "{start}");
    assert!(line(&lines, "python", "ok").contains("standard library"));
    assert_eq!(
        line(&lines, "port", "ok"),
        "arguments pass %HTTP_PLATFORM_PORT%"
    );
    // The trial start leaves nothing running.
    let pid: u32 = start
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .expect("pid in the start line");
    assert!(
        !support::pid_alive(pid),
        "app pid {pid} outlived hpgate check"
    );
}

#[test]
fn an_app_that_ignores_the_port_is_caught_without_waiting_out_the_limit() {
    let started = std::time::Instant::now();
    let (code, lines) = check(&[
        "--config",
        &fixture("ignores-port"),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2);
    let start = line(&lines, "start", "failure");
    assert!(
        start.contains("instead; pass %HTTP_PLATFORM_PORT%"),
        "{start}"
    );
    let port = line(&lines, "port", "warning");
    assert!(port.contains("does not read HTTP_PLATFORM_PORT"), "{port}");
    // startupTimeLimit is 20 s; the diagnosis comes well before.
    assert!(started.elapsed().as_secs() < 15, "{:?}", started.elapsed());
}

#[test]
fn an_ipv6_only_app_is_named_at_once() {
    let (code, lines) = check(&["--config", &fixture("ipv6-only"), "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 2);
    let start = line(&lines, "start", "failure");
    assert!(start.contains("(IPv6) only"), "{start}");
    assert!(line(&lines, "port", "ok").contains("it reads the variable"));
}

#[test]
fn flask_socketio_refusing_werkzeug_is_recognized() {
    let (code, lines) = check(&[
        "--config",
        &fixture("socketio-werkzeug"),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2);
    assert!(line(&lines, "output", "failure").contains("not designed to run in production"));
    assert!(fix_of(&lines, "output").contains("allow_unsafe_werkzeug=True"));
}

#[test]
fn a_missing_module_names_the_interpreter_and_its_venv() {
    let (code, lines) = check(&[
        "--config",
        &fixture("missing-module"),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2);
    let msg = line(&lines, "output", "failure");
    assert!(
        msg.contains("No module named 'hpgate_check_no_such_module'"),
        "{msg}"
    );
    assert!(msg.contains("bin/python (venv "), "{msg}");
}

#[test]
fn a_non_executable_process_path_fails_as_in_hpgate_config() {
    let fixture = fixture("not-executable");
    let script = Path::new(&fixture).with_file_name("app.sh");
    // git may check it out with any mode; the fixture is about 0644.
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, lines) = check(&["--config", &fixture]);
    assert_eq!(code, 2);
    let msg = line(&lines, "config", "failure");
    assert!(msg.contains("web.config:5:"), "{msg}");
    assert!(msg.contains("app.sh is not executable"), "{msg}");
}

#[test]
fn a_listen_address_in_use_names_who_holds_it() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = holder.local_addr().expect("addr").to_string();
    let (code, lines) = check(&["--config", &fixture("good"), "--listen", &addr]);
    assert_eq!(code, 2);
    let msg = line(&lines, "listen", "failure");
    assert!(msg.contains(&format!("cannot listen on {addr}")), "{msg}");
    assert!(
        msg.contains(&format!("in use by pid {}", std::process::id())),
        "{msg}"
    );
}

/// A venv-like layout of the user story under `site`: base/bin/python3.11
/// (an executable stand-in), its standard library base/lib/python3.11,
/// venv/bin/python linking to it, venv/pyvenv.cfg naming base/bin as home,
/// and a site whose stdout log folder is root's.
fn story_layout(site: &Site) -> String {
    let base = site.path("base");
    site.write("base/lib/python3.11/os.py", "# stand-in\n");
    site.write("base/lib/python3.11/encodings/__init__.py", "# stand-in\n");
    site.write(
        "venv/lib/python3.11/site-packages/flask/__init__.py",
        "# stand-in\n",
    );
    site.write("base/bin/python3.11", "#!/bin/sh\nexit 3\n");
    let python = base.join("bin/python3.11");
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    site.write(
        "venv/pyvenv.cfg",
        &format!("home = {}\nversion = 3.11.7\n", base.join("bin").display()),
    );
    std::fs::create_dir_all(site.path("venv/bin")).expect("mkdir");
    std::os::unix::fs::symlink(&python, site.path("venv/bin/python")).expect("symlink");
    site.write("site/app.py", "print('hello')\n");
    std::fs::create_dir_all(site.path("site/logs")).expect("mkdir");
    site.write(
        "site/web.config",
        &format!(
            "<configuration><system.webServer><httpPlatform processPath=\"{}\" arguments=\"app.py --port %HTTP_PLATFORM_PORT%\" stdoutLogEnabled=\"true\" stdoutLogFile=\".\\logs\\python\" /></system.webServer></configuration>",
            site.path("venv/bin/python").display()
        ),
    );
    for dir in [
        "",
        "base",
        "base/bin",
        "base/lib",
        "base/lib/python3.11",
        "venv",
        "site",
    ] {
        let p = site.path(dir);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    site.path("site/web.config").display().to_string()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn the_story_permission_failures_as_nobody() {
    if !is_root() {
        eprintln!("skipped: --as needs root");
        return;
    }
    let site = Site::new("check-story");
    let config = story_layout(&site);
    let args = [
        "--config",
        config.as_str(),
        "--as",
        "nobody",
        "--listen",
        "127.0.0.1:0",
    ];

    // Everything readable: the interpreter and its installation pass; the
    // log folder (root's, 0755) does not take nobody's files.
    let (_, lines) = check(&args);
    assert!(line(&lines, "account", "ok").contains("nobody (uid"));
    line(&lines, "program", "ok");
    line(&lines, "python", "ok");
    let log = line(&lines, "log", "failure");
    assert!(
        log.contains(&format!(
            "nobody cannot create files in {}",
            site.path("site/logs").display()
        )),
        "{log}"
    );

    // 0x80070005: the interpreter's folder is closed to the account.
    chmod(&site.path("base/bin"), 0o700);
    let (code, lines) = check(&args);
    assert_eq!(code, 2);
    let msg = line(&lines, "program", "failure");
    let bin = site.path("base/bin").display().to_string();
    assert!(
        msg.contains(&format!("nobody cannot enter the folder {bin} ")),
        "{msg}"
    );
    assert!(fix_of(&lines, "program").contains(&format!("setfacl -m u:nobody:x {bin}")));
    line(&lines, "start", "skipped");
    chmod(&site.path("base/bin"), 0o755);

    // Endless loading: python runs, but its standard library is closed.
    let stdlib = site.path("base/lib/python3.11");
    chmod(&stdlib, 0o700);
    let (code, lines) = check(&args);
    assert_eq!(code, 2);
    line(&lines, "program", "ok");
    let msg = line(&lines, "python", "failure");
    assert!(msg.contains("the standard library"), "{msg}");
    assert!(
        msg.contains(&format!("{} (Permission denied)", stdlib.display())),
        "{msg}"
    );
    assert!(fix_of(&lines, "python")
        .contains(&format!("setfacl -R -m u:nobody:rX {}", stdlib.display())));
    chmod(&stdlib, 0o755);

    // A file deep in site-packages is named too.
    let module = site.path("venv/lib/python3.11/site-packages/flask/__init__.py");
    chmod(&module, 0o600);
    let (_, lines) = check(&args);
    let msg = line(&lines, "python", "failure");
    assert!(
        msg.contains(&format!("nobody cannot read {}", module.display())),
        "{msg}"
    );
}

#[test]
fn socket_io_websocket_and_the_development_server_warning() {
    // The chat demo: Flask-SocketIO on Werkzeug (threading, simple-websocket).
    let config = repo_root()
        .join("fixtures/chat/web.config")
        .display()
        .to_string();
    let (code, lines) = check(&["--config", &config, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 1, "{lines:#?}");
    let msg = line(&lines, "socketio", "ok");
    assert!(msg.contains("offers the WebSocket upgrade"), "{msg}");
    // The app's own answer (simple-websocket names the window bits), end to end.
    assert!(
        msg.contains("answered the upgrade probe (passthrough: the app agreed \"permessage-deflate; client_max_window_bits=15\", end to end through hpgate"),
        "{msg}"
    );
    assert_gateway_app_gone(msg);
    assert!(line(&lines, "output", "warning").contains("development server"));
}

/// The line names the gateway's app; hpgate check left it stopped.
fn assert_gateway_app_gone(msg: &str) {
    let pid: u32 = msg
        .split("(its app: pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no gateway app pid in {msg}"));
    assert!(
        !support::pid_alive(pid),
        "gateway app pid {pid} outlived hpgate check"
    );
}

#[test]
fn socket_io_websocket_through_hpgate_in_offload_and_disable() {
    let config = repo_root()
        .join("fixtures/chat/web.config")
        .display()
        .to_string();
    let args = [
        "--config",
        &config,
        "--listen",
        "127.0.0.1:0",
        "--websocket-compression",
    ];
    // The app would agree "permessage-deflate; client_max_window_bits=15"
    // (see above): hpgate's plain answer shows the WebSocket passed it.
    let (_, lines) = check(&[&args[..], &["offload"]].concat());
    let msg = line(&lines, "socketio", "ok");
    assert!(
        msg.contains("(offload: hpgate agreed \"permessage-deflate\" with the client"),
        "{msg}"
    );
    assert_gateway_app_gone(msg);
    // The client offered, the app would agree: hpgate removed the offer.
    let (_, lines) = check(&[&args[..], &["disable"]].concat());
    let msg = line(&lines, "socketio", "ok");
    assert!(
        msg.contains("(disable: no compression was agreed)"),
        "{msg}"
    );
}

#[test]
fn socket_io_on_waitress_in_two_processes_gets_its_hints() {
    let (code, lines) = check(&[
        "--config",
        &fixture("socketio-waitress"),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 0, "{lines:#?}");
    let said = lines
        .iter()
        .filter(|l| l["check"] == "socketio")
        .filter_map(|l| l["message"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(said.contains("long-polling only"), "{said}");
    assert!(said.contains("message queue"), "{said}");
}
