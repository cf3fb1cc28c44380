//! Several machines, for real: network namespaces joined by a bridge make
//! a balancer host (Debian's HAProxy with cookie stickiness,
//! fixtures/multihost/haproxy.cfg), two app hosts each running the real
//! hpgate with two Flask-SocketIO processes (fixtures/chat, Redis message
//! queue), a Redis host and a client host. The nginx equivalent
//! (fixtures/multihost/nginx.conf) is checked with `nginx -t` there. Needs
//! root and `ip netns`; where namespaces cannot be made the test says so and
//! passes without running.
//!
//! Every namespace name carries this process's id and a counter, and a
//! guard removes them all when the test ends, also on panic.
mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const S: Duration = Duration::from_secs(1);
const NET: &str = "10.77.0";
static RUN: AtomicUsize = AtomicUsize::new(0);

/// The namespaces of one run; dropping it deletes them (the veths and the
/// bridge live inside them and go with them).
struct Net {
    prefix: String,
    made: Vec<String>,
}

/// The hosts: name suffix and last address byte.
const HOSTS: [(&str, u8); 5] = [("lb", 1), ("a", 2), ("b", 3), ("redis", 4), ("client", 5)];

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes namespaces left by runs that were killed before their guard ran.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for name in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        let pid = name
            .strip_prefix("hpg")
            .and_then(|r| r.split('x').next())
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p: u32| p != std::process::id() && !pid_alive(p)) {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Net {
    /// Builds the topology, or says why it cannot be built here.
    fn build() -> Result<Net, String> {
        remove_stale();
        let prefix = format!(
            "hpg{}x{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        );
        let mut net = Net {
            prefix,
            made: Vec::new(),
        };
        let sw = net.add("sw")?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for (host, n) in HOSTS {
            let ns = net.add(host)?;
            let port = format!("p{host}");
            ip(&[
                "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &sw,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{NET}.{n}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    fn add(&mut self, host: &str) -> Result<String, String> {
        let ns = self.ns(host);
        ip(&["netns", "add", &ns])?;
        self.made.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    fn exec(&self, host: &str, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host), program]);
        cmd
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

fn addr(host: &str) -> String {
    let n = HOSTS
        .iter()
        .find(|(h, _)| *h == host)
        .map(|(_, n)| *n)
        .unwrap_or(0);
    format!("{NET}.{n}")
}

/// A helper process (Redis, HAProxy, a client), killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(mut cmd: Command) -> Proc {
    Proc(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    )
}

/// An app host: hpgate with two chat processes sharing Redis.
fn app_host(net: &Net, site: &Site, host: &str) -> Gateway {
    let listen = format!("{}:8000", addr(host));
    let g = Gateway::start_in_netns(&net.ns(host), &site.dir, &["--listen", &listen], &[]);
    let ready = || g.logs().matches("app process is ready").count() >= 2;
    assert!(wait_until(30 * S, ready), "{host}: {}", g.logs());
    g
}

fn chat_site(host: &str) -> Site {
    let site = Site::new(&format!("multihost-{host}"));
    let app = repo_root().join("fixtures/chat/app.py");
    let redis = format!("redis://{}:6379/0", addr("redis"));
    site.web_config(
        &format!(
            "processPath=\"{}\" arguments=\"{}\" processesPerApplication=\"2\"",
            venv_python().display(),
            app.display()
        ),
        &format!("<environmentVariables><environmentVariable name=\"CHAT_REDIS_URL\" value=\"{redis}\"/></environmentVariables>"),
        &[("shutdownTimeLimit", "3")],
    );
    site
}

fn client(net: &Net, port: u16, args: &[&str]) -> Command {
    let mut cmd = net.exec("client", &venv_python().display().to_string());
    cmd.arg(repo_root().join("fixtures/multihost/client.py"))
        .arg(format!("http://{}:{port}", addr("lb")))
        .args(args);
    cmd
}

fn last_json(mut cmd: Command) -> Value {
    let out = cmd.output().expect("run client");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap_or_else(|_| {
        panic!(
            "client printed: {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A client running in the background whose first line says it is ready.
fn background(mut cmd: Command) -> (Proc, std::io::Lines<BufReader<ChildStdout>>) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("client");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.contains("\"ready\""), "client: {first}");
    (Proc(child), lines)
}

fn next_json(lines: &mut std::io::Lines<BufReader<ChildStdout>>) -> Value {
    let line = lines.next().and_then(Result::ok).unwrap_or_default();
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("client: {line}"))
}

/// The app pids of a host (hpgate's children).
fn pids(g: &Gateway) -> Vec<u64> {
    children_of(g.pid()).into_iter().map(u64::from).collect()
}

/// The host whose app answers `GET /pid` for a client holding HAProxy's
/// cookie for `host` (the other one when `host` is down).
fn answering_host(net: &Net, host: &str, hosts: &[(&str, &Gateway)]) -> Option<String> {
    let out = net
        .exec("client", "curl")
        .args(["-s", "-m", "2", "-H", &format!("Cookie: SERVERID={host}")])
        .arg(format!("http://{}/pid", addr("lb")))
        .output()
        .ok()?;
    let pid: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    hosts
        .iter()
        .find(|(_, g)| pids(g).contains(&pid))
        .map(|(h, _)| h.to_string())
}

/// Which host each pid of `v` (a list of pids) belongs to.
fn hosts_of(pids_seen: &[u64], a: &[u64], b: &[u64]) -> Vec<&'static str> {
    pids_seen
        .iter()
        .map(|p| {
            if a.contains(p) {
                "a"
            } else if b.contains(p) {
                "b"
            } else {
                "?"
            }
        })
        .collect()
}

/// Every client of `sessions` kept one session (one pid for all its calls);
/// returns the pids.
fn kept_sessions(v: &Value, what: &str) -> Vec<u64> {
    let list = v.as_array().unwrap_or_else(|| panic!("{what}: {v}"));
    list.iter()
        .map(|c| {
            let p: Vec<u64> = c["pids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            assert!(
                p.len() == 3 && p.iter().all(|x| *x == p[0]),
                "{what}: a session moved or failed: {v}"
            );
            p[0]
        })
        .collect()
}

fn start_redis(net: &Net) -> Proc {
    let mut c = net.exec("redis", "redis-server");
    c.args([
        "--bind",
        &addr("redis"),
        "--port",
        "6379",
        "--protected-mode",
        "no",
    ])
    .args(["--save", "", "--appendonly", "no"]);
    spawn(c)
}

/// The documented nginx equivalent is valid on the balancer host (`nginx -t`
/// binds its listen address, so this runs before HAProxy takes it).
fn check_nginx(net: &Net) {
    let nginx = repo_root().join("fixtures/multihost/nginx.conf");
    let t = net
        .exec("lb", "nginx")
        .args(["-t", "-e", "stderr", "-c"])
        .arg(&nginx)
        .output();
    let t = t.expect("ip netns exec");
    let err = String::from_utf8_lossy(&t.stderr);
    if err.contains("exec of \"nginx\" failed") {
        eprintln!("nginx is not installed: fixtures/multihost/nginx.conf is not checked");
    } else {
        assert!(t.status.success(), "nginx -t: {err}");
    }
}

fn start_haproxy(net: &Net) -> Proc {
    let cfg: PathBuf = repo_root().join("fixtures/multihost/haproxy.cfg");
    let mut c = net.exec("lb", "haproxy");
    c.arg("-db").arg("-f").arg(&cfg);
    c.env("LB_ADDR", addr("lb"))
        .env("HOST_A", addr("a"))
        .env("HOST_B", addr("b"));
    spawn(c)
}

/// Waits until HAProxy sends `host`'s cookie holders to `host`.
fn wait_behind_balancer(net: &Net, host: &str, a: &Gateway, b: &Gateway) {
    let both = [("a", a), ("b", b)];
    let up = || answering_host(net, host, &both).as_deref() == Some(host);
    assert!(
        wait_until(20 * S, up),
        "HAProxy does not reach {host}\n{}\n{}",
        a.logs(),
        b.logs()
    );
}

/// Sessions hold through the balancer in every transport, at once; without
/// stickiness (port 81) long-polling sessions break; and a broadcast from
/// one host reaches the clients of the other (Redis).
fn sessions_and_broadcast(net: &Net, a: &Gateway, b: &Gateway) {
    let mut spread = net.exec("client", &venv_python().display().to_string());
    spread
        .arg(repo_root().join("fixtures/chat/client.py"))
        .arg(format!("http://{}:80", addr("lb")))
        .args(["spread", "6"]);
    let (plain, v) = std::thread::scope(|sc| {
        let spread = sc.spawn(|| last_json(spread));
        let plain = sc.spawn(|| last_json(client(net, 81, &["sessions", "polling", "3"])));
        let runs = ["polling", "websocket", "upgrade"].map(|kind| {
            let run = sc.spawn(move || last_json(client(net, 80, &["sessions", kind, "4"])));
            (kind, run)
        });
        for (kind, run) in runs {
            kept_sessions(&run.join().unwrap(), kind);
        }
        (plain.join().unwrap(), spread.join().unwrap())
    });
    let failed = plain
        .as_array()
        .map_or(0, |l| l.iter().filter(|c| c.get("error").is_some()).count());
    assert!(
        failed > 0,
        "without a sticky balancer polling sessions must fail: {plain}"
    );
    let seen: Vec<u64> = v["pids"]
        .as_array()
        .map(|p| p.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let on = hosts_of(&seen, &pids(a), &pids(b));
    assert!(
        on.contains(&"a") && on.contains(&"b"),
        "clients on both hosts: {on:?} {v}"
    );
    let everyone = serde_json::json!([0, 1, 2, 3, 4, 5]);
    assert_eq!(
        v["received_by"], everyone,
        "the shout reached every host: {v}"
    );
    assert_eq!(v["errors"], 0, "{v}");
}

/// SIGTERM to host a: its WebSockets close with 1001 and its clients come
/// back through the balancer on b, while b's clients keep their sessions.
fn failover(net: &Net, a: &mut Gateway, b: &Gateway) {
    let (pa, pb) = (pids(a), pids(b));
    let (_fo, mut fo_lines) = background(client(net, 80, &["failover", "6"]));
    let (_cc, mut cc_lines) = background(client(net, 80, &["closecode", "a"]));
    a.signal("TERM");
    let closed = next_json(&mut cc_lines);
    assert_eq!(closed["close_code"], 1001, "{closed}");
    let report = next_json(&mut fo_lines);
    let clients = report.as_array().unwrap_or_else(|| panic!("{report}"));
    let mut moved = 0;
    for c in clients {
        let (first, second) = (c["first"].as_u64().unwrap_or(0), c["second"].as_u64());
        if pa.contains(&first) {
            moved += 1;
            assert!(
                second.is_some_and(|p| pb.contains(&p)),
                "a client of a is back on b: {report}"
            );
            let after = c["back_after_s"].as_f64().unwrap_or(f64::MAX);
            assert!(after < 5.0, "reconnected within a few seconds: {report}");
        } else {
            assert_eq!(
                second,
                Some(first),
                "a client of b kept its session: {report}"
            );
        }
    }
    assert!(moved > 0, "some failover clients were on a: {report}");
    assert!(a.wait_exit(10 * S).is_some(), "{}", a.logs());
}

#[test]
fn several_hosts_behind_haproxy_with_one_redis() {
    let net = match Net::build() {
        Ok(net) => net,
        Err(why) => {
            eprintln!("SKIPPED several_hosts_behind_haproxy_with_one_redis: cannot make network namespaces here (needs root and `ip netns`): {why}");
            return;
        }
    };
    let _redis = start_redis(&net);
    let (site_a, site_b) = (chat_site("a"), chat_site("b"));
    let mut a = app_host(&net, &site_a, "a");
    let b = app_host(&net, &site_b, "b");
    check_nginx(&net);
    let _lb = start_haproxy(&net);
    wait_behind_balancer(&net, "a", &a, &b);
    wait_behind_balancer(&net, "b", &a, &b);
    let t0 = Instant::now();
    let lap = |what: &str| eprintln!("multihost {what}: {:.1} s", t0.elapsed().as_secs_f64());

    sessions_and_broadcast(&net, &a, &b);
    lap("sessions and broadcast");
    failover(&net, &mut a, &b);
    lap("failover");

    // Host a comes back; new clients spread over both hosts again.
    drop(a);
    let a = app_host(&net, &site_a, "a");
    wait_behind_balancer(&net, "a", &a, &b);
    let v = last_json(client(&net, 80, &["sessions", "upgrade", "6"]));
    let on = hosts_of(&kept_sessions(&v, "after the return"), &pids(&a), &pids(&b));
    assert!(
        on.contains(&"a") && on.contains(&"b"),
        "new clients spread again: {on:?}"
    );
    lap("return");
}
