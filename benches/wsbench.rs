//! wsbench: the compiled WebSocket load tool behind `scripts/bench`.
//!
//! A Python client would be the bottleneck long before any proxy is, so the
//! WebSocket cases use this instead. Three modes:
//!
//! - `server --port P`: an echo server (tokio-tungstenite, one thread).
//! - `echo --url ws://H:P/ --conns N --secs S --mix small|text [--deflate]`:
//!   N connections each send a message, wait for its echo, repeat, for S
//!   seconds; prints one JSON line (round trips, latency, wire bytes). The
//!   client speaks the protocol itself (masking, fragments, and with
//!   `--deflate` RFC 7692 permessage-deflate over flate2) so it can count
//!   the bytes on the wire and compare every echo with what it sent.
//! - `idle --url ... --conns N`: opens N WebSockets, prints `ready N`, and
//!   holds them until stdin closes.
//! - `handshake --url https://H:P/PATH --tls CAFILE --conns N --secs S`: N
//!   tasks each open a TLS connection, send one GET with `Connection:
//!   close`, read to the end and start over, for S seconds; prints the same
//!   JSON line (a round trip is one connection). Session resumption is off
//!   in the client, so every connection is a full handshake.
//!
//! `--tls CAFILE` (a PEM file with the server's certificate) makes `echo`
//! and `idle` speak wss:// (rustls, HTTP/1.1 by ALPN).
//!
//! Everything runs on one thread, like `wrk -t1`, to leave the second core
//! to the proxy and the backend.

use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

/// The client's connection: plain TCP, or TLS over it with `--tls`.
type Stream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = match args.first().map(String::as_str) {
        Some("server") => rt.block_on(server(&args[1..])),
        Some("echo") => rt.block_on(echo(&args[1..])),
        Some("idle") => rt.block_on(idle(&args[1..])),
        Some("handshake") => rt.block_on(handshake(&args[1..])),
        // `cargo bench` with no arguments: nothing to do.
        _ => {
            eprintln!("usage: wsbench server|echo|idle|handshake ... (driven by scripts/bench)");
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("wsbench: {e}");
        std::process::exit(1);
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn num(args: &[String], name: &str, default: u64) -> Res<u64> {
    Ok(match flag(args, name) {
        Some(v) => v
            .parse()
            .map_err(|_| format!("{name}: not a number: {v}"))?,
        None => default,
    })
}

// ---------------------------------------------------------------- server

async fn server(args: &[String]) -> Res<()> {
    let port = num(args, "--port", 0)?;
    let listener = TcpListener::bind(("127.0.0.1", port as u16)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() || msg.is_binary() {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                } else if msg.is_close() {
                    break;
                }
            }
        });
    }
}

// ---------------------------------------------------------------- client

struct Url {
    addr: String,
    path: String,
    /// Set for wss:// and https:// (`--tls CAFILE` required).
    tls: Option<TlsConnector>,
}

fn parse_url(args: &[String]) -> Res<Url> {
    let url = flag(args, "--url").ok_or("--url is required")?;
    let (secure, rest) = match url.split_once("://") {
        Some(("ws" | "http", rest)) => (false, rest),
        Some(("wss" | "https", rest)) => (true, rest),
        _ => return Err("--url must start with ws://, wss:// or https://".into()),
    };
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let tls = match (secure, flag(args, "--tls")) {
        (false, _) => None,
        (true, Some(ca)) => Some(connector(ca)?),
        (true, None) => return Err("wss:// and https:// need --tls CAFILE".into()),
    };
    Ok(Url {
        addr: addr.to_string(),
        path: path.to_string(),
        tls,
    })
}

/// A TLS client trusting only CAFILE, HTTP/1.1 by ALPN, no session
/// resumption: every connection does a full handshake.
fn connector(ca_file: &str) -> Res<TlsConnector> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file)? {
        roots.add(cert?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(std::sync::Arc::new(config)))
}

/// Connects to the URL's address, with TLS if the URL asks for it.
async fn open(url: &Url) -> Res<Stream> {
    let tcp = TcpStream::connect(&url.addr).await?;
    tcp.set_nodelay(true)?;
    let Some(tls) = &url.tls else {
        return Ok(Either::Left(tcp));
    };
    let host = url
        .addr
        .rsplit_once(':')
        .map_or(url.addr.as_str(), |(h, _)| h);
    let name = rustls_pki_types::ServerName::try_from(host.to_string())?;
    Ok(Either::Right(Box::new(tls.connect(name, tcp).await?)))
}

/// What the handshake settled for compression.
struct Deflate {
    tx: Compress,
    rx: Decompress,
    tx_reset: bool,
    rx_reset: bool,
}

struct Client {
    stream: Stream,
    buf: Vec<u8>,
    deflate: Option<Deflate>,
    rng: u64,
    sent_wire: u64,
    recv_wire: u64,
}

impl Client {
    async fn connect(url: &Url, offer_deflate: bool, seed: u64) -> Res<Client> {
        let mut stream = open(url).await?;
        let ext = if offer_deflate {
            "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        } else {
            ""
        };
        let head = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n",
            url.path, url.addr
        );
        stream.write_all(head.as_bytes()).await?;
        stream.flush().await?;
        let mut buf = Vec::with_capacity(8192);
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err("connection closed during the handshake".into());
            }
        };
        let text = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !text.starts_with("http/1.1 101") {
            let line = text.lines().next().unwrap_or("").to_string();
            return Err(format!("handshake refused: {line}").into());
        }
        let agreed = text
            .lines()
            .find(|l| l.starts_with("sec-websocket-extensions:"))
            .filter(|l| l.contains("permessage-deflate"));
        let deflate = agreed.map(|l| Deflate {
            tx: Compress::new(Compression::default(), false),
            rx: Decompress::new(false),
            tx_reset: l.contains("client_no_context_takeover"),
            rx_reset: l.contains("server_no_context_takeover"),
        });
        buf.drain(..end);
        Ok(Client {
            stream,
            buf,
            deflate,
            rng: seed | 1,
            sent_wire: 0,
            recv_wire: 0,
        })
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64: deterministic and cheap; masks need no crypto here.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    async fn send_text(&mut self, payload: &[u8]) -> Res<()> {
        let (body, rsv1) = match &mut self.deflate {
            Some(d) => {
                if d.tx_reset {
                    d.tx.reset();
                }
                (compress(&mut d.tx, payload)?, 0x40)
            }
            None => (payload.to_vec(), 0),
        };
        let mut frame = Vec::with_capacity(body.len() + 14);
        frame.push(0x80 | rsv1 | 0x1);
        match body.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = (self.next_rand() as u32).to_be_bytes();
        frame.extend_from_slice(&mask);
        frame.extend(body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await?;
        self.stream.flush().await?;
        self.sent_wire += frame.len() as u64;
        Ok(())
    }

    /// Reads one whole data message (skipping pings and pongs).
    async fn recv_message(&mut self) -> Res<Vec<u8>> {
        let mut message = Vec::new();
        let mut compressed = false;
        let mut first = true;
        loop {
            let (fin, rsv1, opcode, payload) = self.recv_frame().await?;
            match opcode {
                0x8 => return Err("the server closed the connection".into()),
                0x9 | 0xA => continue,
                _ => {}
            }
            if first {
                compressed = rsv1;
                first = false;
            }
            message.extend_from_slice(&payload);
            if fin {
                break;
            }
        }
        if !compressed {
            return Ok(message);
        }
        let d = self
            .deflate
            .as_mut()
            .ok_or("compressed frame without an agreement")?;
        if d.rx_reset {
            d.rx.reset(false);
        }
        message.extend_from_slice(&[0, 0, 0xff, 0xff]);
        decompress(&mut d.rx, &message)
    }

    async fn recv_frame(&mut self) -> Res<(bool, bool, u8, Vec<u8>)> {
        loop {
            if let Some((head, len)) = parse_head(&self.buf)? {
                let total = head + len;
                if self.buf.len() >= total {
                    let b0 = self.buf[0];
                    let payload = self.buf[head..total].to_vec();
                    self.buf.drain(..total);
                    self.recv_wire += total as u64;
                    return Ok((b0 & 0x80 != 0, b0 & 0x40 != 0, b0 & 0x0f, payload));
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err("connection closed".into());
            }
        }
    }
}

/// Header length and payload length of a server (unmasked) frame, if the
/// header is complete.
fn parse_head(b: &[u8]) -> Res<Option<(usize, usize)>> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[1] & 0x80 != 0 {
        return Err("server frame is masked".into());
    }
    Ok(match b[1] & 0x7f {
        126 if b.len() >= 4 => Some((4, u16::from_be_bytes([b[2], b[3]]) as usize)),
        127 if b.len() >= 10 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[2..10]);
            Some((10, u64::from_be_bytes(n) as usize))
        }
        126 | 127 => None,
        n => Some((2, n as usize)),
    })
}

fn compress(c: &mut Compress, input: &[u8]) -> Res<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let start = c.total_in();
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(4096);
        }
        let consumed = (c.total_in() - start) as usize;
        c.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)?;
        // The flush is complete once all input is in and zlib left room.
        if (c.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            break;
        }
    }
    // RFC 7692 7.2.1: drop the empty stored block's 00 00 ff ff tail.
    if out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    Ok(out)
}

fn decompress(d: &mut Decompress, input: &[u8]) -> Res<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 4 + 256);
    let start = d.total_in();
    loop {
        let consumed = (d.total_in() - start) as usize;
        if out.capacity() == out.len() {
            out.reserve(out.len().max(4096));
        }
        let status = d.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)?;
        let done = (d.total_in() - start) as usize == input.len();
        if (done && out.capacity() > out.len()) || status == Status::StreamEnd {
            return Ok(out);
        }
    }
}

// ---------------------------------------------------------------- messages

const WORDS: &[&str] = &[
    "the",
    "room",
    "message",
    "user",
    "online",
    "typing",
    "hello",
    "world",
    "flask",
    "socket",
    "event",
    "chat",
    "server",
    "client",
    "update",
    "status",
    "ready",
    "join",
    "leave",
    "notice",
    "deploy",
    "gateway",
    "process",
    "request",
    "response",
    "stream",
    "window",
    "status",
    "error",
    "retry",
    "timeout",
    "connected",
    "session",
    "upgrade",
    "polling",
    "transport",
    "payload",
    "and",
    "with",
    "from",
    "this",
    "that",
    "will",
    "about",
    "into",
    "over",
    "after",
    "before",
];

/// A Socket.IO-style chat event: JSON text, mostly short, sometimes long.
fn chat_message(rng: &mut u64, seq: u64) -> Vec<u8> {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let bucket = next() % 100;
    let target = match bucket {
        0..=69 => 20 + next() % 180,
        70..=94 => 200 + next() % 600,
        _ => 800 + next() % 2200,
    } as usize;
    let mut text = String::with_capacity(target + 16);
    while text.len() < target {
        text.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
        text.push(' ');
    }
    format!(
        "42[\"message\",{{\"id\":{seq},\"user\":\"user{}\",\"room\":\"room{}\",\"ts\":{},\"text\":\"{}\"}}]",
        next() % 500,
        next() % 20,
        1_764_000_000_000u64 + seq * 37,
        text.trim_end()
    )
    .into_bytes()
}

// ---------------------------------------------------------------- echo

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    payload: u64,
    sent_wire: u64,
    recv_wire: u64,
    deflate: bool,
}

async fn echo(args: &[String]) -> Res<()> {
    let url = parse_url(args)?;
    let conns = num(args, "--conns", 1)?;
    let secs = num(args, "--secs", 5)?;
    let text_mix = flag(args, "--mix") == Some("text");
    let deflate = args.iter().any(|a| a == "--deflate");
    let deadline = Instant::now() + Duration::from_secs(secs);

    let mut clients = Vec::new();
    for i in 0..conns {
        clients.push(Client::connect(&url, deflate, 0x9e37_79b9_7f4a_7c15 ^ (i + 1)).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally {
                deflate: c.deflate.is_some(),
                ..Tally::default()
            };
            let mut rng = 0x2545_f491_4f6c_dd1d ^ (i as u64 + 7);
            let small = b"{\"type\":\"ping\",\"seq\":12345678}".to_vec();
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                let msg = if text_mix {
                    chat_message(&mut rng, seq)
                } else {
                    small.clone()
                };
                let t = Instant::now();
                c.send_text(&msg).await?;
                let back = c.recv_message().await?;
                if back != msg {
                    return Err::<Tally, Box<dyn std::error::Error + Send + Sync>>(
                        format!("echo differs from what was sent (message {seq})").into(),
                    );
                }
                tally.latencies_us.push(t.elapsed().as_micros() as u32);
                tally.payload += msg.len() as u64;
            }
            tally.sent_wire = c.sent_wire;
            tally.recv_wire = c.recv_wire;
            Ok(tally)
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await?.map_err(|e| e.to_string())?;
        all.latencies_us.extend(t.latencies_us);
        all.payload += t.payload;
        all.sent_wire += t.sent_wire;
        all.recv_wire += t.recv_wire;
        all.deflate |= t.deflate;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let l = &all.latencies_us;
        if l.is_empty() {
            0
        } else {
            l[((l.len() - 1) as f64 * p) as usize]
        }
    };
    println!(
        "{{\"round_trips\":{},\"per_sec\":{:.1},\"p50_us\":{},\"p99_us\":{},\"payload_bytes\":{},\"sent_wire\":{},\"recv_wire\":{},\"deflate\":{}}}",
        all.latencies_us.len(),
        all.latencies_us.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        all.payload,
        all.sent_wire,
        all.recv_wire,
        all.deflate
    );
    Ok(())
}

// ---------------------------------------------------------------- idle

async fn idle(args: &[String]) -> Res<()> {
    let url = parse_url(args)?;
    let conns = num(args, "--conns", 1000)?;
    let mut held = Vec::with_capacity(conns as usize);
    for i in 0..conns {
        held.push(Client::connect(&url, false, i + 1).await?);
    }
    println!("ready {}", held.len());
    // Hold until the driver closes stdin (or goes away).
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    while stdin.read_line(&mut line).await? > 0 {
        line.clear();
    }
    drop(held);
    Ok(())
}

// ---------------------------------------------------------------- handshake

/// One new TLS connection: handshake, one GET with `Connection: close`,
/// the response read to the end. Fails unless the status is 200.
async fn one_connection(url: &Url, request: &[u8]) -> Res<()> {
    let mut stream = open(url).await?;
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut response = Vec::with_capacity(1024);
    // Some servers end a `Connection: close` exchange without close_notify.
    match stream.read_to_end(&mut response).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    if !response.starts_with(b"HTTP/1.1 200") {
        let line = String::from_utf8_lossy(&response[..response.len().min(40)]).into_owned();
        return Err(format!("unexpected response: {line:?}").into());
    }
    Ok(())
}

async fn handshake(args: &[String]) -> Res<()> {
    let url = std::sync::Arc::new(parse_url(args)?);
    if url.tls.is_none() {
        return Err("handshake needs an https:// --url and --tls CAFILE".into());
    }
    let conns = num(args, "--conns", 1)?;
    let secs = num(args, "--secs", 5)?;
    let request: std::sync::Arc<[u8]> = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        url.path, url.addr
    )
    .into_bytes()
    .into();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (url, request) = (url.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                one_connection(&url, &request).await?;
                latencies.push(t.elapsed().as_micros() as u32);
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{{\"round_trips\":{},\"per_sec\":{:.1},\"p50_us\":{},\"p99_us\":{}}}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}
