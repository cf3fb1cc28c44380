//! What the admin listener reads: per-process status and readiness.
//!
//! Read-only views of the supervisor's state, taken on request (a scrape,
//! a probe); nothing here runs per proxied request.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::slot::{Slot, SlotState};
use super::Supervisor;

/// One process slot of the generation serving, as /status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessStatus {
    pub slot: usize,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    /// `starting`, `ready`, `down` or `stopped`.
    pub state: &'static str,
    pub uptime_seconds: Option<u64>,
    pub restarts: u64,
    pub last_exit: Option<String>,
    pub last_exit_cause: Option<&'static str>,
    pub open_requests: usize,
}

/// Why hpgate is not ready, or that it is.
pub type Readiness = Result<(), String>;

impl Supervisor {
    /// The slots of the generation now serving.
    pub fn processes(&self) -> Vec<ProcessStatus> {
        self.current().slots.iter().map(|s| status(s)).collect()
    }

    /// Ready: not stopping, not offline, and a process can take requests.
    pub fn readiness(&self) -> Readiness {
        if self.shared.shutting_down.load(Ordering::Acquire) {
            return Err("draining: hpgate is shutting down".into());
        }
        if self.is_offline() {
            return Err("offline: app_offline.htm is present".into());
        }
        let generation = self.current();
        if generation.ready_count() > 0 {
            return Ok(());
        }
        match generation.first_failure() {
            Some(f) => Err(format!("no app process is ready: {}", f.cause)),
            None => Err("no app process is ready yet: starting".into()),
        }
    }
}

fn status(slot: &Slot) -> ProcessStatus {
    let info = slot.info.lock().map(|i| i.clone()).unwrap_or_default();
    let (state, backend) = match &*slot.state.borrow() {
        SlotState::Starting => ("starting", None),
        SlotState::Ready(b) => ("ready", Some(b.clone())),
        SlotState::Down { .. } => ("down", None),
        SlotState::Stopped => ("stopped", None),
    };
    let (last_exit, last_exit_cause) = match info.last_exit {
        Some((text, cause)) => (Some(text), Some(cause)),
        None => (None, None),
    };
    ProcessStatus {
        slot: slot.index,
        pid: backend.as_ref().map(|b| b.pid),
        port: backend.as_ref().map(|b| b.addr.port()),
        state,
        uptime_seconds: info.ready_since.map(|t| t.elapsed().as_secs()),
        restarts: info.starts.saturating_sub(1),
        last_exit,
        last_exit_cause,
        open_requests: backend.map_or(0, |b| b.requests.len()),
    }
}
