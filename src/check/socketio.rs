//! Check 13: Socket.IO. When the app answers an Engine.IO handshake at
//! `socketIoPath`, report whether it offers the WebSocket upgrade, whether
//! a WebSocket connects through hpgate in the configured compression mode,
//! and the hints that follow (waitress carries long-polling only; several
//! processes need affinity and a message queue).
//!
//! Owns: the handshake with the trial's app (`check`, while it runs), and
//! then, once the trial has stopped it, `through_hpgate`: a real gateway
//! on 127.0.0.1:0 started the way `hpgate run` starts one
//! (`lifecycle::Serving`: supervisor, gateway, server), an Engine.IO
//! handshake, WebSocket upgrade with a client's permessage-deflate offer and
//! upgrade probe (`2probe` → `3probe`) through it, and which extension the
//! 101 agreed: passthrough, the app's end to end; offload, hpgate's;
//! disable, none. Must not: copy the gateway's wiring, or leave the
//! gateway or its app running (it is shut down the way `run` shuts down).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::config::{Compression, Config};
use crate::lifecycle::Serving;
use crate::proxy::websocket::{build_frame, new_mask};
use crate::proxy::{self, Endpoint};

use super::report::Report;

pub const NAME: &str = "socketio";

/// Each exchange with the app (or hpgate) gets this long.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
/// The largest answer read (a handshake is a few hundred bytes).
const MAX_ANSWER: usize = 64 * 1024;
/// The offer a browser makes.
const CLIENT_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The Engine.IO open packet's parts that matter here.
struct Open {
    sid: String,
    upgrades: Vec<String>,
    server: String,
}

/// The app offers the WebSocket upgrade: `through_hpgate` tries it.
pub struct Upgrade {
    waitress: bool,
}

/// The handshake with the trial's app at `port`; Some when the WebSocket
/// part is left for `through_hpgate`.
pub async fn check(cfg: &Config, port: u16, report: &mut Report) -> Option<Upgrade> {
    let path = &cfg.socket_io_path;
    let open = match handshake(port, path).await {
        Ok(o) => o,
        Err(_) => {
            report.skip(NAME, format!("no Engine.IO handshake at {path} (not a Socket.IO app, or socketIoPath differs)"));
            return None;
        }
    };
    let waitress = open.server.to_ascii_lowercase().contains("waitress");
    processes_line(cfg, report);
    if open.upgrades.iter().any(|u| u == "websocket") {
        return Some(Upgrade { waitress });
    }
    let why = if waitress {
        " (waitress carries long-polling only; allow_upgrades=False is right for it)"
    } else {
        ""
    };
    report.ok(
        NAME,
        format!(
            "Engine.IO answers at {path}; it offers long-polling only, no WebSocket upgrade{why}"
        ),
    );
    None
}

/// Starts hpgate in front of the app (up to `limit` for the app to
/// start), opens a Socket.IO WebSocket through it, and stops it all.
pub async fn through_hpgate(cfg: &Config, up: Upgrade, limit: Duration, report: &mut Report) {
    let stop = CancellationToken::new();
    let (serving, port) = match start_gateway(cfg, limit, &stop).await {
        Ok(s) => s,
        Err(e) => {
            report.skip(
                NAME,
                format!("hpgate could not be started for the WebSocket: {e}"),
            );
            return;
        }
    };
    let via = match timeout(IO_TIMEOUT, serving.sup.pick(None)).await {
        Ok(Ok(app)) => format!(
            "through hpgate on 127.0.0.1:{port} (its app: pid {})",
            app.pid
        ),
        _ => format!("through hpgate on 127.0.0.1:{port}"),
    };
    let result = websocket_through(port, &cfg.socket_io_path).await;
    let deadline = tokio::time::Instant::now() + cfg.shutdown_time_limit;
    serving.shutdown(&stop, deadline).await;
    upgrade_line(cfg, up.waitress, &via, result, report);
}

/// A gateway on 127.0.0.1:0 with the site's configuration, once its app
/// is ready (or has failed for good, or `limit` passed).
async fn start_gateway(
    cfg: &Config,
    limit: Duration,
    stop: &CancellationToken,
) -> Result<(Serving, u16), String> {
    let listener = proxy::bind(([127, 0, 0, 1], 0).into()).await?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let endpoint = Endpoint {
        listener,
        tls: None,
    };
    let serving = Serving::start(Arc::new(cfg.clone()), vec![endpoint], None, stop);
    let _ = timeout(limit, serving.sup.started()).await;
    Ok((serving, port))
}

/// The handshake and the WebSocket, both through hpgate at `port`; Ok
/// carries the extension the 101 agreed, if any.
async fn websocket_through(port: u16, path: &str) -> Result<Option<String>, String> {
    let open = handshake(port, path)
        .await
        .map_err(|e| format!("the Engine.IO handshake through hpgate failed: {e}"))?;
    websocket(port, path, &open.sid).await
}

fn upgrade_line(
    cfg: &Config,
    waitress: bool,
    via: &str,
    result: Result<Option<String>, String>,
    report: &mut Report,
) {
    let path = &cfg.socket_io_path;
    match result {
        Ok(agreed) => report.ok(NAME, format!("Engine.IO answers at {path} and offers the WebSocket upgrade; {via}, a WebSocket offering permessage-deflate answered the upgrade probe ({})", agreement(cfg.web_socket_compression, agreed))),
        Err(e) if waitress => report.warn(
            NAME,
            format!("the app runs on waitress, which cannot carry WebSocket, yet offers the upgrade: {e}"),
            "set allow_upgrades=False in SocketIO(...) (long-polling only), or switch to a server that carries WebSocket (eventlet, gevent, or Flask-SocketIO's threading mode with simple-websocket)",
        ),
        Err(e) => report.fail(
            NAME,
            format!("the app offers the WebSocket upgrade at {path}, but a WebSocket to it {via} failed: {e}"),
            "use a server that carries WebSocket (for Flask-SocketIO's threading mode: pip install simple-websocket), or set allow_upgrades=False",
        ),
    }
}

/// What the mode and the agreed extension mean for who compresses.
fn agreement(mode: Compression, agreed: Option<String>) -> String {
    match (mode, agreed) {
        (Compression::Passthrough, Some(ext)) => format!("passthrough: the app agreed \"{ext}\", end to end through hpgate; if a client or a proxy in between fails with it, set hpgate:webSocketCompression to disable or offload"),
        (Compression::Passthrough, None) => "passthrough: the app agreed no compression, so nothing is compressed".into(),
        (Compression::Offload, Some(ext)) => format!("offload: hpgate agreed \"{ext}\" with the client and talks uncompressed to the app"),
        (Compression::Offload, None) => "offload: hpgate agreed no compression with the client".into(),
        (Compression::Disable, Some(ext)) => format!("disable: yet \"{ext}\" was agreed"),
        (Compression::Disable, None) => "disable: no compression was agreed".into(),
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

/// The Engine.IO handshake at `port`; Err says what came back instead.
async fn handshake(port: u16, path: &str) -> Result<Open, String> {
    let req = format!("GET {path}?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let answer = exchange(port, &req).await?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("an incomplete answer")?;
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
        // hpgate's error pages say why (the app's start failure, say).
        let why: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
        let why: String = why.chars().take(300).collect();
        return Err(format!("the answer was \"{status}\": {why}"));
    }
    let server = header(head, "server").unwrap_or_default();
    open_packet(body, server).ok_or_else(|| "no Engine.IO open packet in the answer".into())
}

/// The open packet: "0" and a JSON object (after a chunk size, if any).
fn open_packet(body: &str, server: String) -> Option<Open> {
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

/// Opens a WebSocket for the session with a client's offer and does the
/// upgrade probe; Ok carries the extension the 101 agreed, if any.
async fn websocket(port: u16, path: &str, sid: &str) -> Result<Option<String>, String> {
    let req = format!(
        "GET {path}?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: {CLIENT_OFFER}\r\n\r\n"
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
                "hpgate answered \"{status}\" instead of 101 Switching Protocols"
            ));
        }
        let agreed = header(&head, "sec-websocket-extensions");
        s.write_all(&build_frame(OP_TEXT, 0, b"2probe", Some(new_mask())))
            .await
            .map_err(|e| e.to_string())?;
        let reply = read_text(&mut s, agreed.is_some()).await?;
        if reply != "3probe" {
            return Err(format!(
                "the app answered the probe with {reply:?} instead of \"3probe\""
            ));
        }
        let close = build_frame(OP_CLOSE, 0, &1000u16.to_be_bytes(), Some(new_mask()));
        let _ = s.write_all(&close).await;
        Ok(agreed)
    };
    timeout(IO_TIMEOUT, io)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", IO_TIMEOUT.as_secs())))
}

/// A header's value in a response head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
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
