//! HTTPS through the real binary with real clients: curl (HTTP/2 and
//! HTTP/1.1, verifying the certificate), a Python HTTP/2 client moving
//! 20 MB each way, Node `ws` over wss in every compression mode, PFX files,
//! a certificate replaced under an open connection, every certificate
//! error at start, hsts and httpsRedirect, and HTTP/2 header limits.
//! Certificates are made by `openssl` in each test's site folder.
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::*;

const S: Duration = Duration::from_secs(1);

/// True when `tool` runs; otherwise says why the test is skipped.
fn have(tool: &str, arg: &str) -> bool {
    let ok = Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: `{tool}` is not installed");
    }
    ok
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// hpgate with a plain and an https listener and this PEM pair.
fn start_tls(site: &Site, cert: &Path, key: &Path) -> Gateway {
    Gateway::start(
        &site.dir,
        &[
            "--listen",
            "https://127.0.0.1:0",
            "--tls-cert",
            s(cert),
            "--tls-key",
            s(key),
        ],
    )
}

/// The test app behind hpgate over https, with these `hpgate:` settings.
fn testapp_tls(name: &str, settings: &[(&str, &str)]) -> (Site, Gateway, PathBuf) {
    let site = Site::new(name);
    site.testapp_config("serve", "", settings);
    let (cert, key) = make_cert(&site, "site", "hpgate-test");
    let g = start_tls(&site, &cert, &key);
    (site, g, cert)
}

/// curl over https trusting only `ca`: (status, http version, headers, body).
fn curl(
    g: &Gateway,
    ca: &Path,
    proto: &str,
    path: &str,
    extra: &[&str],
) -> (u16, String, String, Vec<u8>) {
    let out = run(Command::new("curl")
        .args([
            "-sS",
            proto,
            "--cacert",
            s(ca),
            "-D",
            "/dev/stderr",
            "-o",
            "-",
        ])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(extra)
        .arg(format!("https://{}{path}", g.https_addr())));
    let stdout = out.stdout;
    let cut = stdout.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let tail = String::from_utf8_lossy(&stdout[cut + 1..]).to_string();
    let (code, version) = tail.split_once(' ').unwrap_or(("0", ""));
    let headers = String::from_utf8_lossy(&out.stderr).to_lowercase();
    (
        code.parse().unwrap_or(0),
        version.into(),
        headers,
        stdout[..cut].to_vec(),
    )
}

fn app_header(echo: &serde_json::Value, name: &str) -> Option<String> {
    echo["headers"].as_array()?.iter().find_map(|h| {
        (h[0].as_str()?.eq_ignore_ascii_case(name)).then(|| h[1].as_str().unwrap_or("").to_string())
    })
}

#[test]
fn curl_http2_and_http1_over_tls() {
    if !have("openssl", "version") || !have("curl", "--version") {
        return;
    }
    let (_site, g, ca) = testapp_tls("tls-curl", &[]);
    for (flag, version, logged) in [
        ("--http2", "2", "proto=HTTP/2.0"),
        ("--http1.1", "1.1", "proto=HTTP/1.1"),
    ] {
        let (status, got, _, body) = curl(&g, &ca, flag, "/echo?via=tls", &[]);
        assert_eq!(
            (status, got.as_str()),
            (200, version),
            "{flag}: {}",
            g.logs()
        );
        let echo: serde_json::Value = serde_json::from_slice(&body).expect("echo json");
        assert_eq!(
            app_header(&echo, "x-forwarded-proto").as_deref(),
            Some("https"),
            "{echo}"
        );
        let fwd = app_header(&echo, "forwarded").unwrap_or_default();
        assert!(fwd.contains("proto=https"), "{flag}: forwarded={fwd}");
        assert!(
            g.wait_log(logged, 5 * S),
            "{flag}: no access line with {logged}: {}",
            g.logs()
        );
    }
    // The plain listener beside it still says http.
    let plain = g.get("/echo");
    let echo: serde_json::Value = serde_json::from_slice(&plain.body).expect("echo json");
    assert_eq!(
        app_header(&echo, "x-forwarded-proto").as_deref(),
        Some("http")
    );
}

#[test]
fn http2_streams_20_mb_each_way() {
    if !have("openssl", "version") {
        return;
    }
    let (_site, g, ca) = testapp_tls("tls-h2-big", &[]);
    let size = (20 * 1024 * 1024).to_string();
    let out = run(Command::new(venv_python())
        .arg(repo_root().join("fixtures/tls/h2_transfer.py"))
        .arg(format!("https://127.0.0.1:{}", g.https_addr().port()))
        .arg(&ca)
        .arg(&size));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| {
            panic!(
                "client said: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert_eq!(r["upload_version"], "HTTP/2", "{r}");
    assert_eq!(r["upload_status"], 200, "{r}");
    assert_eq!(r["upload"]["body_len"].to_string(), size, "{r}");
    assert_eq!(r["upload"]["body_sha256"], r["upload_want_sha256"], "{r}");
    assert_eq!(r["download_version"], "HTTP/2", "{r}");
    assert_eq!(r["download_status"], 200, "{r}");
    assert_eq!(r["download_len"].to_string(), size, "{r}");
    assert_eq!(r["download_sha256"], r["download_want_sha256"], "{r}");
}

/// The Python WebSocket echo server behind hpgate over https.
fn echo_tls(name: &str, mode: &str) -> (Site, Gateway, PathBuf) {
    let site = Site::new(name);
    site.python_app(
        "fixtures/websocket/echo_server.py",
        "",
        &[("webSocketCompression", mode), ("shutdownTimeLimit", "2")],
    );
    let (cert, key) = make_cert(&site, "site", "hpgate-old");
    let g = start_tls(&site, &cert, &key);
    assert!(g.wait_log("app process is ready", 15 * S), "{}", g.logs());
    (site, g, cert)
}

#[test]
fn node_ws_over_wss_in_every_mode() {
    if !have("openssl", "version") || !have("node", "--version") {
        return;
    }
    for mode in ["passthrough", "disable", "offload"] {
        let (_site, g, ca) = echo_tls(&format!("tls-wss-{mode}"), mode);
        let out = Command::new("node")
            .arg(repo_root().join("fixtures/tls/wss_echo.mjs"))
            .arg(format!("wss://127.0.0.1:{}/", g.https_addr().port()))
            .arg(&ca)
            .output()
            .expect("run node");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
            .unwrap_or_else(|_| {
                panic!("{mode}: {stdout} {}", String::from_utf8_lossy(&out.stderr))
            });
        assert_eq!(r["ok"], true, "{mode}: {r}\n{}", g.logs());
        assert_eq!(r["close_code"], 4003, "{mode}: {r}");
        let deflate = r["agreed"]
            .as_str()
            .is_some_and(|a| a.contains("permessage-deflate"));
        assert_eq!(deflate, mode != "disable", "{mode}: {r}");
    }
}

/// `openssl pkcs12 -export` of a fresh certificate with this password.
fn make_pfx(site: &Site, password: &str) -> PathBuf {
    let (cert, key) = make_cert(site, "pfx", "hpgate-pfx");
    let pfx = site.path("site.pfx");
    run(Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", &format!("pass:{password}")])
        .arg("-in")
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&pfx));
    pfx
}

/// hpgate run with these arguments and environment; (exit code, stderr).
/// Waits at most 20 s: a certificate error stops hpgate before it serves.
fn run_hpgate(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(hpgate_bin())
        .arg("run")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .current_dir(dir)
        .env_remove("HPGATE_LISTEN")
        .env_remove("HPGATE_CONFIG")
        .env_remove("HPGATE_TLS_PFX_PASSWORD")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hpgate");
    let exited = wait_until(20 * S, || child.try_wait().is_ok_and(|s| s.is_some()));
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("hpgate output");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (exited.then(|| out.status.code()).flatten(), stderr)
}

#[test]
fn pfx_with_password_from_env_and_wrong_password() {
    if !have("openssl", "version") || !have("curl", "--version") {
        return;
    }
    let site = Site::new("tls-pfx");
    site.testapp_config("serve", "", &[]);
    let pfx = make_pfx(&site, "s3cret pass");
    let args = ["--listen", "https://127.0.0.1:0", "--tls-pfx", s(&pfx)];
    let g = Gateway::start_env(
        &site.dir,
        &args,
        &[("HPGATE_TLS_PFX_PASSWORD", "s3cret pass")],
    );
    let (status, version, _, body) = curl(&g, &site.path("pfx.pem"), "--http2", "/", &[]);
    assert_eq!((status, version.as_str()), (200, "2"), "{}", g.logs());
    assert!(String::from_utf8_lossy(&body).starts_with("hello from"));
    drop(g);

    let (code, err) = run_hpgate(&site.dir, &args, &[("HPGATE_TLS_PFX_PASSWORD", "wrong")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("wrong password for {}", pfx.display())),
        "{err}"
    );
    let (code, err) = run_hpgate(&site.dir, &args, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no password was given"), "{err}");
}

/// The common name of the certificate a new handshake gets.
fn served_cn(addr: std::net::SocketAddr) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("subject=")?.split("CN = ").nth(1))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Opens a `kind` connection (wss or h2) with fixtures/tls/hold.py, swaps
/// the certificate as a deploy script does, and checks that the open
/// connection goes on with the old one while new handshakes get the new.
fn swap_under_open_connection(kind: &str, site: &Site, g: &Gateway, cert: &Path) {
    let addr = g.https_addr();
    assert_eq!(served_cn(addr), "hpgate-old");
    let scheme = if kind == "wss" { "wss" } else { "https" };
    let mut holder = Command::new(venv_python())
        .arg(repo_root().join("fixtures/tls/hold.py"))
        .arg(kind)
        .arg(format!("{scheme}://localhost:{}", addr.port()))
        .arg(cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start holder");
    let mut to = holder.stdin.take().expect("stdin");
    let mut from = BufReader::new(holder.stdout.take().expect("stdout"));
    let mut said = || {
        let mut line = String::new();
        from.read_line(&mut line).expect("holder output");
        serde_json::from_str::<serde_json::Value>(&line)
            .unwrap_or_else(|_| panic!("{kind} holder said {line:?}; {}", g.logs()))
    };
    assert_eq!(said()["connected"], "hpgate-old");
    writeln!(to, "before").unwrap();
    let r = said();
    assert!(
        r["echo"].as_str().is_some_and(|e| e.ends_with("before")),
        "{r}"
    );

    // A deploy script's swap: new files beside, renamed over the old ones.
    let (new_cert, new_key) = make_cert(site, "next", "hpgate-new");
    std::fs::rename(&new_key, site.path("site.key")).unwrap();
    std::fs::rename(&new_cert, cert).unwrap();
    assert!(g.wait_log("certificate reloaded", 15 * S), "{}", g.logs());
    assert!(
        wait_until(5 * S, || served_cn(addr) == "hpgate-new"),
        "new handshakes still get {}",
        served_cn(addr)
    );
    writeln!(to, "after").unwrap();
    let r = said();
    assert!(
        r["echo"].as_str().is_some_and(|e| e.ends_with("after")),
        "{r}; {}",
        g.logs()
    );
    if kind == "h2" {
        assert_eq!(r["same_connection"], true, "{r}");
    }
    drop(to);
    assert!(holder.wait().expect("holder").success());
}

#[test]
fn certificate_swap_keeps_open_h2_connection() {
    if !have("openssl", "version") {
        return;
    }
    let site = Site::new("tls-swap-h2");
    site.testapp_config("serve", "", &[]);
    let (cert, key) = make_cert(&site, "site", "hpgate-old");
    let g = start_tls(&site, &cert, &key);
    swap_under_open_connection("h2", &site, &g, &cert);
}

#[test]
fn certificate_swap_keeps_open_wss() {
    if !have("openssl", "version") {
        return;
    }
    let (site, g, cert) = echo_tls("tls-swap-wss", "passthrough");
    swap_under_open_connection("wss", &site, &g, &cert);
}

#[test]
fn certificate_errors_exit_2_naming_the_file() {
    if !have("openssl", "version") {
        return;
    }
    let site = Site::new("tls-errors");
    site.testapp_config("serve", "", &[]);
    let (cert, key) = make_cert(&site, "a", "a");
    let (_, other_key) = make_cert(&site, "b", "b");
    let enc = site.path("enc.key");
    run(Command::new("openssl")
        .args(["pkey", "-aes256", "-passout", "pass:x", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&enc));
    site.write("notpem.pem", "this is not a certificate\n");
    let missing = site.path("missing.pem");
    let https = ["--listen", "https://127.0.0.1:0"];
    let cases: [(&Path, &Path, String); 4] = [
        (&missing, &key, format!("cannot read {}", missing.display())),
        (
            &cert,
            &other_key,
            format!(
                "the private key in {} does not match the certificate in {}",
                other_key.display(),
                cert.display()
            ),
        ),
        (
            &cert,
            &enc,
            format!("{} holds an encrypted private key", enc.display()),
        ),
        (
            &site.path("notpem.pem"),
            &key,
            format!("{} is neither PEM", site.path("notpem.pem").display()),
        ),
    ];
    for (c, k, want) in cases {
        let args = [https[0], https[1], "--tls-cert", s(c), "--tls-key", s(k)];
        let (code, err) = run_hpgate(&site.dir, &args, &[]);
        assert_eq!(code, Some(2), "{want}: {err}");
        assert!(err.contains(&want), "want {want:?} in:\n{err}");
    }
    let (code, err) = run_hpgate(&site.dir, &https, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("an https:// listener needs a certificate"),
        "{err}"
    );
}

#[test]
fn hsts_on_https_only() {
    if !have("openssl", "version") || !have("curl", "--version") {
        return;
    }
    let (_site, g, ca) = testapp_tls("tls-hsts", &[("hsts", "31536000")]);
    for proto in ["--http2", "--http1.1"] {
        let (status, _, headers, _) = curl(&g, &ca, proto, "/", &[]);
        assert_eq!(status, 200);
        assert!(
            headers.contains("strict-transport-security: max-age=31536000"),
            "{proto}: {headers}"
        );
    }
    // The app's own field gives way to hpgate's, whether its fields came
    // as a map or as bytes (the lean path), and its other fields stay.
    let own = raw_path(
        b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=1\r\nX-App: 1\r\nContent-Length: 2\r\n\r\nok",
    );
    for proto in ["--http2", "--http1.1"] {
        let (status, _, headers, body) = curl(&g, &ca, proto, &own, &[]);
        assert_eq!((status, body.as_slice()), (200, &b"ok"[..]), "{proto}");
        let headers = headers.to_ascii_lowercase();
        assert_eq!(
            headers.matches("strict-transport-security:").count(),
            1,
            "{proto}: {headers}"
        );
        assert!(
            headers.contains("strict-transport-security: max-age=31536000"),
            "{proto}: {headers}"
        );
        assert!(headers.contains("x-app: 1"), "{proto}: {headers}");
    }
    let plain = g.get("/");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("strict-transport-security"), None);
}

#[test]
fn https_redirect_308_except_acme_challenges() {
    if !have("openssl", "version") || !have("curl", "--version") {
        return;
    }
    let (_site, g, ca) = testapp_tls("tls-redirect", &[("httpsRedirect", "true")]);
    let port = g.https_addr().port();
    let raw =
        b"POST /echo?a=1&b=2 HTTP/1.1\r\nHost: example.test:8080\r\nContent-Length: 1\r\n\r\nx";
    let r = raw_request(g.addr, raw, 10 * S);
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some(format!("https://example.test:{port}/echo?a=1&b=2").as_str())
    );
    // ACME HTTP-01 challenges reach the app on plain HTTP.
    let acme = g.get("/.well-known/acme-challenge/token123");
    assert_eq!(
        (acme.status, acme.text().as_str()),
        (404, "not found"),
        "{acme:?}"
    );
    // On https nothing is redirected.
    let (status, _, _, body) = curl(&g, &ca, "--http2", "/", &[]);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).starts_with("hello from"));
}

#[test]
fn http2_header_list_over_the_limit_gets_431() {
    if !have("openssl", "version") || !have("curl", "--version") {
        return;
    }
    let (_site, g, ca) = testapp_tls(
        "tls-h2-limits",
        &[
            ("maxRequestHeaderBytes", "4096"),
            ("maxRequestHeaders", "20"),
        ],
    );
    let big = format!("X-Big: {}", "a".repeat(6000));
    for proto in ["--http2", "--http1.1"] {
        let (status, version, _, _) = curl(&g, &ca, proto, "/echo", &["-H", &big]);
        assert_eq!(status, 431, "{proto} {version}: {}", g.logs());
        // Just under the limit passes.
        let fits = format!("X-Big: {}", "a".repeat(3000));
        let (status, _, _, _) = curl(&g, &ca, proto, "/echo", &["-H", &fits]);
        assert_eq!(status, 200, "{proto}: {}", g.logs());
        let many: Vec<String> = (0..30).map(|i| format!("X-H{i}: v")).collect();
        let mut args = Vec::new();
        for h in &many {
            args.extend(["-H", h.as_str()]);
        }
        let (status, _, _, _) = curl(&g, &ca, proto, "/echo", &args);
        assert_eq!(status, 431, "{proto}: too many headers: {}", g.logs());
    }
    // Far past the header list size hpgate announces (SETTINGS, here
    // 4096 + maxRequestLineBytes): the h2 layer ends the connection
    // before a request exists, so curl fails; nothing reaches the app and
    // the next connection is served.
    let huge = format!("X-Huge: {}", "b".repeat(100_000));
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "--retry",
            "0",
            "--cacert",
            s(&ca),
            "-o",
            "/dev/null",
        ])
        .args(["-H", &huge, "-w", "%{http_code}"])
        .arg(format!("https://{}/echo?mark=huge", g.https_addr()))
        .output()
        .expect("curl");
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(code == "431" || !out.status.success(), "curl said {code}");
    let (status, _, _, _) = curl(&g, &ca, "--http2", "/", &[]);
    assert_eq!(status, 200);
    assert!(!g.logs().contains("testapp saw huge"), "{}", g.logs());
}

/// hpgate's resident memory in KiB.
fn rss_kib(g: &Gateway) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", g.child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs fixtures/tls/h2_flood.py against hpgate's https listener.
fn flood(g: &Gateway, ca: &Path, mode: &str, count: usize) -> serde_json::Value {
    let out = run(Command::new(venv_python())
        .arg(repo_root().join("fixtures/tls/h2_flood.py"))
        .arg("127.0.0.1")
        .arg(g.https_addr().port().to_string())
        .arg(ca)
        .arg(mode)
        .arg(count.to_string()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|_| {
        panic!(
            "{mode}: client said: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("{r}");
    r
}

/// The app's request count (the test app's `/count`, itself included).
fn app_count(g: &Gateway) -> u64 {
    g.get("/count").text().trim().parse().unwrap_or(0)
}

/// HTTP/2 floods an attacker sends: rapid reset (CVE-2023-44487), a header
/// block continued forever (CVE-2024-27316), SETTINGS and PING floods whose
/// answers are never read. Each ends with the connection refused or cut,
/// reaches the app at most a little, leaves memory bounded, and hpgate
/// serves the next client at once.
#[test]
fn http2_floods_are_cut_off() {
    if !have("openssl", "version") {
        return;
    }
    let (_site, g, ca) = testapp_tls("tls-h2-floods", &[]);
    let before = app_count(&g);
    let rss0 = rss_kib(&g);

    let r = flood(&g, &ca, "rapid-reset", 20_000);
    assert!(
        r["ended"] == true || !r["goaway"].is_null(),
        "rapid reset went on: {r}"
    );
    let reached = app_count(&g) - before;
    assert!(
        reached < 2_000,
        "{reached} of 20,000 reset streams reached the app: {r}"
    );

    let r = flood(&g, &ca, "continuation", 4_000);
    assert!(
        r["ended"] == true || !r["goaway"].is_null(),
        "an endless header block was taken: {r}"
    );
    assert!(
        r["sent"].as_u64().unwrap_or(0) < 4_000,
        "all 64 MB taken: {r}"
    );

    for mode in ["settings", "ping"] {
        let r = flood(&g, &ca, mode, 200_000);
        // The connection may be cut or may simply stop being read; either
        // way the flood must not cost memory or the next client.
        assert!(r["sent"].as_u64().is_some(), "{mode}: {r}");
    }
    let grown = rss_kib(&g).saturating_sub(rss0);
    assert!(
        grown < 64 * 1024,
        "hpgate grew by {grown} KiB under the floods"
    );
    let t0 = std::time::Instant::now();
    let (status, version, _, _) = curl(&g, &ca, "--http2", "/", &[]);
    assert_eq!((status, version.as_str()), (200, "2"), "{}", g.logs());
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
}
