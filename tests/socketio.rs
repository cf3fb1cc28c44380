//! Flask-SocketIO behind hpgate with the python-socketio client: every
//! transport, every compression mode, the waitress (polling) case, app
//! restarts, and several processes with affinity and Redis.
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const S: Duration = Duration::from_secs(1);

fn chat_site(
    name: &str,
    mode: &str,
    attrs: &str,
    env: &[(&str, &str)],
    settings: &[(&str, &str)],
) -> Site {
    let site = Site::new(name);
    let app = repo_root().join("fixtures/chat/app.py");
    let vars: String = [("CHAT_MODE", mode)]
        .iter()
        .chain(env.iter())
        .map(|(k, v)| format!("<environmentVariable name=\"{k}\" value=\"{v}\"/>"))
        .collect();
    site.web_config(
        &format!(
            "processPath=\"{}\" arguments=\"{}\" {attrs}",
            venv_python().display(),
            app.display()
        ),
        &format!("<environmentVariables>{vars}</environmentVariables>"),
        settings,
    );
    site
}

fn start(site: &Site, args: &[&str]) -> Gateway {
    let g = Gateway::start(&site.dir, args);
    assert!(g.wait_log("app process is ready", 20 * S), "{}", g.logs());
    g
}

fn client_cmd(g: &Gateway, args: &[&str]) -> Command {
    let mut cmd = Command::new(venv_python());
    cmd.arg(repo_root().join("fixtures/chat/client.py"))
        .arg(format!("http://{}", g.addr))
        .args(args);
    cmd
}

fn run_client(g: &Gateway, args: &[&str]) -> serde_json::Value {
    let out = client_cmd(g, args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|_| panic!("{text} {}", String::from_utf8_lossy(&out.stderr)));
    assert!(v.get("error").is_none(), "{v}\n{}", g.logs());
    v
}

fn check_basic(v: &serde_json::Value, transport: &str) {
    assert_eq!(v["echo"], serde_json::json!({"x": [1, 2, 3]}), "{v}");
    assert_eq!(v["binary_ack"], 200);
    assert_eq!(v["binary_back"], serde_json::json!([199, 198, 197]));
    assert_eq!(v["b_received"], 101, "{v}");
    assert_eq!(v["b_first"], "hello b");
    assert_eq!(v["transport"], transport, "{v}");
    assert_eq!(v["reconnected_echo"], "again");
}

#[test]
fn every_transport_in_every_compression_mode() {
    for mode in ["passthrough", "disable", "offload"] {
        let site = chat_site(
            &format!("sio-{mode}"),
            "threading",
            "",
            &[],
            &[("webSocketCompression", mode)],
        );
        let g = start(&site, &[]);
        check_basic(&run_client(&g, &["basic", "polling"]), "polling");
        check_basic(&run_client(&g, &["basic", "websocket"]), "websocket");
        check_basic(&run_client(&g, &["basic", "upgrade"]), "websocket");
    }
}

#[test]
fn waitress_long_polling_is_prompt() {
    let site = chat_site("sio-waitress", "waitress", "", &[], &[]);
    let g = start(&site, &[]);
    check_basic(&run_client(&g, &["basic", "polling"]), "polling");
    let v = run_client(&g, &["latency"]);
    assert_eq!(v["got"], true);
    assert!(
        v["ms"].as_f64().unwrap() < 200.0,
        "server emit took {} ms",
        v["ms"]
    );
}

#[test]
fn clients_reconnect_after_the_app_is_killed() {
    let site = chat_site("sio-restart", "threading", "", &[], &[]);
    let g = start(&site, &[]);
    let mut child: Child = client_cmd(&g, &["reconnect"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let pid = ready["pid"].as_u64().unwrap();
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    let t0 = Instant::now();
    let done: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let _ = child.wait();
    // The last "disconnect" is the client's own at the end.
    assert_eq!(
        done["events"].as_array().unwrap()[..3],
        serde_json::json!(["connect", "disconnect", "connect"])
            .as_array()
            .unwrap()[..],
        "{done}"
    );
    assert!(done["second"].as_u64().is_some_and(|p| p != pid), "{done}");
    assert!(t0.elapsed() < 20 * S);
}

fn two_processes(affinity: bool) -> serde_json::Value {
    let redis = Redis::start();
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let site = chat_site(
        &format!("sio-multi-{affinity}"),
        "threading",
        "processesPerApplication=\"2\"",
        &[("CHAT_REDIS_URL", &url)],
        &[("socketIoAffinity", if affinity { "true" } else { "false" })],
    );
    let g = start(&site, &[]);
    assert!(wait_until(20 * S, || g
        .logs()
        .matches("app process is ready")
        .count()
        >= 2));
    run_client_raw(&g, &["spread", "6"])
}

fn run_client_raw(g: &Gateway, args: &[&str]) -> serde_json::Value {
    let out = client_cmd(g, args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap_or(serde_json::Value::Null)
}

#[test]
fn several_processes_need_affinity_and_share_broadcasts_through_redis() {
    let v = two_processes(true);
    assert!(v.get("error").is_none(), "{v}");
    let pids: std::collections::HashSet<u64> = v["pids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_u64())
        .collect();
    assert_eq!(pids.len(), 2, "clients spread over both processes: {v}");
    assert_eq!(
        v["received_by"],
        serde_json::json!([0, 1, 2, 3, 4, 5]),
        "broadcast reached everyone: {v}"
    );
    assert_eq!(v["errors"], 0);

    // Without affinity, polling sessions land on the wrong process.
    let v = two_processes(false);
    let failed = v.get("error").is_some() || v["errors"].as_u64().unwrap_or(1) > 0;
    assert!(failed, "without affinity something must break: {v}");
}
