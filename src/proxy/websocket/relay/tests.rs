//! The relay over in-memory pipes (`tokio::io::duplex`): the test holds the
//! far end of the client's and of the app's stream. Tests that wait on the
//! close grace run on a paused clock, which tokio advances only when every
//! task is waiting.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::super::deflate::{Agreement, Codec};
use super::super::frame::{self, Header, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, RSV1};
use super::io::Generic;
use super::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// A bound on every wait, so a broken relay fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(60);

struct Ends {
    client: DuplexStream,
    app: DuplexStream,
    shutdown: CancellationToken,
    retiring: CancellationToken,
    relay: JoinHandle<()>,
}

fn settings(mode: Mode) -> Settings {
    Settings::for_tests(mode)
}

fn passthrough() -> Settings {
    settings(Mode::Relay {
        deflate: false,
        other_extensions: false,
    })
}

const AGREEMENT: Agreement = Agreement {
    server_no_context_takeover: true,
    client_no_context_takeover: true,
    server_max_window_bits: 15,
};

fn offload(min_size: u64) -> Settings {
    settings(Mode::Offload {
        agreement: AGREEMENT,
        level: 6,
        min_size,
    })
}

fn start(s: Settings, pipe: usize) -> Ends {
    start_sized(s, pipe, pipe)
}

/// With pipes of their own sizes toward the client and the app.
fn start_sized(s: Settings, client_pipe: usize, app_pipe: usize) -> Ends {
    let (client, client_near) = duplex(client_pipe);
    let (app, app_near) = duplex(app_pipe);
    let (shutdown, retiring) = (CancellationToken::new(), CancellationToken::new());
    let signals = Signals {
        shutdown: shutdown.clone(),
        retiring: retiring.clone(),
        gone: CancellationToken::new(),
    };
    let relay = tokio::spawn(run(
        Generic(client_near),
        Bytes::new(),
        Generic(app_near),
        Bytes::new(),
        s,
        signals,
    ));
    Ends {
        client,
        app,
        shutdown,
        retiring,
        relay,
    }
}

fn frame_bytes(fin: bool, opcode: u8, rsv: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    let len = payload.len() as u64;
    Header {
        fin,
        rsv,
        opcode,
        mask,
        len,
    }
    .encode(&mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(m) = mask {
        frame::apply_mask(&mut out[start..], m, 0);
    }
    out
}

fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_bytes(fin, opcode, 0, payload, Some(MASK))
}

fn app_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_bytes(fin, opcode, 0, payload, None)
}

/// Writes `bytes` a few at a time, letting the relay read each piece.
async fn write_in_pieces(s: &mut DuplexStream, bytes: &[u8], piece: usize) {
    for chunk in bytes.chunks(piece) {
        s.write_all(chunk).await.expect("write");
        tokio::task::yield_now().await;
    }
}

/// One frame, unmasked.
async fn read_frame(s: &mut DuplexStream) -> (Header, Vec<u8>) {
    let read = async {
        let mut head = Vec::new();
        let (h, _) = loop {
            if let Some(found) = Header::parse(&head).expect("a valid header") {
                break found;
            }
            head.push(s.read_u8().await.expect("a frame"));
        };
        let mut payload = vec![0; h.len as usize];
        s.read_exact(&mut payload).await.expect("the payload");
        if let Some(m) = h.mask {
            frame::apply_mask(&mut payload, m, 0);
        }
        (h, payload)
    };
    timeout(WAIT, read).await.expect("a frame in time")
}

async fn read_close(s: &mut DuplexStream) -> u16 {
    let (h, p) = read_frame(s).await;
    assert_eq!(h.opcode, OP_CLOSE, "expected a close, got {h:?} {p:?}");
    u16::from_be_bytes([p[0], p[1]])
}

async fn read_bytes(s: &mut DuplexStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    timeout(WAIT, s.read_exact(&mut buf))
        .await
        .expect("bytes in time")
        .expect("bytes");
    buf
}

/// The stream ends with nothing more on it.
async fn assert_ends(s: &mut DuplexStream) {
    let mut rest = Vec::new();
    timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .expect("the stream ends in time")
        .expect("read to the end");
    assert!(rest.is_empty(), "bytes after the close: {rest:?}");
}

async fn assert_relay_ends(relay: JoinHandle<()>) {
    timeout(WAIT, relay)
        .await
        .expect("the relay ends in time")
        .expect("the relay task");
}

#[tokio::test]
async fn fragments_pass_byte_for_byte_however_the_reads_split_them() {
    let mut e = start(passthrough(), 64 * 1024);
    let up = [
        client_frame(false, OP_TEXT, b"Hel"),
        client_frame(false, OP_CONT, b"lo, "),
        client_frame(true, OP_CONT, &[b'w'; 300]),
    ]
    .concat();
    write_in_pieces(&mut e.client, &up, 1).await;
    assert_eq!(read_bytes(&mut e.app, up.len()).await, up);

    let down = [
        app_frame(false, OP_BINARY, &[1; 200]),
        app_frame(true, OP_CONT, &[2; 70_000]),
    ]
    .concat();
    write_in_pieces(&mut e.app, &down, 3).await;
    assert_eq!(read_bytes(&mut e.client, down.len()).await, down);
}

/// Whole frames in one read pass in one piece (`walk::whole_frames`), and
/// are counted as the frame-by-frame walk counts them; a close in the same
/// read is still seen as a close: what follows it is dropped.
#[tokio::test]
async fn a_read_of_whole_frames_passes_whole_and_counts_each_message() {
    let s = passthrough();
    let stats = s.stats.clone();
    let mut e = start(s, 64 * 1024);
    let messages = [
        client_frame(true, OP_TEXT, b"one"),
        client_frame(false, OP_BINARY, &[7; 200]),
        client_frame(true, OP_PING, b"p"),
        client_frame(true, OP_CONT, &[8; 20]),
        client_frame(true, OP_TEXT, b""),
    ]
    .concat();
    let close = client_frame(true, OP_CLOSE, &1000u16.to_be_bytes());
    let after = client_frame(true, OP_TEXT, b"after the close");
    e.client
        .write_all(&[messages.clone(), close.clone(), after].concat())
        .await
        .expect("write");
    assert_eq!(read_bytes(&mut e.app, messages.len()).await, messages);
    assert_eq!(read_bytes(&mut e.app, close.len()).await, close);
    e.app
        .write_all(&app_frame(true, OP_CLOSE, &1000u16.to_be_bytes()))
        .await
        .expect("write");
    assert_eq!(read_close(&mut e.client).await, 1000);
    drop(e.client);
    assert_ends(&mut e.app).await;
    assert_eq!(stats.counted(0), (3 + 200 + 20, 3), "bytes, messages");
    // The same frames split across reads are walked one by one: the same count.
    let s = passthrough();
    let stats = s.stats.clone();
    let mut e = start(s, 64 * 1024);
    write_in_pieces(&mut e.client, &messages, 5).await;
    assert_eq!(read_bytes(&mut e.app, messages.len()).await, messages);
    assert_eq!(stats.counted(0), (3 + 200 + 20, 3));
}

#[tokio::test]
async fn control_frames_between_fragments_stay_in_place() {
    let mut e = start(passthrough(), 64 * 1024);
    let up = [
        client_frame(false, OP_TEXT, b"a"),
        client_frame(true, OP_PING, b"p"),
        client_frame(true, OP_CONT, b"b"),
    ]
    .concat();
    write_in_pieces(&mut e.client, &up, 2).await;
    let got: Vec<(u8, bool, Vec<u8>)> = [
        read_frame(&mut e.app).await,
        read_frame(&mut e.app).await,
        read_frame(&mut e.app).await,
    ]
    .into_iter()
    .map(|(h, p)| (h.opcode, h.fin, p))
    .collect();
    assert_eq!(
        got,
        [
            (OP_TEXT, false, b"a".to_vec()),
            (OP_PING, true, b"p".to_vec()),
            (OP_CONT, true, b"b".to_vec()),
        ]
    );
}

#[tokio::test]
async fn a_new_message_inside_a_fragmented_one_closes_with_1002() {
    let mut e = start(passthrough(), 64 * 1024);
    let up = [
        client_frame(false, OP_TEXT, b"a"),
        client_frame(true, OP_TEXT, b"b"),
    ]
    .concat();
    e.client.write_all(&up).await.expect("write");
    let (h, _) = read_frame(&mut e.app).await;
    assert_eq!((h.opcode, h.fin), (OP_TEXT, false));
    assert_eq!(read_close(&mut e.app).await, GOING_AWAY);
    assert_eq!(read_close(&mut e.client).await, PROTOCOL_ERROR);
}

#[tokio::test]
async fn a_close_from_the_client_is_relayed_and_answered() {
    let mut e = start(passthrough(), 64 * 1024);
    let close = frame::close(1000, "bye", Some(MASK));
    write_in_pieces(&mut e.client, &close, 3).await;
    let (h, p) = read_frame(&mut e.app).await;
    assert_eq!((h.opcode, &p[..]), (OP_CLOSE, &b"\x03\xe8bye"[..]));
    e.app
        .write_all(&frame::close(1000, "", None))
        .await
        .expect("write");
    assert_eq!(read_close(&mut e.client).await, 1000);
    drop(e.app); // the app ends its TCP after the handshake
    assert_ends(&mut e.client).await;
    drop(e.client);
    assert_relay_ends(e.relay).await;
}

#[tokio::test]
async fn nothing_follows_a_relayed_close_not_even_a_close_for_a_bad_frame() {
    let mut e = start(passthrough(), 64 * 1024);
    let mut bytes = frame::close(1000, "bye", Some(MASK));
    bytes.extend(client_frame(true, 0x3, b"reserved opcode"));
    e.client.write_all(&bytes).await.expect("write");
    assert_eq!(read_close(&mut e.app).await, 1000);
    drop(e.client);
    assert_ends(&mut e.app).await;
    drop(e.app);
    assert_relay_ends(e.relay).await;
}

#[tokio::test]
async fn a_close_from_the_app_is_relayed_and_answered() {
    let mut e = start(passthrough(), 64 * 1024);
    e.app
        .write_all(&frame::close(4000, "done", None))
        .await
        .expect("write");
    let (h, p) = read_frame(&mut e.client).await;
    assert_eq!((h.opcode, &p[..]), (OP_CLOSE, &b"\x0f\xa0done"[..]));
    e.client
        .write_all(&frame::close(4000, "", Some(MASK)))
        .await
        .expect("write");
    assert_eq!(read_close(&mut e.app).await, 4000);
    drop(e.client);
    assert_ends(&mut e.app).await;
    drop(e.app);
    assert_relay_ends(e.relay).await;
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_close_ends_the_relay_after_the_grace() {
    let mut e = start(passthrough(), 64 * 1024);
    e.shutdown.cancel();
    let asked = Instant::now();
    assert_eq!(read_close(&mut e.client).await, GOING_AWAY);
    assert_eq!(read_close(&mut e.app).await, GOING_AWAY);
    // Frames after hpgate's close are dropped.
    e.client
        .write_all(&client_frame(true, OP_TEXT, b"late"))
        .await
        .expect("write");
    assert_ends(&mut e.app).await;
    assert_ends(&mut e.client).await;
    assert!(asked.elapsed() >= CLOSE_GRACE, "{:?}", asked.elapsed());
    assert_relay_ends(e.relay).await;
}

#[tokio::test]
async fn retirement_mid_frame_closes_the_client_at_the_frame_boundary() {
    let mut e = start(passthrough(), 64 * 1024);
    let msg = app_frame(true, OP_BINARY, b"0123456789");
    e.app.write_all(&msg[..6]).await.expect("write");
    assert_eq!(read_bytes(&mut e.client, 6).await, msg[..6]);
    e.retiring.cancel();
    // The app's direction was between frames: its close goes out at once.
    assert_eq!(read_close(&mut e.app).await, GOING_AWAY);
    e.app.write_all(&msg[6..]).await.expect("write");
    assert_eq!(read_bytes(&mut e.client, 6).await, msg[6..]);
    assert_eq!(read_close(&mut e.client).await, SERVICE_RESTART);
}

#[tokio::test]
async fn offload_inflates_a_compressed_message_split_across_frames() {
    let mut e = start(offload(16), 64 * 1024);
    let text = "hello hello hello hello, inflated".repeat(20);
    let z = Codec::new(AGREEMENT, 6)
        .deflate(text.as_bytes())
        .expect("deflate");
    let half = z.len() / 2;
    let up = [
        frame_bytes(false, OP_TEXT, RSV1, &z[..half], Some(MASK)),
        frame_bytes(true, OP_CONT, 0, &z[half..], Some(MASK)),
    ]
    .concat();
    write_in_pieces(&mut e.client, &up, 5).await;
    let (h, p) = read_frame(&mut e.app).await;
    assert_eq!((h.opcode, h.fin, h.rsv), (OP_TEXT, true, 0));
    assert!(h.mask.is_some(), "frames to the app are masked");
    assert_eq!(p, text.as_bytes());
}

#[tokio::test]
async fn offload_deflates_a_fragmented_app_message_as_one_frame() {
    let mut e = start(offload(16), 64 * 1024);
    let text = "deflate me, deflate me, deflate me".repeat(30);
    let (a, b) = text.as_bytes().split_at(100);
    let down = [app_frame(false, OP_TEXT, a), app_frame(true, OP_CONT, b)].concat();
    write_in_pieces(&mut e.app, &down, 7).await;
    let (h, p) = read_frame(&mut e.client).await;
    assert_eq!((h.opcode, h.fin, h.rsv), (OP_TEXT, true, RSV1));
    assert!(p.len() < text.len());
    let plain = Codec::new(AGREEMENT, 6)
        .inflate(&p, 1 << 20)
        .expect("inflate");
    assert_eq!(plain, text.as_bytes());
    // Below the size floor a message goes out plain.
    e.app
        .write_all(&app_frame(true, OP_TEXT, b"tiny"))
        .await
        .expect("write");
    let (h, p) = read_frame(&mut e.client).await;
    assert_eq!((h.rsv, &p[..]), (0, &b"tiny"[..]));
}

/// A destination that takes a burst a little at a time: what the read's
/// poll could not write waits, in order, for the next writes.
#[tokio::test]
async fn a_burst_written_in_pieces_arrives_whole() {
    let mut e = start_sized(passthrough(), 256, 64 * 1024);
    let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let down = [
        app_frame(true, OP_BINARY, &payload),
        app_frame(true, OP_TEXT, b"after"),
    ]
    .concat();
    let (_app_rd, mut app_wr) = tokio::io::split(e.app);
    let writer = tokio::spawn(async move { app_wr.write_all(&down).await });
    assert_eq!(read_frame(&mut e.client).await.1, payload);
    assert_eq!(read_frame(&mut e.client).await.1, b"after");
    let written = timeout(WAIT, writer).await.expect("in time").expect("task");
    written.expect("write");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_stalls_only_its_direction_until_the_grace() {
    let mut e = start(passthrough(), 1024);
    let (mut app_rd, mut app_wr) = tokio::io::split(e.app);
    // The app talks to a client that never reads: its direction fills up.
    let flood = tokio::spawn(async move {
        let big = app_frame(true, OP_BINARY, &[9; 4096]);
        for _ in 0..64 {
            if app_wr.write_all(&big).await.is_err() {
                break;
            }
        }
    });
    // The other direction still flows.
    e.client
        .write_all(&client_frame(true, OP_TEXT, b"still here"))
        .await
        .expect("write");
    let mut head = [0; 6];
    timeout(WAIT, app_rd.read_exact(&mut head))
        .await
        .expect("in time")
        .expect("read");
    let mut rest = [0; 10];
    timeout(WAIT, app_rd.read_exact(&mut rest))
        .await
        .expect("in time")
        .expect("read");
    frame::apply_mask(&mut rest, [head[2], head[3], head[4], head[5]], 0);
    assert_eq!(&rest, b"still here");
    assert!(
        !flood.is_finished(),
        "the client's direction should be full"
    );
    // A close order cannot reach the stuck direction; the grace ends it.
    e.shutdown.cancel();
    let asked = Instant::now();
    assert_relay_ends(e.relay).await;
    assert!(asked.elapsed() >= CLOSE_GRACE, "{:?}", asked.elapsed());
    drop(e.client);
    timeout(WAIT, flood).await.expect("in time").expect("task");
}

/// The relay future is the state each open WebSocket keeps (docs/benchmarks.md).
/// The bound is an allocator size class's edge: at 1,792 bytes the idle
/// WebSocket figure goes from 3.75 to 4.15 KiB (seen with two changes that
/// each brought it there from 1,776).
#[tokio::test]
async fn the_tcp_relay_future_stays_small() {
    let (a, b) = crate::proxy::direct_io::tests::pair().await;
    let signals = Signals {
        shutdown: CancellationToken::new(),
        retiring: CancellationToken::new(),
        gone: CancellationToken::new(),
    };
    let f = run(a, Bytes::new(), b, Bytes::new(), passthrough(), signals);
    let size = std::mem::size_of_val(&f);
    assert!(size < 1792, "the relay future grew to {size} bytes");
}
