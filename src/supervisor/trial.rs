//! One start of the app outside any slot, for `hpgate check`: the same
//! launch contract (`spawn.rs`), readiness and diagnosis (`ready.rs`) and
//! OS guard as a real start, then a stop that leaves nothing behind.
//!
//! It must not retry, restart or count toward rapid-fail protection.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::timeout;

use super::failure::Cause;
use super::os::Watchdog;
use super::output::TAIL_LINES;
use super::ready::{listens_elsewhere, wait_ready};
use super::spawn::{free_port, spawn, Started};
use crate::config::Config;

/// How long a stopped or exited process's last output may take to arrive.
const DRAIN: Duration = Duration::from_millis(500);
/// Least time a process gets between the stop signal and the kill.
const TERM_MIN: Duration = Duration::from_millis(300);

/// A process started once for a check.
pub struct Trial {
    started: Started,
    port: u16,
    watchdog: Arc<Watchdog>,
    drained: bool,
}

impl Trial {
    /// Starts the app on a free loopback port (no stdout log file: a check
    /// leaves no traces in the site).
    pub fn start(cfg: &Config) -> Result<Trial, Cause> {
        let port = free_port().map_err(|e| Cause::Spawn {
            program: cfg.process_path.clone(),
            reason: format!("no free loopback port: {e}"),
        })?;
        let mut cfg = cfg.clone();
        cfg.stdout_log_enabled = false;
        let watchdog = Arc::new(Watchdog::start());
        let started = spawn(&cfg, port, &watchdog)?;
        Ok(Trial {
            started,
            port,
            watchdog,
            drained: false,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.started.pid
    }

    /// Waits until the app listens on its port (the time it took), exits,
    /// listens elsewhere, or `limit` passes (zero: no limit).
    pub async fn ready(&mut self, limit: Duration) -> Result<Duration, Cause> {
        let (pid, port) = (self.started.pid, self.port);
        let since = self.started.started_at;
        tokio::select! {
            r = wait_ready(&mut self.started.child, pid, port, limit) => r.map(|()| since.elapsed()),
            detail = listens_elsewhere(pid, port) => Err(Cause::NotListening {
                pid,
                port,
                secs: since.elapsed().as_secs(),
                detail,
            }),
        }
    }

    /// The output so far, once it has been quiet for `quiet` (at most
    /// `max`): a server prints its banner just after it starts listening.
    pub async fn output_settled(&self, quiet: Duration, max: Duration) -> String {
        let end = tokio::time::Instant::now() + max;
        let mut last = self.started.tail.last_lines(TAIL_LINES);
        while tokio::time::Instant::now() < end {
            tokio::time::sleep(quiet).await;
            let now = self.started.tail.last_lines(TAIL_LINES);
            if now == last {
                break;
            }
            last = now;
        }
        last
    }

    /// The last output lines of a process that has exited or was stopped.
    pub async fn final_output(&mut self) -> String {
        if !self.drained {
            self.drained = true;
            let _ = timeout(DRAIN, &mut self.started.capture).await;
        }
        self.started.tail.last_lines(TAIL_LINES)
    }

    /// Stops the app (its whole group): the stop signal, then a kill after
    /// `grace`; daemons it left are stopped too.
    pub async fn stop(mut self, grace: Duration) -> String {
        self.started.guard.terminate();
        let wait = timeout(grace.max(TERM_MIN), self.started.child.wait()).await;
        if wait.is_err() {
            self.started.guard.kill();
            let _ = self.started.child.wait().await;
        }
        let out = self.final_output().await;
        let Trial {
            started, watchdog, ..
        } = self;
        drop(started);
        watchdog.stop_orphans();
        out
    }
}
