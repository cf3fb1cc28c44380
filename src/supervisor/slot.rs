//! One process slot: start, wait for ready, serve, restart on exit, stop.
//!
//! Lifecycle of a slot (one task per slot, until its generation stops):
//! `Starting` -> `Ready` -> (exit) `Down{retrying}` -> `Starting` ...;
//! failed starts retry up to startupRetryCount, then `Down{gave up}` until a
//! request kicks it; every crash or failed start counts against the shared
//! rapid-fail window, which may lock starts out for the rest of a minute.
//! Backoff between attempts grows on repeated failures (0, 50 ms, 100 ms,
//! ... up to 5 s) and resets after a minute of healthy running.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{watch, Notify};
use tokio::time::{sleep, timeout, Instant as Deadline};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::failure::{Cause, Failure};
use super::os::Watchdog;
use super::output::TAIL_LINES;
use super::rapid_fail::RapidFail;
use super::ready::{describe_status, wait_ready};
use super::spawn::{free_port, spawn, Started};
use crate::config::Config;

const MAX_BACKOFF: Duration = Duration::from_secs(5);
const HEALTHY_RESET: Duration = Duration::from_secs(60);
/// How long to wait for the output pipes to drain before reporting a failure.
const TAIL_DRAIN: Duration = Duration::from_millis(200);
/// The least time a process gets between the stop signal and the kill, even
/// when requests used up the whole shutdownTimeLimit.
const TERM_MIN: Duration = Duration::from_millis(300);

/// A ready process, as the proxy sees it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub pid: u32,
    pub slot: usize,
    /// Cancelled when the process has exited: in-flight requests fail fast.
    pub gone: CancellationToken,
    /// Cancelled when hpgate starts stopping the process (recycle, offline,
    /// shutdown): long-lived connections close with "service restart".
    pub retiring: CancellationToken,
    /// Each forwarded request holds a token, so a stop can wait for them.
    pub requests: TaskTracker,
}

/// How long the supervisor may take to see a process exit after its
/// sockets have closed: the kernel closes a dead process's sockets before
/// the process is reaped.
const EXIT_NOTICE: Duration = Duration::from_millis(300);

/// Whether the process behind `gone` turns out to have exited, asked when
/// a connection to it ended unexpectedly: a crash reads differently from
/// a close.
pub async fn exit_seen(gone: &CancellationToken) -> bool {
    timeout(EXIT_NOTICE, gone.cancelled()).await.is_ok()
}

#[derive(Debug, Clone)]
pub enum SlotState {
    Starting,
    Ready(Backend),
    /// Not serving. `retrying`: another attempt is coming by itself.
    Down {
        failure: Arc<Failure>,
        retrying: bool,
    },
    Stopped,
}

/// What a slot task needs from its generation.
pub struct SlotCtx {
    pub cfg: Arc<Config>,
    pub rapid: Arc<Mutex<RapidFail>>,
    pub watchdog: Arc<Watchdog>,
    /// hpgate's shutdown deadline once it is stopping: every stop under
    /// way, a retiring generation's too, ends by then.
    pub stop_by: watch::Receiver<Option<Deadline>>,
}

pub struct Slot {
    pub index: usize,
    pub state: watch::Sender<SlotState>,
    /// Wakes a slot that gave up (a request arrived).
    pub kick: Notify,
    epoch: Arc<watch::Sender<u64>>,
}

impl Slot {
    pub fn new(index: usize, epoch: Arc<watch::Sender<u64>>) -> Slot {
        Slot {
            index,
            state: watch::Sender::new(SlotState::Starting),
            kick: Notify::new(),
            epoch,
        }
    }

    fn set(&self, s: SlotState) {
        self.state.send_replace(s);
        self.epoch.send_modify(|e| *e = e.wrapping_add(1));
    }
}

fn backoff(level: u32) -> Duration {
    match level {
        0 => Duration::ZERO,
        n => Duration::from_millis(50u64 << (n - 1).min(16)).min(MAX_BACKOFF),
    }
}

/// The wait before the next start. A process that was serving and crashed
/// is restarted at once the first time; crashing again soon after (each
/// crash and failed start raises `level`) backs off like failed starts.
fn restart_wait(level: u32, after_crash: bool) -> Duration {
    if after_crash {
        backoff(level.saturating_sub(1))
    } else {
        backoff(level)
    }
}

/// Runs the slot until `stop` is cancelled; stops its process on the way out.
pub async fn run(slot: Arc<Slot>, ctx: Arc<SlotCtx>, stop: CancellationToken) {
    let cfg = &ctx.cfg;
    let max_attempts = cfg.startup_retry_count.max(1);
    let mut level = 0u32; // backoff level
    let mut failed_starts = 0u64;
    let mut last: Option<Arc<Failure>> = None;

    while !stop.is_cancelled() {
        let locked = ctx.rapid.lock().ok().and_then(|r| {
            r.locked_until(Instant::now())
                .map(|u| (u, r.count(), r.limit()))
        });
        if let Some((until, count, limit)) = locked {
            let cause = Cause::TooManyCrashes {
                count,
                limit,
                next_try: SystemTime::now() + until.saturating_duration_since(Instant::now()),
            };
            let tail = last
                .as_ref()
                .map(|f| f.output_tail.clone())
                .unwrap_or_default();
            tracing::error!(slot = slot.index, "{cause}");
            slot.set(SlotState::Down {
                failure: Failure::new(cause, tail),
                retrying: false,
            });
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = stop.cancelled() => break,
            }
            continue;
        }

        if failed_starts >= max_attempts {
            let prev = last.clone();
            if let Some(prev) = prev {
                let cause = Cause::GaveUp {
                    attempts: failed_starts,
                    last: Box::new(prev.cause.clone()),
                };
                tracing::error!(slot = slot.index, "{cause}");
                slot.set(SlotState::Down {
                    failure: Failure::new(cause, prev.output_tail.clone()),
                    retrying: false,
                });
            }
            tokio::select! {
                _ = slot.kick.notified() => {}
                _ = stop.cancelled() => break,
            }
            failed_starts = 0;
            level = 0;
            continue;
        }

        let after_crash = last
            .as_ref()
            .is_some_and(|f| matches!(f.cause, Cause::Crashed { .. }));
        let wait = restart_wait(level, after_crash);
        if !wait.is_zero() {
            tokio::select! {
                _ = sleep(wait) => {}
                _ = stop.cancelled() => break,
            }
        }

        slot.set(SlotState::Starting);
        let attempt = tokio::select! {
            r = start(&slot, cfg, &ctx.watchdog) => r,
            _ = stop.cancelled() => break,
        };
        match attempt {
            Err(failure) => {
                record(&ctx.rapid);
                failed_starts += 1;
                level += 1;
                tracing::error!(
                    slot = slot.index,
                    attempt = failed_starts,
                    of = max_attempts,
                    "app start failed: {}{}",
                    failure.cause,
                    tail_suffix(&failure.output_tail)
                );
                slot.set(SlotState::Down {
                    failure: failure.clone(),
                    retrying: failed_starts < max_attempts,
                });
                last = Some(failure);
            }
            Ok(mut running) => {
                failed_starts = 0;
                let backend = running.backend.clone();
                slot.set(SlotState::Ready(backend.clone()));
                tokio::select! {
                    status = running.started.child.wait() => {
                        backend.gone.cancel();
                        let uptime = running.started.started_at.elapsed();
                        if uptime >= HEALTHY_RESET {
                            level = 0;
                        }
                        record(&ctx.rapid);
                        level += 1;
                        let tail = drain_tail(&mut running.started).await;
                        let failure = Failure::new(
                            Cause::Crashed { pid: running.started.pid, status: describe_status(status), uptime },
                            tail,
                        );
                        tracing::error!(slot = slot.index, "{}{}", failure.cause, tail_suffix(&failure.output_tail));
                        slot.set(SlotState::Down { failure: failure.clone(), retrying: true });
                        last = Some(failure);
                    }
                    _ = stop.cancelled() => {
                        let grace = cfg.shutdown_time_limit;
                        stop_process(running, grace, ctx.stop_by.clone()).await;
                        break;
                    }
                }
            }
        }
    }
    slot.set(SlotState::Stopped);
}

fn record(rapid: &Mutex<RapidFail>) {
    if let Ok(mut r) = rapid.lock() {
        r.record(Instant::now());
    }
}

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last output:\n{tail}")
    }
}

struct Running {
    started: Started,
    backend: Backend,
}

async fn start(
    slot: &Slot,
    cfg: &Config,
    watchdog: &Arc<Watchdog>,
) -> Result<Running, Arc<Failure>> {
    let port = free_port().map_err(|e| {
        Failure::new(
            Cause::Spawn {
                program: cfg.process_path.clone(),
                reason: format!("no free loopback port: {e}"),
            },
            String::new(),
        )
    })?;
    let mut started = spawn(cfg, port, watchdog).map_err(|c| Failure::new(c, String::new()))?;
    let limit = cfg.startup_time_limit;
    match wait_ready(&mut started.child, started.pid, port, limit).await {
        Ok(()) => {
            tracing::info!(
                pid = started.pid,
                port,
                ms = started.started_at.elapsed().as_millis() as u64,
                "app process is ready"
            );
            let backend = Backend {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                pid: started.pid,
                slot: slot.index,
                gone: CancellationToken::new(),
                retiring: CancellationToken::new(),
                requests: TaskTracker::new(),
            };
            Ok(Running { started, backend })
        }
        Err(cause) => {
            // Not ready: make sure it is gone before the next attempt.
            started.guard.kill();
            let _ = started.child.wait().await;
            let tail = drain_tail(&mut started).await;
            Err(Failure::new(cause, tail))
        }
    }
}

async fn drain_tail(started: &mut Started) -> String {
    let _ = timeout(TAIL_DRAIN, &mut started.capture).await;
    started.tail.last_lines(TAIL_LINES)
}

/// Lets in-flight requests finish (up to `grace`), asks the group to stop,
/// and kills it if it has not stopped within `grace`. hpgate's shutdown
/// deadline, once set, cuts both waits short (the process still gets
/// TERM_MIN to exit).
async fn stop_process(
    mut running: Running,
    grace: Duration,
    mut stop_by: watch::Receiver<Option<Deadline>>,
) {
    let Running { started, backend } = &mut running;
    let own = Deadline::now() + grace;
    backend.retiring.cancel();
    backend.requests.close();
    let requests = backend.requests.wait();
    if within(requests, own, Deadline::now(), &mut stop_by)
        .await
        .is_none()
    {
        tracing::warn!(
            pid = started.pid,
            "requests still running after shutdownTimeLimit; stopping the app anyway"
        );
    }
    started.guard.terminate();
    // Outside shutdown the process gets the whole limit again to stop.
    let (own, floor) = (Deadline::now() + grace, Deadline::now() + TERM_MIN);
    match within(started.child.wait(), own, floor, &mut stop_by).await {
        Some(status) => {
            tracing::info!(
                pid = started.pid,
                "app process stopped ({})",
                describe_status(status)
            );
        }
        None => {
            tracing::warn!(
                pid = started.pid,
                "app process did not stop within shutdownTimeLimit ({} s); killing it",
                grace.as_secs()
            );
            started.guard.kill();
            let _ = started.child.wait().await;
        }
    }
    backend.gone.cancel();
}

/// Runs `fut` until `own` or the shutdown deadline (which may come while
/// waiting), whichever is first, but not before `floor`. None: time is up.
async fn within<F: std::future::Future>(
    fut: F,
    own: Deadline,
    floor: Deadline,
    stop_by: &mut watch::Receiver<Option<Deadline>>,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    loop {
        let until = match *stop_by.borrow_and_update() {
            Some(d) => own.min(d),
            None => own,
        }
        .max(floor);
        tokio::select! {
            out = fut.as_mut() => return Some(out),
            _ = tokio::time::sleep_until(until) => return None,
            // A closed channel (hpgate is ending anyway) just disables this.
            Ok(()) = stop_by.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_crash_restarts_at_once_then_backs_off() {
        // First crash of a healthy process (level 0 -> 1): no wait.
        assert_eq!(restart_wait(1, true), Duration::ZERO);
        // A second crash soon after: the first backoff step.
        assert_eq!(restart_wait(2, true), Duration::from_millis(50));
        // A failed start is not a crash: it backs off at once.
        assert_eq!(restart_wait(1, false), Duration::from_millis(50));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_millis(50));
        assert_eq!(backoff(3), Duration::from_millis(200));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
