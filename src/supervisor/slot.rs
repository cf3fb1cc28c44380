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

use super::epoch::Epoch;
use super::failure::{Cause, Failure};
use super::os::Watchdog;
use super::output::TAIL_LINES;
use super::rapid_fail::RapidFail;
use super::ready::{describe_status, wait_ready};
use super::spawn::{free_port, spawn, Started};
use crate::admin::metrics::{CauseLabel, Metrics};
use crate::config::Config;

/// The first backoff step; each further failure doubles it.
const BACKOFF_STEP: Duration = Duration::from_millis(50);
/// Caps the doubling so the shift cannot overflow (MAX_BACKOFF is reached
/// long before).
const BACKOFF_MAX_DOUBLINGS: u32 = 16;
/// A crash-looping app is retried at least this often, so it comes back
/// soon after its cause (a database, a file) is fixed.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A process that served this long was healthy: the backoff starts over.
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
    /// Shared: every request to the process holds it (one count, not a
    /// clone of each token).
    Ready(Arc<Backend>),
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
    epoch: Arc<Epoch>,
    /// What /status shows; written only on state changes.
    pub info: Mutex<SlotInfo>,
    metrics: Arc<Metrics>,
}

/// A slot's history for /status.
#[derive(Debug, Clone, Default)]
pub struct SlotInfo {
    /// Process starts, the first included.
    pub starts: u64,
    /// When the serving process became ready.
    pub ready_since: Option<Instant>,
    /// The last exit or failed start, and its cause's short name.
    pub last_exit: Option<(String, &'static str)>,
}

impl Slot {
    pub fn new(index: usize, epoch: Arc<Epoch>, metrics: Arc<Metrics>) -> Slot {
        Slot {
            index,
            state: watch::Sender::new(SlotState::Starting),
            kick: Notify::new(),
            epoch,
            info: Mutex::new(SlotInfo::default()),
            metrics,
        }
    }

    fn set(&self, s: SlotState) {
        self.note(&s);
        self.state.send_replace(s);
        self.epoch.bump();
    }

    /// Counts starts and exits; remembers what /status shows.
    fn note(&self, s: &SlotState) {
        let Ok(mut info) = self.info.lock() else {
            return;
        };
        match s {
            SlotState::Starting => {
                info.starts += 1;
                info.ready_since = None;
                self.metrics.starts.inc();
            }
            SlotState::Ready(_) => info.ready_since = Some(Instant::now()),
            SlotState::Down { failure, .. } => {
                info.ready_since = None;
                let cause = failure.cause.kind();
                if failure.cause.is_exit() {
                    self.count_exit(cause);
                }
                if matches!(failure.cause, Cause::TooManyCrashes { .. }) {
                    self.metrics.lockouts.inc();
                }
                info.last_exit = Some((failure.cause.to_string(), cause));
            }
            SlotState::Stopped => info.ready_since = None,
        }
    }
}

impl Slot {
    fn count_exit(&self, cause: &'static str) {
        self.metrics
            .exits
            .get_or_create(&CauseLabel { cause })
            .inc();
    }
}

fn backoff(level: u32) -> Duration {
    match level {
        0 => Duration::ZERO,
        n => (BACKOFF_STEP * (1u32 << (n - 1).min(BACKOFF_MAX_DOUBLINGS))).min(MAX_BACKOFF),
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

/// Where a slot task stands; each phase is one function below that
/// returns the next. [`SlotState`] is what the rest of hpgate sees of it.
enum Phase {
    /// Starting a process and waiting for it to listen.
    Starting,
    /// A process serves until it exits or the slot stops.
    Ready(Running),
    /// Not serving, and waiting before the next start.
    Down(Down),
    /// The slot is stopping, with its process if one is running.
    Stopping(Option<Running>),
}

/// What a `Down` slot waits for before it starts again.
enum Down {
    /// The backoff after a failed start or a crash.
    Retrying(Duration),
    /// startupRetryCount is used up: a request's kick.
    GaveUp,
    /// Too many crashes in the rapid-fail window: the window's end.
    LockedOut {
        until: Instant,
        count: u64,
        limit: u64,
    },
}

/// The failures a slot remembers between phases.
#[derive(Default)]
struct History {
    /// Backoff level: raised by every failed start and crash.
    level: u32,
    /// Failed starts in a row, against startupRetryCount.
    failed_starts: u64,
    /// The latest failed start or crash.
    last: Option<Arc<Failure>>,
}

/// One slot task: its slot, its generation's context and its history.
struct Task {
    slot: Arc<Slot>,
    ctx: Arc<SlotCtx>,
    stop: CancellationToken,
    max_attempts: u64,
    history: History,
}

/// Runs the slot until `stop` is cancelled; stops its process on the way out.
pub async fn run(slot: Arc<Slot>, ctx: Arc<SlotCtx>, stop: CancellationToken) {
    let max_attempts = ctx.cfg.startup_retry_count.max(1);
    let mut task = Task {
        slot,
        ctx,
        stop,
        max_attempts,
        history: History::default(),
    };
    let mut phase = task.next();
    loop {
        phase = match phase {
            Phase::Starting => task.starting().await,
            Phase::Ready(running) => task.ready(running).await,
            Phase::Down(down) => task.down(down).await,
            Phase::Stopping(running) => {
                task.stopping(running).await;
                break;
            }
        };
    }
    task.slot.set(SlotState::Stopped);
}

impl Task {
    /// What comes after a failed start, a crash, or a wait: stopping, a
    /// lockout, giving up, a backoff, or the next start, in that order.
    fn next(&self) -> Phase {
        if self.stop.is_cancelled() {
            return Phase::Stopping(None);
        }
        if let Some((until, count, limit)) = self.rapid_lock() {
            return Phase::Down(Down::LockedOut {
                until,
                count,
                limit,
            });
        }
        let h = &self.history;
        if h.failed_starts >= self.max_attempts {
            return Phase::Down(Down::GaveUp);
        }
        let after_crash = h
            .last
            .as_ref()
            .is_some_and(|f| matches!(f.cause, Cause::Crashed { .. }));
        match restart_wait(h.level, after_crash) {
            wait if wait.is_zero() => Phase::Starting,
            wait => Phase::Down(Down::Retrying(wait)),
        }
    }

    /// The rapid-fail lockout in force, if any: its end, count and limit.
    fn rapid_lock(&self) -> Option<(Instant, u64, u64)> {
        let rapid = self.ctx.rapid.lock().ok()?;
        rapid
            .locked_until(Instant::now())
            .map(|until| (until, rapid.count(), rapid.limit()))
    }

    async fn starting(&mut self) -> Phase {
        self.slot.set(SlotState::Starting);
        let attempt = tokio::select! {
            r = start(&self.slot, &self.ctx.cfg, &self.ctx.watchdog) => r,
            _ = self.stop.cancelled() => return Phase::Stopping(None),
        };
        match attempt {
            Ok(running) => {
                self.history.failed_starts = 0;
                self.slot.set(SlotState::Ready(running.backend.clone()));
                Phase::Ready(running)
            }
            Err(failure) => self.start_failed(failure),
        }
    }

    fn start_failed(&mut self, failure: Arc<Failure>) -> Phase {
        record(&self.ctx.rapid);
        let h = &mut self.history;
        h.failed_starts += 1;
        h.level += 1;
        tracing::error!(
            slot = self.slot.index,
            attempt = h.failed_starts,
            of = self.max_attempts,
            "app start failed: {}{}",
            failure.cause,
            tail_suffix(&failure.output_tail)
        );
        self.slot.set(SlotState::Down {
            failure: failure.clone(),
            retrying: h.failed_starts < self.max_attempts,
        });
        h.last = Some(failure);
        self.next()
    }

    async fn ready(&mut self, mut running: Running) -> Phase {
        tokio::select! {
            status = running.started.child.wait() => self.crashed(running, status).await,
            _ = self.stop.cancelled() => Phase::Stopping(Some(running)),
        }
    }

    /// The serving process exited by itself.
    async fn crashed(
        &mut self,
        mut running: Running,
        status: std::io::Result<std::process::ExitStatus>,
    ) -> Phase {
        running.backend.gone.cancel();
        let uptime = running.started.started_at.elapsed();
        if uptime >= HEALTHY_RESET {
            self.history.level = 0;
        }
        record(&self.ctx.rapid);
        self.history.level += 1;
        let tail = drain_tail(&mut running.started).await;
        let cause = Cause::Crashed {
            pid: running.started.pid,
            status: describe_status(status),
            uptime,
        };
        let failure = Failure::new(cause, tail);
        tracing::error!(
            slot = self.slot.index,
            "{}{}",
            failure.cause,
            tail_suffix(&failure.output_tail)
        );
        self.slot.set(SlotState::Down {
            failure: failure.clone(),
            retrying: true,
        });
        self.history.last = Some(failure);
        self.next()
    }

    async fn down(&mut self, down: Down) -> Phase {
        match down {
            Down::Retrying(wait) => {
                tokio::select! {
                    _ = sleep(wait) => Phase::Starting,
                    _ = self.stop.cancelled() => Phase::Stopping(None),
                }
            }
            Down::GaveUp => self.gave_up().await,
            Down::LockedOut {
                until,
                count,
                limit,
            } => self.locked_out(until, count, limit).await,
        }
    }

    /// Serves the last failure as "gave up" until a request kicks the slot,
    /// which then starts afresh.
    async fn gave_up(&mut self) -> Phase {
        if let Some(prev) = self.history.last.clone() {
            let cause = Cause::GaveUp {
                attempts: self.history.failed_starts,
                last: Box::new(prev.cause.clone()),
            };
            tracing::error!(slot = self.slot.index, "{cause}");
            self.slot.set(SlotState::Down {
                failure: Failure::new(cause, prev.output_tail.clone()),
                retrying: false,
            });
        }
        tokio::select! {
            _ = self.slot.kick.notified() => {}
            _ = self.stop.cancelled() => return Phase::Stopping(None),
        }
        self.history.failed_starts = 0;
        self.history.level = 0;
        self.next()
    }

    /// Serves "too many crashes" until the rapid-fail window ends.
    async fn locked_out(&mut self, until: Instant, count: u64, limit: u64) -> Phase {
        let cause = Cause::TooManyCrashes {
            count,
            limit,
            next_try: SystemTime::now() + until.saturating_duration_since(Instant::now()),
        };
        let tail = self
            .history
            .last
            .as_ref()
            .map(|f| f.output_tail.clone())
            .unwrap_or_default();
        tracing::error!(slot = self.slot.index, "{cause}");
        self.slot.set(SlotState::Down {
            failure: Failure::new(cause, tail),
            retrying: false,
        });
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => self.next(),
            _ = self.stop.cancelled() => Phase::Stopping(None),
        }
    }

    async fn stopping(&self, running: Option<Running>) {
        if let Some(running) = running {
            // hpgate stopping has a deadline; otherwise a recycle (or
            // app_offline.htm) retired the generation.
            let cause = match *self.ctx.stop_by.borrow() {
                Some(_) => "stopped",
                None => "recycled",
            };
            let grace = self.ctx.cfg.shutdown_time_limit;
            stop_process(running, grace, self.ctx.stop_by.clone()).await;
            self.slot.count_exit(cause);
        }
    }
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
    backend: Arc<Backend>,
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
            let backend = Arc::new(Backend {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                pid: started.pid,
                slot: slot.index,
                gone: CancellationToken::new(),
                retiring: CancellationToken::new(),
                requests: TaskTracker::new(),
            });
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
