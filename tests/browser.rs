//! A real browser: headless Chromium opens the chat page through hpgate in
//! each compression mode (Chromium always offers permessage-deflate); the
//! Socket.IO connection must upgrade to WebSocket and messages must go both
//! ways between two pages.
mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

#[test]
fn chromium_chats_through_hpgate_in_every_mode() {
    for mode in ["passthrough", "disable", "offload"] {
        let site = Site::new(&format!("browser-{mode}"));
        let app = repo_root().join("fixtures/chat/app.py");
        site.web_config(
            &format!("processPath=\"{}\" arguments=\"{}\"", venv_python().display(), app.display()),
            "<environmentVariables><environmentVariable name=\"CHAT_MODE\" value=\"threading\"/></environmentVariables>",
            &[("webSocketCompression", mode)],
        );
        let g = Gateway::start(&site.dir, &[]);
        assert!(g.wait_log("app process is ready", Duration::from_secs(20)));
        let out = Command::new("node")
            .arg(repo_root().join("fixtures/browser/chat.mjs"))
            .arg(format!("http://{}/", g.addr))
            .output()
            .expect("node");
        let text = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}"))
            .unwrap_or_else(|_| panic!("{text}\n{}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(v["ok"], true, "{mode}: {v}\n{}", g.logs());
        assert_eq!(
            v["transports"],
            serde_json::json!(["websocket", "websocket"]),
            "{mode}: {v}"
        );
        if mode == "offload" {
            assert!(
                g.wait_log("GET /socket.io/", Duration::from_secs(5)),
                "requests went through hpgate"
            );
        }
    }
}

/// Over HTTPS the page and Socket.IO's polling ride HTTP/2, and Chromium
/// opens the WebSocket as an extended CONNECT on that connection (RFC
/// 8441): the chat must work, and the access log must show it.
#[test]
fn chromium_chats_over_https_with_websockets_over_http2() {
    let site = Site::new("browser-https");
    let app = repo_root().join("fixtures/chat/app.py");
    site.web_config(
        &format!("processPath=\"{}\" arguments=\"{}\"", venv_python().display(), app.display()),
        "<environmentVariables><environmentVariable name=\"CHAT_MODE\" value=\"threading\"/></environmentVariables>",
        &[("webSocketCompression", "offload")],
    );
    let (g, _cert) = start_https(&site);
    assert!(g.wait_log("app process is ready", Duration::from_secs(20)));
    let out = Command::new("node")
        .arg(repo_root().join("fixtures/browser/chat.mjs"))
        .arg(format!("https://localhost:{}/", g.https_addr().port()))
        .output()
        .expect("node");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|_| panic!("{text}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["ok"], true, "{v}\n{}", g.logs());
    assert_eq!(
        v["transports"],
        serde_json::json!(["websocket", "websocket"]),
        "{v}"
    );
    let over_h2 = |l: &&str| {
        l.contains("method=CONNECT")
            && l.contains("transport=websocket")
            && l.contains("proto=HTTP/2")
    };
    assert!(
        g.logs().lines().any(|l| over_h2(&l)),
        "no WebSocket over HTTP/2 in the log:\n{}",
        g.logs()
    );
}
