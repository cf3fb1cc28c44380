//! The client-facing side: listener, forwarding service, WebSocket
//! upgrades, error pages.
//!
//! Owns everything HTTP. It asks the supervisor for a ready process per
//! request and must not start, stop or inspect processes itself.
//!
//! A request's path: `server.rs` accepts, `guard/` checks the raw bytes,
//! `front/` (GET and HEAD without a body) or hyper parses, `service.rs` checks and dispatches once to `forward.rs`
//! (plain HTTP) or `websocket/` (upgrades); both reach the app through
//! `upstream.rs`. `error.rs` renders every response hpgate makes itself.
//! `waits.rs` holds what a connection waits on besides its sockets (its
//! timer, shutdown, the app process's exit), lent to each request.

mod activity;
pub mod affinity;
mod app_io;
mod body;
mod charset;
mod client;
mod conn_tag;
mod connection;
mod direct_io;
mod error;
mod forward;
mod front;
mod guard;
mod headers;
mod host;
mod lean;
mod poll_clock;
mod pool;
mod request_body;
mod server;
mod service;
mod tcp_tuning;
mod upstream;
mod waits;
pub mod websocket;

/// What `crate::fuzzing` drives; not an API.
pub(crate) mod fuzz {
    pub(crate) use super::app_io::{head_end, head_end_by_steps, head_ends};
    pub(crate) use super::guard::{Phase, Scanner, Step};
    pub(crate) use super::lean::taken_end as lean_head_end;
    pub(crate) use super::lean::{framing_of, passed_lines, Chunked, Decoded};
}

use std::sync::Arc;
use std::time::Duration;

use crate::supervisor::Supervisor;
use affinity::Affinity;
use pool::raw::RawPool;
use pool::Pool;

pub use server::{adopt, bind, serve, Endpoint};

/// How long an idle kept-alive app connection is kept: below the common
/// app servers' own keep-alive limits would be wasteful, above them the app
/// closes first and a request may meet a closing connection (docs/troubleshooting.md).
const POOL_IDLE: Duration = Duration::from_secs(30);
/// How long a connect to an app process on loopback may take: a ready
/// process accepts at once, so this only bounds a wedged one.
const POOL_CONNECT: Duration = Duration::from_secs(5);

/// Shared by every connection.
pub struct Gateway {
    pub sup: Supervisor,
    pub pool: Arc<Pool>,
    /// The lean path's sockets (requests without a body, `lean/`).
    pub raw: Arc<RawPool>,
    pub ws: websocket::Registry,
    /// Shared with the admin listener, which shows its size.
    pub affinity: Arc<Affinity>,
    /// The bound port of the first https listener (`httpsRedirect` sends
    /// clients there).
    pub https_port: Option<u16>,
    /// ACME HTTP-01 answers, when ACME is on.
    pub acme: Option<Arc<crate::tls::acme::Challenges>>,
}

impl Gateway {
    pub fn new(sup: Supervisor, ws: websocket::Registry) -> Gateway {
        let pool = Pool::new(POOL_IDLE, POOL_CONNECT).counting(sup.metrics().clone());
        let raw = RawPool::new(POOL_IDLE, pool.dialer());
        Gateway {
            sup,
            pool: Arc::new(pool),
            raw,
            ws,
            affinity: Arc::default(),
            https_port: None,
            acme: None,
        }
    }
}
