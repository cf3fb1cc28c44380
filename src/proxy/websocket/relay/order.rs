//! Close orders: the one decision both directions act on.
//!
//! The first order wins; each direction sends its side's close frame at
//! its next frame boundary. The idle clock lives here too, since both
//! directions reset it.
//!
//! An order is a write-once cell, not a channel: the directions ask "is
//! there an order?" each time they run, and a channel's receiver answers
//! that behind a lock (a watch channel cost about a fifth of a relayed
//! message's instructions). Issuing one raises the flags (`OnWake`) of both
//! directions and of the grace timer, which wakes the relay's task with all
//! three to be polled.

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use super::super::on_wake::Flag;

use super::direction::Side;
use super::{GOING_AWAY, PROTOCOL_ERROR, SERVICE_RESTART, TOO_BIG};
use crate::proxy::conn_tag::ConnTag;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    pub to_client: u16,
    pub to_app: u16,
    pub reason: &'static str,
}

impl Order {
    pub const SHUTDOWN: Order = Order::both(GOING_AWAY, "server shutting down");
    pub const RETIRING: Order = Order {
        to_client: SERVICE_RESTART,
        to_app: GOING_AWAY,
        reason: "app restarting",
    };
    pub const IDLE: Order = Order::both(GOING_AWAY, "idle timeout");
    pub const TOO_BIG: Order = Order {
        to_client: TOO_BIG,
        to_app: GOING_AWAY,
        reason: "message too big",
    };

    const fn both(code: u16, reason: &'static str) -> Order {
        Order {
            to_client: code,
            to_app: code,
            reason,
        }
    }

    /// `from` broke the protocol: it gets 1002, the other side 1001.
    pub fn protocol_error(from: Side, reason: &'static str) -> Order {
        let (to_client, to_app) = match from {
            Side::Upstream => (PROTOCOL_ERROR, GOING_AWAY),
            Side::Downstream => (GOING_AWAY, PROTOCOL_ERROR),
        };
        Order {
            to_client,
            to_app,
            reason,
        }
    }

    /// The code for the side that `side`'s frames are written to.
    pub fn code_toward(&self, side: Side) -> u16 {
        match side {
            Side::Upstream => self.to_app,
            Side::Downstream => self.to_client,
        }
    }
}

pub struct Shared {
    order: OnceLock<Order>,
    /// The relay's parts' flags, raised when an order is given.
    parts: [Arc<Flag>; 3],
    /// The client connection, for the log.
    pub conn: ConnTag,
    last_activity: AtomicU64,
    base: Instant,
}

impl Shared {
    pub fn new(conn: ConnTag, parts: [Arc<Flag>; 3]) -> Shared {
        Shared {
            order: OnceLock::new(),
            parts,
            conn,
            last_activity: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    /// Issues `o` unless an order was already given.
    pub fn issue(&self, o: Order) {
        if self.order.set(o).is_ok() {
            self.parts.iter().for_each(|f| f.raise());
        }
    }

    /// Ready once an order is given. It registers no waker: what polls it
    /// runs in the relay's task, which `issue` wakes. Level-triggered: a
    /// caller acts on it once and stops asking.
    pub fn ordered(&self) -> impl Future<Output = Order> + '_ {
        poll_fn(|_| match self.current() {
            Some(o) => Poll::Ready(o),
            None => Poll::Pending,
        })
    }

    pub fn current(&self) -> Option<Order> {
        self.order.get().copied()
    }

    pub fn touch(&self) {
        self.last_activity
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn idle_for(&self) -> Duration {
        self.base.elapsed().saturating_sub(Duration::from_millis(
            self.last_activity.load(Ordering::Relaxed),
        ))
    }
}
