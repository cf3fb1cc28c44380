//! Check 13: Socket.IO. When the app answers an Engine.IO handshake at
//! `socketIoPath`, report whether it offers the WebSocket upgrade, whether
//! a WebSocket to it works, and the hints that follow (waitress carries
//! long-polling only; several processes need affinity and a message queue).
//!
//! The WebSocket goes straight to the app with the extension offer hpgate
//! sends it in the configured compression mode (`passthrough`: the
//! client's permessage-deflate offer; `disable` and `offload`: none), then
//! does Engine.IO's upgrade probe (`2probe` → `3probe`). That is what the
//! app sees behind hpgate; hpgate's own relay is covered by its tests.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::{Compression, Config};
use crate::proxy::websocket::{build_frame, new_mask};

use super::report::Report;

pub const NAME: &str = "socketio";

/// Each exchange with the app gets this long.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
/// The largest answer read from the app (a handshake is a few hundred bytes).
const MAX_ANSWER: usize = 64 * 1024;

/// The Engine.IO open packet's parts that matter here.
struct Open {
    sid: String,
    upgrades: Vec<String>,
    server: String,
}

pub async fn check(cfg: &Config, port: u16, report: &mut Report) {
    let path = &cfg.socket_io_path;
    let open = match handshake(port, path).await {
        Some(o) => o,
        None => {
            report.skip(NAME, format!("no Engine.IO handshake at {path} (not a Socket.IO app, or socketIoPath differs)"));
            return;
        }
    };
    let waitress = open.server.to_ascii_lowercase().contains("waitress");
    if !open.upgrades.iter().any(|u| u == "websocket") {
        let why = if waitress {
            " (waitress carries long-polling only; allow_upgrades=False is right for it)"
        } else {
            ""
        };
        report.ok(NAME, format!("Engine.IO answers at {path}; it offers long-polling only, no WebSocket upgrade{why}"));
    } else {
        upgrade_line(cfg, port, &open, waitress, report).await;
    }
    processes_line(cfg, report);
}

async fn upgrade_line(cfg: &Config, port: u16, open: &Open, waitress: bool, report: &mut Report) {
    let path = &cfg.socket_io_path;
    let mode = cfg.web_socket_compression;
    match websocket(port, path, &open.sid, mode).await {
        Ok(deflate) => {
            let how = match (mode, deflate) {
                (Compression::Passthrough, true) => "passthrough: the app agreed to permessage-deflate, which goes end to end (if a client or a proxy in between fails with it, set hpgate:webSocketCompression to disable or offload)",
                (Compression::Passthrough, false) => "passthrough: the app did not agree to permessage-deflate, so nothing is compressed",
                (Compression::Disable, _) => "disable: the app was asked without permessage-deflate; nothing is compressed",
                (Compression::Offload, _) => "offload: the app talks uncompressed and hpgate compresses toward clients",
            };
            report.ok(NAME, format!("Engine.IO answers at {path} and offers the WebSocket upgrade; a WebSocket with hpgate's offer answered the upgrade probe ({how})"));
        }
        Err(e) if waitress => report.warn(
            NAME,
            format!("the app runs on waitress, which cannot carry WebSocket, yet offers the upgrade: {e}"),
            "set allow_upgrades=False in SocketIO(...) (long-polling only), or switch to a server that carries WebSocket (eventlet, gevent, or Flask-SocketIO's threading mode with simple-websocket)",
        ),
        Err(e) => report.fail(
            NAME,
            format!("the app offers the WebSocket upgrade at {path}, but a WebSocket to it failed: {e}"),
            "use a server that carries WebSocket (for Flask-SocketIO's threading mode: pip install simple-websocket), or set allow_upgrades=False",
        ),
    }
}

fn processes_line(cfg: &Config, report: &mut Report) {
    let n = cfg.processes_per_application;
    if n < 2 {
        return;
    }
    if !cfg.socket_io_affinity {
        report.fail(
            NAME,
            format!("processesPerApplication is {n} and socketIoAffinity is off: a session's requests reach processes that do not know it (\"Invalid session\")"),
            "set hpgate:socketIoAffinity to true",
        );
    } else {
        report.ok(NAME, format!("{n} processes: socketIoAffinity keeps each session on its process; broadcasts reach clients of other processes only through a message queue (SocketIO(app, message_queue=\"redis://...\"))"));
    }
}

/// One request on a fresh connection, read to the end (Connection: close).
async fn exchange(port: u16, request: &str) -> Result<Vec<u8>, String> {
    let io = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(request.as_bytes()).await?;
        let mut out = Vec::new();
        (&mut s)
            .take(MAX_ANSWER as u64)
            .read_to_end(&mut out)
            .await?;
        Ok::<_, std::io::Error>(out)
    };
    match timeout(IO_TIMEOUT, io).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", IO_TIMEOUT.as_secs())),
    }
}

async fn handshake(port: u16, path: &str) -> Option<Open> {
    let req = format!("GET {path}?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let answer = exchange(port, &req).await.ok()?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    let server = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("server"))
        })
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    // The open packet: "0" and a JSON object (after a chunk size, if any).
    let json = &body[body.find("0{")? + 1..];
    let v: Value = serde_json::Deserializer::from_str(json)
        .into_iter()
        .next()?
        .ok()?;
    let upgrades = v["upgrades"]
        .as_array()?
        .iter()
        .filter_map(|u| u.as_str().map(String::from))
        .collect();
    Some(Open {
        sid: v["sid"].as_str()?.to_string(),
        upgrades,
        server,
    })
}

/// Opens a WebSocket for the session and does the upgrade probe; Ok says
/// whether the app agreed to permessage-deflate.
async fn websocket(port: u16, path: &str, sid: &str, mode: Compression) -> Result<bool, String> {
    let offer = match mode {
        Compression::Passthrough => {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        }
        _ => "",
    };
    let req = format!(
        "GET {path}?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    let io = async {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let head = read_head(&mut s).await?;
        let status = head.lines().next().unwrap_or("").to_string();
        if !status.contains(" 101") {
            return Err(format!(
                "the app answered \"{status}\" instead of 101 Switching Protocols"
            ));
        }
        let deflate = head.to_ascii_lowercase().contains("permessage-deflate");
        s.write_all(&build_frame(OP_TEXT, 0, b"2probe", Some(new_mask())))
            .await
            .map_err(|e| e.to_string())?;
        let reply = read_text(&mut s, deflate).await?;
        if reply != "3probe" {
            return Err(format!(
                "the app answered the probe with {reply:?} instead of \"3probe\""
            ));
        }
        let _ = s
            .write_all(&build_frame(
                OP_CLOSE,
                0,
                &1000u16.to_be_bytes(),
                Some(new_mask()),
            ))
            .await;
        Ok(deflate)
    };
    timeout(IO_TIMEOUT, io)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", IO_TIMEOUT.as_secs())))
}

async fn read_head(s: &mut TcpStream) -> Result<String, String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_ANSWER || s.read(&mut byte).await.map_err(|e| e.to_string())? == 0 {
            return Err("the app closed the connection without an answer".into());
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The next text message (skipping others), inflated if compressed.
async fn read_text(s: &mut TcpStream, deflate: bool) -> Result<String, String> {
    let err = |e: std::io::Error| e.to_string();
    for _ in 0..4 {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.map_err(err)?;
        let len = match h[1] & 0x7f {
            126 => u64::from(s.read_u16().await.map_err(err)?),
            127 => s.read_u64().await.map_err(err)?,
            n => u64::from(n),
        };
        if len > MAX_ANSWER as u64 {
            return Err(format!("a {len}-byte frame"));
        }
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).await.map_err(err)?;
        if h[0] & 0x0f != OP_TEXT {
            continue;
        }
        if deflate && h[0] & 0x40 != 0 {
            payload = inflate(&payload)?;
        }
        return Ok(String::from_utf8_lossy(&payload).into_owned());
    }
    Err("no text message came back".into())
}

fn inflate(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(256);
    flate2::Decompress::new(false)
        .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .map_err(|e| format!("cannot inflate the app's message: {e}"))?;
    Ok(out)
}
