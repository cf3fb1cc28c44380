//! `hpgate status`: asks a running hpgate's admin listener for /status and
//! prints it for a person (a table) or as the JSON.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use super::Status;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches /status from `addr` and prints it; exit 1 when hpgate cannot
/// be asked, 3 when it answers but is not ready.
pub fn run(addr: &str, json: bool) -> ExitCode {
    let body = match fetch(addr) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read the status from the admin listener {addr}: {e} (is hpgate running with --admin {addr}?)");
            return ExitCode::FAILURE;
        }
    };
    let status: Status = match serde_json::from_str(&body) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: the admin listener {addr} sent no status JSON: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        print!("{body}");
    } else {
        print!("{}", table(&status));
    }
    if status.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

fn fetch(addr: &str) -> Result<String, String> {
    let addrs: Vec<_> = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(|e| e.to_string())?
        .collect();
    let first = addrs.first().ok_or("no address")?;
    let mut s = TcpStream::connect_timeout(first, TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: hpgate\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("a truncated answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_string());
    }
    Ok(body.to_string())
}

/// The status as a person reads it.
pub fn table(s: &Status) -> String {
    let mut out = String::new();
    let ready = match &s.not_ready_reason {
        None => "ready".to_string(),
        Some(why) => format!("NOT READY: {why}"),
    };
    out += &format!("hpgate {}: {ready}\n", s.version);
    out += &format!("listeners: {}\n", s.listeners.join(", "));
    let cfg = s.config_file.as_deref().unwrap_or("(none)");
    out += &format!("config:    {cfg}\n");
    out += &format!("websockets open: {}\n\n", s.open_websockets);
    out += &format!(
        "{:<5} {:<8} {:<6} {:<9} {:>9} {:>8} {:>8}  {}\n",
        "SLOT", "PID", "PORT", "STATE", "UPTIME", "RESTARTS", "REQUESTS", "LAST EXIT"
    );
    let dash = || "-".to_string();
    for p in &s.processes {
        out += &format!(
            "{:<5} {:<8} {:<6} {:<9} {:>9} {:>8} {:>8}  {}\n",
            p.slot,
            p.pid.map_or_else(dash, |v| v.to_string()),
            p.port.map_or_else(dash, |v| v.to_string()),
            p.state,
            p.uptime_seconds.map_or_else(dash, |v| format!("{v}s")),
            p.restarts,
            p.open_requests,
            p.last_exit.as_deref().unwrap_or("-"),
        );
    }
    out
}
