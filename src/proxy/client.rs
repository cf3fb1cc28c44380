//! One client connection as the request handlers see it: who is on the
//! other end, and the connection's place under `maxConnections`.
//!
//! The place (a semaphore permit) is freed when the connection ends, or,
//! after a WebSocket upgrade, when the WebSocket ends: a WebSocket is a
//! client connection too, and holds two file descriptors like any other.

use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;

use super::conn_tag::ConnTag;
use super::guard::UpgradeGate;
use super::headers::Peer;

pub struct Client {
    pub peer: Peer,
    /// What this connection's log lines name it by.
    pub tag: ConnTag,
    place: Mutex<Option<OwnedSemaphorePermit>>,
    /// Tells the smuggling guard whether an upgrade request switched.
    pub gate: Arc<UpgradeGate>,
    /// The WebSockets this connection carries as HTTP/2 streams: on
    /// shutdown their close frames go out before the connection's GOAWAY
    /// (clients such as Python's h2 read nothing after a GOAWAY).
    pub websockets: TaskTracker,
}

impl Client {
    pub fn new(
        tag: ConnTag,
        place: OwnedSemaphorePermit,
        gate: Arc<UpgradeGate>,
        tls: bool,
    ) -> Client {
        Client {
            peer: Peer::with_tls(tag.peer, tls),
            tag,
            place: Mutex::new(Some(place)),
            gate,
            websockets: TaskTracker::new(),
        }
    }

    /// Takes the connection's place along (to a WebSocket relay).
    pub fn take_place(&self) -> Option<OwnedSemaphorePermit> {
        self.place.lock().ok().and_then(|mut p| p.take())
    }
}
