//! WebSockets over HTTP/2 (RFC 8441) through the real binary: an h2 client
//! (fixtures/tls/h2_websocket.py, on the `h2` package) opens an extended
//! CONNECT on an https listener; the app is the plain WebSocket echo
//! fixture speaking HTTP/1.1. Every compression mode, the app's refusal,
//! and the close on shutdown.
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::*;

const S: Duration = Duration::from_secs(1);

/// hpgate with an https listener in front of `app` (a Python script).
fn gateway(
    name: &str,
    app: &str,
    env: &str,
    settings: &[(&str, &str)],
) -> (Site, Gateway, PathBuf) {
    let site = Site::new(name);
    site.python_app(app, env, settings);
    let (g, cert) = start_https(&site);
    assert!(g.wait_log("app process is ready", 15 * S), "{}", g.logs());
    (site, g, cert)
}

/// Runs the RFC 8441 client; its JSON line.
fn h2_client(g: &Gateway, cert: &PathBuf, extra: &[&str]) -> serde_json::Value {
    let addr = g.https_addr();
    let out = Command::new(venv_python())
        .arg(repo_root().join("fixtures/tls/h2_websocket.py"))
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(cert)
        .args(extra)
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|_| {
        panic!(
            "client said: {stdout}\n{}\nhpgate:\n{}",
            String::from_utf8_lossy(&out.stderr),
            g.logs()
        )
    })
}

const ECHO: &str = "fixtures/websocket/echo_server.py";

#[test]
fn every_compression_mode_over_http2() {
    for (mode, server, want_ext, app_offered, compressed) in [
        // The app agrees and compresses its answers itself.
        ("passthrough", "on", true, true, true),
        ("disable", "on", false, false, false),
        // hpgate compresses toward the client; the app is offered nothing.
        ("offload", "off", true, false, true),
    ] {
        let env = format!("<environmentVariables><environmentVariable name=\"WS_COMPRESSION\" value=\"{server}\"/></environmentVariables>");
        let (_s, g, cert) = gateway(
            &format!("h2ws-{mode}"),
            ECHO,
            &env,
            &[("webSocketCompression", mode)],
        );
        let v = h2_client(&g, &cert, &["--deflate"]);
        assert_eq!(v["status"], 200, "{mode}: {v}");
        assert_eq!(
            v["connect_protocol"], true,
            "SETTINGS_ENABLE_CONNECT_PROTOCOL"
        );
        assert_eq!(v["ok"], true, "{mode}: echoes differ: {v}");
        assert_eq!(v["close"], 1000, "{mode}: {v}");
        assert_eq!(v["extensions"].is_string(), want_ext, "{mode}: {v}");
        assert_eq!(v["app_saw"].is_string(), app_offered, "{mode}: {v}");
        assert_eq!(
            v["compressed"].as_u64().unwrap_or(0) > 0,
            compressed,
            "{mode}: {v}"
        );
        // The access log names the WebSocket's arrival over HTTP/2.
        assert!(
            wait_until(5 * S, || {
                g.logs()
                    .lines()
                    .any(|l| l.contains("method=CONNECT") && l.contains("proto=HTTP/2"))
            }),
            "{}",
            g.logs()
        );
    }
}

#[test]
fn the_apps_refusal_is_relayed_and_shutdown_closes_with_1001() {
    // The test app is no WebSocket server: its answer to the handshake (a
    // 403 here) reaches the client as an ordinary HTTP/2 response.
    let site = Site::new("h2ws-refused");
    site.testapp_config("serve", "", &[]);
    let (g, cert) = start_https(&site);
    assert!(g.wait_log("app process is ready", 15 * S), "{}", g.logs());
    let v = h2_client(&g, &cert, &["--path", "/status?code=403"]);
    assert_eq!(v["status"], 403, "{v}");
    drop(g);

    // An open WebSocket over HTTP/2 gets 1001 when hpgate stops.
    let (_s, mut g, cert) = gateway("h2ws-stop", ECHO, "", &[("shutdownTimeLimit", "3")]);
    let addr = g.https_addr();
    let client = std::thread::spawn(move || {
        let out = Command::new(venv_python())
            .arg(repo_root().join("fixtures/tls/h2_websocket.py"))
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .arg(&cert)
            .arg("--wait-close")
            .output()
            .expect("python");
        String::from_utf8_lossy(&out.stdout).to_string()
    });
    assert!(g.wait_log("method=CONNECT", 10 * S), "{}", g.logs());
    g.signal("TERM");
    let out = client.join().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(v["close"], 1001, "{v}\n{}", g.logs());
    assert_eq!(g.wait_exit(10 * S), Some(0));
}
