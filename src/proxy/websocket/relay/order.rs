//! Close orders: the one decision both directions act on.
//!
//! The first order wins; each direction sends its side's close frame at
//! its next frame boundary. The idle clock lives here too, since both
//! directions reset it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

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
    pub order: watch::Sender<Option<Order>>,
    /// The client connection, for the log.
    pub conn: ConnTag,
    last_activity: AtomicU64,
    base: Instant,
}

impl Shared {
    pub fn new(conn: ConnTag) -> Shared {
        Shared {
            order: watch::Sender::new(None),
            conn,
            last_activity: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    /// Issues `o` unless an order was already given.
    pub fn issue(&self, o: Order) {
        self.order.send_if_modified(|cur| {
            if cur.is_none() {
                *cur = Some(o);
                true
            } else {
                false
            }
        });
    }

    /// A receiver that also reports an order given before it subscribed:
    /// one direction (or a signal) can order a close before the other
    /// direction's first poll.
    pub fn orders(&self) -> watch::Receiver<Option<Order>> {
        let mut rx = self.order.subscribe();
        if rx.borrow().is_some() {
            rx.mark_changed();
        }
        rx
    }

    pub fn current(&self) -> Option<Order> {
        *self.order.borrow()
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
