//! The upgrade gate: how the forwarding service tells the guard whether an
//! upgrade request switched protocols.
//!
//! After a request carrying `Upgrade`, the bytes that follow are either the
//! next HTTP request (the app answered anything but 101) or the new
//! protocol. Only the answer tells, so the guard holds those bytes until
//! the service decides. Owns that hand-off and nothing else.

use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
pub struct UpgradeGate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    decision: Option<bool>,
    waker: Option<Waker>,
}

impl UpgradeGate {
    /// The guard saw an upgrade request head: forget any older answer.
    pub fn expect(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.decision = None;
        }
    }

    /// The guard waits for the answer; Ready(true) when it was a 101.
    pub fn poll_decision(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let Ok(mut s) = self.state.lock() else {
            // A poisoned gate cannot say: treat as HTTP, the strict choice.
            return Poll::Ready(false);
        };
        match s.decision.take() {
            Some(d) => Poll::Ready(d),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn decide(&self, switched: bool) {
        let waker = match self.state.lock() {
            Ok(mut s) => {
                s.decision = Some(switched);
                s.waker.take()
            }
            Err(_) => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The service's side for one upgrade request: dropped without a 101
/// (any error, refusal or plain answer), the connection stays HTTP.
pub struct Decision<'a> {
    gate: &'a UpgradeGate,
    switched: bool,
}

impl<'a> Decision<'a> {
    pub fn new(gate: &'a UpgradeGate) -> Decision<'a> {
        Decision {
            gate,
            switched: false,
        }
    }

    /// The response going out is a 101: what follows is the new protocol.
    pub fn switched(mut self) {
        self.switched = true;
    }
}

impl Drop for Decision<'_> {
    fn drop(&mut self) {
        self.gate.decide(self.switched);
    }
}
