//! How a client connection is named in the log.
//!
//! Owns the tag only; each line that needs it (the access log, request
//! errors, the guard's refusals, WebSocket protocol errors) writes its
//! fields itself. Why not a span around the connection's task, as before:
//! a span is entered and left on every poll of the task, which cost about
//! 3% of a small request's instructions at the default log level
//! (docs/benchmarks.md, issue 19). At debug level a `conn` span (with the
//! same id and peer) still ties every other line to its connection.

use std::net::SocketAddr;

/// A connection's number on its listener and the client's address.
#[derive(Debug, Clone, Copy)]
pub struct ConnTag {
    pub id: u64,
    pub peer: SocketAddr,
}
