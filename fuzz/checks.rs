//! The body of every fuzz target, shared by the cargo-fuzz binaries
//! (fuzz/fuzz_targets/) and their replay on stable (tests/fuzz_replay.rs).
//! Most checks live in hpgate::fuzzing; this adds the comparisons with
//! httparse, the head parser hyper uses, which hpgate itself does not
//! depend on.

use hpgate::fuzzing::{self, Framed};
use httparse::Status;

/// hyper's default header limit: more is its 431.
const MAX_HEADERS: usize = 100;

/// The guard's invariants, and hyper's parser reads every head the guard
/// let through to the same end with the same framing (or refuses it).
pub fn guard(data: &[u8]) {
    let v = fuzzing::guard(data);
    let mut from = 0;
    for r in &v.requests {
        hyper_reads_the_same(data, from, r);
        from = r.end;
    }
}

fn hyper_reads_the_same(data: &[u8], from: usize, r: &Framed) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(&data[from..]) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) => panic!("hyper waits for more of a head the guard ended: {r:?}"),
        Err(_) => return, // hyper answers 400 and closes
    };
    assert_eq!(from + n, r.head_end, "hyper ends the head elsewhere: {r:?}");
    let named = |name: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
            .collect::<Vec<_>>()
    };
    let (cl, te) = (named("content-length"), named("transfer-encoding"));
    if r.chunked {
        assert!(cl.is_empty() && !te.is_empty(), "chunked without TE: {r:?}");
    } else {
        assert!(te.is_empty(), "TE but not chunked: {r:?}");
        assert!(cl.len() <= 1, "Content-Length repeated: {r:?}");
        let len = cl.first().map_or(Some(0), |v| v.parse::<u64>().ok());
        assert_eq!(len, Some(r.body), "hyper's Content-Length differs: {r:?}");
    }
}

pub fn websocket_frame(data: &[u8]) {
    fuzzing::websocket_frame(data);
}

pub fn websocket_relay(data: &[u8]) {
    fuzzing::websocket_relay(data);
}

pub fn app_framing(data: &[u8]) {
    fuzzing::app_framing(data);
}

pub fn app_fields(data: &[u8]) {
    fuzzing::app_fields(data);
}

pub fn app_chunked(data: &[u8]) {
    fuzzing::app_chunked(data);
}

pub fn deflate(data: &[u8]) {
    fuzzing::deflate(data);
}

pub fn web_config(data: &[u8]) {
    fuzzing::web_config(data);
}

/// Every response head app_io lets through ends where hyper's client
/// parser ends it (or hyper refuses it).
pub fn app_heads(data: &[u8]) {
    let Some(ends) = fuzzing::app_heads(data) else {
        return;
    };
    let mut from = 0;
    for end in ends {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&data[from..]) {
            Ok(Status::Complete(n)) => assert_eq!(from + n, end, "head from {from}"),
            Ok(Status::Partial) => panic!("hyper waits for more of a head app_io ended at {end}"),
            Err(_) => return, // hyper's client fails: 502
        }
        from = end;
    }
}
