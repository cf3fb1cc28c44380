//! Process supervision against real processes: the stdlib test app started
//! by the real hpgate binary.
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

const S: Duration = Duration::from_secs(1);

#[test]
fn starts_eagerly_and_hands_over_port_env_and_cwd() {
    let site = Site::new("env");
    let app = testapp();
    site.web_config(
        &format!(
            "processPath=\"python3\" arguments=\"{} --port %HTTP_PLATFORM_PORT% --mode serve\"",
            app.display()
        ),
        "<environmentVariables><environmentVariable name=\"APP_URL\" value=\"http://127.0.0.1:%HTTP_PLATFORM_PORT%/x\"/><environmentVariable name=\"FROM_HPGATE\" value=\"%HPGATE_TEST_VAR%-ok\"/></environmentVariables>",
        &[],
    );
    let g = Gateway::start_env(&site.dir, &[], &[("HPGATE_TEST_VAR", "expanded")]);
    // Ready before any request was sent.
    assert!(g.wait_log("app process is ready", 10 * S), "{}", g.logs());
    let r = g.get("/env");
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let port = v["env"]["HTTP_PLATFORM_PORT"].as_str().unwrap().to_string();
    assert!(port.parse::<u16>().is_ok(), "no padding: {port:?}");
    let argv: Vec<&str> = v["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(argv.contains(&port.as_str()), "{argv:?}");
    assert!(!argv.iter().any(|a| a.contains("%HTTP_PLATFORM_PORT%")));
    assert_eq!(v["env"]["HTTP_PLATFORM_APPL_PATH"], "/");
    assert_eq!(v["env"]["APP_URL"], format!("http://127.0.0.1:{port}/x"));
    assert_eq!(v["env"]["FROM_HPGATE"], "expanded-ok");
    assert_eq!(
        v["env"]["HPGATE_TEST_VAR"], "expanded",
        "hpgate's environment is inherited"
    );
    let cwd = std::fs::canonicalize(v["cwd"].as_str().unwrap()).unwrap();
    assert_eq!(cwd, std::fs::canonicalize(&site.dir).unwrap());
}

#[test]
fn exit_at_start_gives_502_with_cause_and_output() {
    let site = Site::new("exit1");
    site.testapp_config("exit1", "startupRetryCount=\"1\"", &[]);
    let g = Gateway::start(&site.dir, &[]);
    let r = g.get("/");
    assert_eq!(r.status, 502);
    let t = r.text();
    assert!(
        t.contains("exited with exit code 1 before listening"),
        "{t}"
    );
    assert!(
        t.contains("testapp: failing on purpose"),
        "output tail shown on loopback: {t}"
    );
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let html = request(g.addr, "GET", "/", &[("Accept", "text/html")], b"");
    assert!(html
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(html.text().contains("<h1>"));
}

#[test]
fn missing_and_unexecutable_programs_are_explained() {
    // A missing or unexecutable processPath is refused by `hpgate config`
    // and at start (tests/config_cli.rs); what only exec can tell is a
    // script's `#!` interpreter being missing or not executable.
    use std::os::unix::fs::PermissionsExt;
    let exe = |site: &Site, rel: &str, text: &str| {
        site.write(rel, text);
        std::fs::set_permissions(site.path(rel), std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let site = Site::new("spawn");
    exe(&site, "app.sh", "#!/no-such-interpreter\n");
    site.web_config("processPath=\"./app.sh\" startupRetryCount=\"1\"", "", &[]);
    let g = Gateway::start(&site.dir, &[]);
    let t = g.get("/").text();
    assert!(
        t.contains("could not start") && t.contains("no such file"),
        "{t}"
    );
    drop(g);

    let site = Site::new("perm");
    site.write("interp", "#!/bin/sh\n");
    exe(
        &site,
        "app.sh",
        &format!("#!{}\necho hi\n", site.path("interp").display()),
    );
    site.web_config("processPath=\".\\app.sh\" startupRetryCount=\"1\"", "", &[]);
    let g = Gateway::start(&site.dir, &[]);
    let t = g.get("/").text();
    assert!(
        t.contains("permission denied") && t.contains("read and execute access"),
        "{t}"
    );
}

#[test]
fn wrong_port_and_ipv6_only_are_named() {
    let site = Site::new("wrongport");
    site.testapp_config(
        "wrong-port",
        // Room for Python to start on a loaded machine: the diagnosis
        // needs the app listening (on the wrong address) before the limit.
        "startupTimeLimit=\"4\" startupRetryCount=\"1\"",
        &[],
    );
    let g = Gateway::start(&site.dir, &[]);
    let t = g.get("/").text();
    assert!(
        t.contains("listens on 127.0.0.1:") && t.contains("HTTP_PLATFORM_PORT"),
        "{t}"
    );
    drop(g);

    let site = Site::new("ipv6");
    site.testapp_config(
        "ipv6",
        // Room for Python to start on a loaded machine: the diagnosis
        // needs the app listening (on the wrong address) before the limit.
        "startupTimeLimit=\"4\" startupRetryCount=\"1\"",
        &[],
    );
    let g = Gateway::start(&site.dir, &[]);
    let t = g.get("/").text();
    assert!(t.contains("[::1]") && t.contains("IPv6"), "{t}");
}

#[test]
fn slow_start_is_waited_for() {
    let site = Site::new("slowstart");
    // The app's 1 s before listening is the scenario, not a synchronization.
    site.web_config(
        &format!("processPath=\"python3\" arguments=\"{} --mode sleep --delay 1\" startupTimeLimit=\"5\"", testapp().display()),
        "",
        &[],
    );
    let g = Gateway::start(&site.dir, &[]);
    let r = g.get("/");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn crash_restarts_and_rapid_fails_lock_out() {
    let site = Site::new("crash");
    site.testapp_config("serve", "rapidFailsPerMinute=\"2\"", &[]);
    let g = Gateway::start(&site.dir, &[]);
    let first = app_pid(&g).expect("app answers");
    let _ = g.get("/crash");
    let mut second = None;
    assert!(wait_until(5 * S, || {
        second = app_pid(&g);
        second.is_some_and(|p| p != first)
    }));
    assert!(!pid_alive(first));
    assert!(g.wait_log("exited with", 5 * S), "{}", g.logs());
    // Two more crashes: three in the window, over the limit of two.
    for _ in 0..2 {
        assert!(wait_until(5 * S, || app_pid(&g).is_some()));
        let _ = g.get("/crash");
    }
    // The crash is seen when the process is reaped; a request racing it
    // gets "exited while handling the request". Then the lock-out holds.
    assert!(
        wait_until(5 * S, || g.get("/").text().contains("too many crashes")),
        "{}",
        g.logs()
    );
    let t0 = Instant::now();
    let r = g.get("/");
    assert!(t0.elapsed() < S, "lock-out answers at once");
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("too many crashes") && r.text().contains("next try at"),
        "{}",
        r.text()
    );
}

#[test]
fn stdout_log_file_is_named_and_filled() {
    let site = Site::new("stdoutlog");
    site.testapp_config(
        "serve",
        "stdoutLogEnabled=\"true\" stdoutLogFile=\".\\logs\\py\"",
        &[],
    );
    let g = Gateway::start_env(&site.dir, &[], &[("TESTAPP_BANNER", "banner-for-the-log")]);
    let pid = app_pid(&g).unwrap();
    assert_eq!(g.get("/print?text=printed-line").status, 200);
    let mut found = None;
    assert!(
        wait_until(5 * S, || {
            found = std::fs::read_dir(site.path("logs")).ok().and_then(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .find(|n| n.ends_with(&format!("_{pid}.log")))
            });
            found.as_ref().is_some_and(|n| {
                std::fs::read_to_string(site.path("logs").join(n))
                    .unwrap_or_default()
                    .contains("printed-line")
            })
        }),
        "log file for {pid}"
    );
    let name = found.unwrap();
    let stamp = name.trim_start_matches("py_").split('_').next().unwrap();
    assert_eq!(stamp.len(), 14);
    assert!(stamp.chars().all(|c| c.is_ascii_digit()));
    let content = std::fs::read_to_string(site.path("logs").join(&name)).unwrap();
    assert!(content.contains("banner-for-the-log"));
    // Output also reaches hpgate's own log at debug level, with the pid.
    assert!(g.wait_log("printed-line", 2 * S));
    assert!(g.wait_log(&format!("pid={pid}"), 2 * S));
}

#[test]
fn unwritable_log_file_does_not_stop_the_app() {
    let site = Site::new("badlog");
    site.write("afile", "x");
    site.testapp_config(
        "serve",
        "stdoutLogEnabled=\"true\" stdoutLogFile=\"afile/sub/py\"",
        &[],
    );
    let g = Gateway::start(&site.dir, &[]);
    assert_eq!(g.get("/").status, 200);
    assert!(
        g.wait_log("cannot create stdout log file", 2 * S),
        "{}",
        g.logs()
    );
}

#[test]
fn several_processes_share_the_load() {
    let site = Site::new("multi");
    site.testapp_config("serve", "processesPerApplication=\"3\"", &[]);
    let g = Gateway::start(&site.dir, &[]);
    let mut pids = std::collections::HashSet::new();
    assert!(
        wait_until(10 * S, || {
            if let Some(p) = app_pid(&g) {
                pids.insert(p);
            }
            pids.len() == 3
        }),
        "{pids:?}"
    );
}

#[test]
fn sigterm_stops_cleanly_after_inflight_requests() {
    let site = Site::new("term");
    site.testapp_config("serve", "", &[("shutdownTimeLimit", "3")]);
    let mut g = Gateway::start(&site.dir, &[]);
    let pid = app_pid(&g).unwrap();
    let addr = g.addr;
    let slow =
        std::thread::spawn(move || request(addr, "GET", "/slow?delay=1&mark=inflight", &[], b""));
    assert!(g.wait_log("testapp saw inflight", 10 * S), "{}", g.logs());
    assert_eq!(g.stop(10 * S), Some(0));
    assert_eq!(
        slow.join().unwrap().status,
        200,
        "in-flight request finished"
    );
    assert!(g.wait_log("testapp got SIGTERM", 5 * S), "{}", g.logs());
    assert!(!pid_alive(pid));
}

#[test]
fn an_app_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let site = Site::new("ignoreterm");
    site.testapp_config("ignore-term", "", &[("shutdownTimeLimit", "1")]);
    let mut g = Gateway::start(&site.dir, &[]);
    let pid = app_pid(&g).unwrap();
    let t0 = Instant::now();
    assert_eq!(g.stop(10 * S), Some(0));
    assert!(t0.elapsed() < 5 * S);
    assert!(wait_until(2 * S, || !pid_alive(pid)));
}

#[test]
fn a_second_signal_exits_at_once_and_still_kills_the_app() {
    let site = Site::new("twice");
    site.testapp_config("ignore-term", "", &[("shutdownTimeLimit", "10")]);
    let mut g = Gateway::start(&site.dir, &[]);
    let pid = app_pid(&g).unwrap();
    let t0 = Instant::now();
    g.signal("TERM");
    // The second signal must find the shutdown under way.
    assert!(g.wait_log("received: shutting down", 5 * S), "{}", g.logs());
    g.signal("TERM");
    assert!(g.wait_exit(5 * S).is_some());
    assert!(t0.elapsed() < 5 * S);
    assert!(wait_until(3 * S, || !pid_alive(pid)));
}

#[test]
fn kill_9_leaves_no_orphan_not_even_a_grandchild() {
    let site = Site::new("kill9");
    site.write(
        "start.sh",
        &format!(
            "#!/bin/sh\nsleep 300 &\necho $! > grandchild.pid\nexec python3 {} --mode serve\n",
            testapp().display()
        ),
    );
    site.web_config("processPath=\"/bin/sh\" arguments=\"start.sh\"", "", &[]);
    let mut g = Gateway::start(&site.dir, &[]);
    let pid = app_pid(&g).unwrap();
    let grandchild: u32 = std::fs::read_to_string(site.path("grandchild.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(grandchild));
    g.signal("KILL");
    let _ = g.wait_exit(5 * S);
    assert!(
        wait_until(3 * S, || !pid_alive(pid)),
        "app survived kill -9 of hpgate"
    );
    assert!(
        wait_until(3 * S, || !pid_alive(grandchild)),
        "grandchild survived kill -9 of hpgate"
    );
}

#[test]
fn app_offline_htm_takes_the_app_down_and_back() {
    let site = Site::new("offline");
    site.testapp_config("serve", "", &[("shutdownTimeLimit", "1")]);
    let g = Gateway::start(&site.dir, &[]);
    let pid = app_pid(&g).unwrap();
    site.write("app_offline.htm", "<h1>Back soon</h1>");
    assert!(wait_until(5 * S, || g.get("/").status == 503));
    assert_eq!(g.get("/").text(), "<h1>Back soon</h1>");
    assert!(wait_until(5 * S, || !pid_alive(pid)));
    std::fs::remove_file(site.path("app_offline.htm")).unwrap();
    assert!(wait_until(10 * S, || g.get("/").status == 200));
    assert_ne!(app_pid(&g), Some(pid));
}

/// A web.config for the test app whose environment names its generation
/// (`/env` shows it), with a short shutdown limit.
fn with_generation(site: &Site, value: &str) {
    site.web_config(
        &format!("processPath=\"python3\" arguments=\"{} --mode serve\"", testapp().display()),
        &format!("<environmentVariables><environmentVariable name=\"GENERATION\" value=\"{value}\"/></environmentVariables>"),
        &[("shutdownTimeLimit", "2")],
    )
}

#[test]
fn editing_web_config_recycles_without_a_failed_request() {
    let site = Site::new("recycle");
    let write = |value: &str| with_generation(&site, value);
    write("one");
    let g = Gateway::start(&site.dir, &[]);
    let old = app_pid(&g).unwrap();
    let addr = g.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (flag, counter) = (stop.clone(), sent.clone());
    let load = std::thread::spawn(move || {
        let mut statuses = Vec::new();
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            statuses.push(request(addr, "GET", "/", &[], b"").status);
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        statuses
    });
    let sent_so_far = || sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(wait_until(10 * S, || sent_so_far() >= 5), "load never ran");
    write("two");
    let env_of = |g: &Gateway| -> Option<String> {
        let r = g.get("/env");
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        v["env"]["GENERATION"].as_str().map(str::to_string)
    };
    assert!(
        wait_until(15 * S, || env_of(&g).as_deref() == Some("two")),
        "{}",
        g.logs()
    );
    // Keep the load going until the old process is gone and a few more
    // requests went through: retiring it must not fail any either.
    assert!(wait_until(10 * S, || !pid_alive(old)), "{}", g.logs());
    let after_retire = sent_so_far();
    assert!(wait_until(10 * S, || sent_so_far() >= after_retire + 5));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = load.join().unwrap();
    assert!(statuses.len() > 10);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "failed during recycle: {:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    assert_ne!(app_pid(&g), Some(old));

    // A broken edit keeps the running app.
    site.write("web.config", "<configuration><system.webServer>");
    assert!(g.wait_log("has errors", 5 * S));
    assert_eq!(g.get("/").status, 200);
}

#[test]
fn detailed_errors_off_hides_the_output_tail() {
    let site = Site::new("nodetail");
    site.testapp_config(
        "exit1",
        "startupRetryCount=\"1\"",
        &[("detailedErrors", "false")],
    );
    let g = Gateway::start(&site.dir, &[]);
    let t = g.get("/").text();
    assert!(t.contains("exited with exit code 1"), "{t}");
    assert!(
        !t.contains("failing on purpose"),
        "output shown although detailedErrors is off: {t}"
    );
    // The log still has it, for the operator.
    assert!(g.wait_log("failing on purpose", 2 * S));
}

/// Reads a response head (status line and headers) and returns the status.
fn read_head(r: &mut impl BufRead) -> u16 {
    let mut status = 0;
    let mut line = String::new();
    while r.read_line(&mut line).unwrap_or(0) > 0 && line.trim_end() != "" {
        if status == 0 {
            status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        }
        line.clear();
    }
    status
}

#[test]
fn shutdown_takes_at_most_shutdown_time_limit_plus_a_margin() {
    // One deadline for the whole stop: a request that outlasts it, a
    // WebSocket the app never closes and an app deaf to SIGTERM still let
    // hpgate exit soon after shutdownTimeLimit (2 s), with the app gone.
    let site = Site::new("boundedstop");
    site.testapp_config("ignore-term", "", &[("shutdownTimeLimit", "2")]);
    let mut g = Gateway::start(&site.dir, &[]);
    let pid = app_pid(&g).unwrap();
    let addr = g.addr;
    let slow =
        std::thread::spawn(move || request(addr, "GET", "/slow?delay=30&mark=long", &[], b""));
    let ws = TcpStream::connect(addr).unwrap();
    (&ws).write_all(b"GET /ws?mark=ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    ws.set_read_timeout(Some(10 * S)).unwrap();
    assert_eq!(read_head(&mut BufReader::new(&ws)), 101, "{}", g.logs());
    assert!(g.wait_log("testapp saw long", 10 * S), "{}", g.logs());

    let t0 = Instant::now();
    g.signal("TERM");
    let code = g.wait_exit(10 * S);
    let took = t0.elapsed();
    eprintln!("hpgate stopped in {took:?}");
    assert_eq!(code, Some(0), "{}", g.logs());
    assert!(took < 3 * S, "took {took:?}; log:\n{}", g.logs());
    assert!(wait_until(S, || !pid_alive(pid)), "the app outlived hpgate");
    drop(ws);
    let _ = slow.join();
}

/// The GENERATION variable the app serving `/env` was started with.
fn generation(g: &Gateway) -> Option<String> {
    let r = g.get("/env");
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    v["env"]["GENERATION"].as_str().map(str::to_string)
}

/// Live test-app processes started by `g` (its direct children running testapp.py).
fn app_processes(g: &Gateway) -> usize {
    children_of(g.pid())
        .into_iter()
        .filter(|p| {
            pid_alive(*p)
                && std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("testapp.py"))
        })
        .count()
}

#[test]
fn quick_successive_edits_end_with_the_last_one_serving() {
    // Each edit starts a generation; the first two start slowly (3 s), the
    // last quickly. The last edit must win, and only its generation stays.
    let site = Site::new("lastwins");
    let write = |value: &str, delay: &str| {
        site.web_config(
            &format!("processPath=\"python3\" arguments=\"{} --mode sleep --delay {delay}\" startupTimeLimit=\"20\"", testapp().display()),
            &format!("<environmentVariables><environmentVariable name=\"GENERATION\" value=\"{value}\"/></environmentVariables>"),
            &[("shutdownTimeLimit", "2")],
        )
    };
    write("zero", "0");
    let g = Gateway::start(&site.dir, &[]);
    assert!(wait_until(10 * S, || generation(&g).as_deref() == Some("zero")));
    let edits = |g: &Gateway| g.logs().matches("configuration changed: recycling").count();
    for (n, (value, delay)) in [("one", "3"), ("two", "3"), ("three", "0.1")]
        .iter()
        .enumerate()
    {
        write(value, delay);
        // The next edit only once this one was seen on its own.
        assert!(wait_until(5 * S, || edits(&g) == n + 1), "{}", g.logs());
    }
    assert!(
        wait_until(15 * S, || generation(&g).as_deref() == Some("three")
            && app_processes(&g) == 1),
        "serving {:?} with {} app processes; log:\n{}",
        generation(&g),
        app_processes(&g),
        g.logs()
    );
}

/// Opens a kept-alive connection that has had one answer (so it holds a
/// place under maxConnections).
fn held_connection(g: &Gateway) -> BufReader<TcpStream> {
    let s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(10 * S)).unwrap();
    (&s).write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_response(&mut r).status, 200);
    r
}

#[test]
fn a_lowered_max_connections_applies_to_new_connections() {
    let site = Site::new("maxconnlive");
    site.testapp_config("serve", "", &[("maxConnections", "10")]);
    let g = Gateway::start(&site.dir, &[]);
    let held = [held_connection(&g), held_connection(&g)];
    site.testapp_config("serve", "", &[("maxConnections", "2")]);
    assert!(
        g.wait_log("recycled: traffic now goes", 15 * S),
        "{}",
        g.logs()
    );
    let r = g.get("/");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("maxConnections (2)"), "{}", r.text());
    // A place freed is a place again: nothing more was taken away.
    drop(held);
    assert!(wait_until(5 * S, || g.get("/").status == 200));
}

/// One request on a kept-alive connection (written to `stream`, answered
/// through `answers`, which reads the same socket): its body.
fn on_kept(stream: &mut TcpStream, answers: &mut impl BufRead, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let r = read_response(answers);
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// A kept-alive client connection reuses what the supervisor told its last
/// request (`supervisor::Seen`); after a recycle its next request must go
/// to the new process at once, not try the old one's port first.
#[test]
fn a_kept_alive_connection_follows_a_recycle() {
    let site = Site::new("keptrecycle");
    let write = |value: &str| with_generation(&site, value);
    write("one");
    let g = Gateway::start(&site.dir, &["--admin", "127.0.0.1:0"]);
    let old = app_pid(&g).unwrap();
    let mut kept = TcpStream::connect(g.addr).unwrap();
    kept.set_read_timeout(Some(10 * S)).unwrap();
    let mut answers = BufReader::new(kept.try_clone().unwrap());
    assert!(on_kept(&mut kept, &mut answers, "/env").contains("\"one\""));
    write("two");
    assert!(
        wait_until(15 * S, || g.get("/env").text().contains("\"two\"")),
        "{}",
        g.logs()
    );
    assert!(wait_until(10 * S, || !pid_alive(old)), "{}", g.logs());
    assert!(on_kept(&mut kept, &mut answers, "/env").contains("\"two\""));
    // A connect to the old process's port would be refused, and then
    // retried on the new one without a word but this count.
    let refused = r#"hpgate_app_connect_errors_total{cause="refused"} "#;
    assert_eq!(
        metric(g.admin_addr(), refused),
        0.0,
        "the kept connection tried the old process first"
    );
}

#[test]
fn a_setting_that_needs_a_restart_says_so_by_name() {
    let site = Site::new("restartonly");
    site.testapp_config("serve", "", &[("workerThreads", "2")]);
    let g = Gateway::start(&site.dir, &[]);
    // Serving, so the watcher has taken its first look at web.config.
    assert!(app_pid(&g).is_some(), "{}", g.logs());
    site.testapp_config("serve", "", &[("workerThreads", "3")]);
    assert!(g.wait_log("workerThreads changed", 10 * S), "{}", g.logs());
    let line = g
        .logs()
        .lines()
        .find(|l| l.contains("workerThreads changed"))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("WARN") && line.contains("restart"), "{line}");
}

/// Names of the stdout log files in `dir`, with each one's size.
fn log_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let size = e.metadata().ok()?.len();
                    Some((e.file_name().to_string_lossy().into_owned(), size))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn stdout_log_rotates_and_debug_copies_cannot_flood() {
    let site = Site::new("rotate");
    let chatty = repo_root().join("fixtures/backends/chatty.py");
    site.web_config(
        &format!(
            "processPath=\"python3\" arguments=\"{} --mode serve\" stdoutLogEnabled=\"true\" stdoutLogFile=\".\\logs\\py\"",
            chatty.display()
        ),
        "",
        &[("stdoutLogMaxBytes", "65536"), ("stdoutLogMaxFiles", "3")],
    );
    let g = Gateway::start(&site.dir, &[]);
    assert!(
        wait_until(30 * S, || site.path("chatty-done").exists()),
        "{}",
        g.logs()
    );
    let pid = app_pid(&g).unwrap();
    // 2 MiB in 64 KiB files: the 33rd file (sequence 32) holds the end.
    let last = format!("_{pid}.32.log");
    assert!(
        wait_until(10 * S, || log_files(&site.path("logs"))
            .iter()
            .any(|(n, _)| n.ends_with(&last))),
        "{:?}",
        log_files(&site.path("logs"))
    );
    let files = log_files(&site.path("logs"));
    assert_eq!(files.len(), 3, "{files:?}");
    for (name, size) in &files {
        assert!(
            name.starts_with("py_") && name.contains(&format!("_{pid}.")),
            "{name}"
        );
        assert!(*size <= 65536, "{name} is {size} bytes");
    }
    // The debug copy is bounded: lines cut, the excess counted, not shown.
    let logs = g.logs();
    assert!(logs.contains("more bytes)"), "no cut line");
    assert!(g.wait_log("app output lines not shown in the debug log", 5 * S));
    let copied = logs.lines().filter(|l| l.contains("app: chatty ")).count();
    assert!(copied < 2000, "{copied} lines copied into the debug log");
}

/// Daemon pids the daemonizing fixture wrote so far.
fn daemon_pids(site: &Site) -> Vec<u32> {
    std::fs::read_to_string(site.path("daemon.pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn daemonizing_site(name: &str) -> Site {
    let site = Site::new(name);
    let app = repo_root().join("fixtures/backends/daemonizing.py");
    site.web_config(
        &format!(
            "processPath=\"python3\" arguments=\"{} --mode serve\"",
            app.display()
        ),
        "",
        &[],
    );
    site
}

/// Waits for the `n`th daemon and for hpgate to have adopted it.
fn adopted_daemon(g: &Gateway, site: &Site, n: usize) -> u32 {
    assert!(
        wait_until(20 * S, || daemon_pids(site).len() >= n),
        "{}",
        g.logs()
    );
    let pid = daemon_pids(site)[n - 1];
    let line = format!("pid={pid}");
    assert!(
        wait_until(10 * S, || g
            .logs()
            .lines()
            .any(|l| l.contains("adopted orphan process") && l.contains(&line))),
        "daemon {pid} not adopted: {}",
        g.logs()
    );
    pid
}

#[test]
fn daemons_stop_with_their_app_and_with_hpgate() {
    let site = daemonizing_site("daemons");
    let mut g = Gateway::start(&site.dir, &[]);
    let mut last = adopted_daemon(&g, &site, 1);
    for n in 2..=4 {
        let _ = g.get("/crash");
        let next = adopted_daemon(&g, &site, n);
        assert!(
            wait_until(10 * S, || !pid_alive(last)),
            "daemon {last} outlived its app's crash"
        );
        last = next;
    }
    let alive: Vec<u32> = daemon_pids(&site)
        .into_iter()
        .filter(|p| pid_alive(*p))
        .collect();
    assert_eq!(alive, [last], "daemons accumulate");
    assert_eq!(g.stop(20 * S), Some(0));
    assert!(
        wait_until(5 * S, || !pid_alive(last)),
        "daemon {last} outlived hpgate"
    );
}

#[test]
fn daemons_die_when_hpgate_is_killed() {
    let site = daemonizing_site("daemonkill");
    let mut g = Gateway::start(&site.dir, &[]);
    let daemon = adopted_daemon(&g, &site, 1);
    g.signal("KILL");
    let _ = g.wait_exit(10 * S);
    assert!(
        wait_until(10 * S, || !pid_alive(daemon)),
        "daemon {daemon} outlived a SIGKILLed hpgate"
    );
}
