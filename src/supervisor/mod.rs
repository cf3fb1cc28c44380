//! Process supervision: owns the app processes described by the
//! configuration and tells the proxy which one may take a request.
//!
//! A *generation* is the set of `processesPerApplication` slots started
//! from one configuration. Recycling (web.config edit) starts a new
//! generation, switches traffic once it is ready, then stops the old one;
//! `app_offline.htm` stops the current generation until the file goes.
//! On shutdown every stop under way shares hpgate's one deadline.
//! This module must not speak HTTP: the proxy renders [`Unavailable`].

mod epoch;
mod failure;
mod os;
mod output;
mod rapid_fail;
mod ready;
mod slot;
mod spawn;
mod status;
mod trial;
pub mod watch_files;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant as Deadline;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use failure::{Cause, Failure};
pub use os::run_watchdog;
pub use slot::{exit_seen, Backend};
pub use status::{ProcessStatus, Readiness};
pub(crate) use trial::Trial;

/// Processes holding a TCP listener on `port` (pid, command name), where
/// the system tells (Linux); for `hpgate check`'s "in use by".
pub(crate) fn port_owners(port: u16) -> Vec<(u32, String)> {
    os::port_owners(port)
}

use crate::admin::metrics::Metrics;
use crate::config::Config;
use epoch::Epoch;
use rapid_fail::RapidFail;
use slot::{Slot, SlotCtx, SlotState};

/// How long past startupTimeLimit a request waits for a starting process,
/// so a failed attempt can report its own diagnosis rather than a generic
/// "still starting".
const START_MARGIN: Duration = Duration::from_secs(2);
/// The id of the generation started with hpgate; recycles count up from it
/// (ids only tell generations apart in the log).
const FIRST_GENERATION: u64 = 1;

/// Why a request cannot be served right now.
#[derive(Debug, Clone)]
pub enum Unavailable {
    /// Starting or running the app failed; 502 with the cause.
    Failed(Arc<Failure>),
    /// `app_offline.htm` exists; 503 with its content.
    Offline(Bytes),
    /// hpgate is stopping; 503.
    ShuttingDown,
}

struct Generation {
    cfg: Arc<Config>,
    slots: Vec<Arc<Slot>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Generation {
    /// A ready process: `prefer_pid`'s if it is ready, else the `turn`-th
    /// ready one (round-robin). No list is built: a request pays for one
    /// reference count.
    fn pick_ready(&self, prefer_pid: Option<u32>, turn: &AtomicUsize) -> Option<Arc<Backend>> {
        // One process (the default): no turn to take, one look at it.
        if let [only] = self.slots.as_slice() {
            return match &*only.state.borrow() {
                SlotState::Ready(b) => Some(b.clone()),
                _ => None,
            };
        }
        let mut count = 0;
        for s in &self.slots {
            if let SlotState::Ready(b) = &*s.state.borrow() {
                if prefer_pid == Some(b.pid) {
                    return Some(b.clone());
                }
                count += 1;
            }
        }
        if count == 0 {
            return None;
        }
        let mut k = turn.fetch_add(1, Ordering::Relaxed) % count;
        for s in &self.slots {
            if let SlotState::Ready(b) = &*s.state.borrow() {
                if k == 0 {
                    return Some(b.clone());
                }
                k -= 1;
            }
        }
        // A slot stopped being ready between the passes: the next turn.
        None
    }

    /// How many processes are ready.
    fn ready_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(&*s.state.borrow(), SlotState::Ready(_)))
            .count()
    }

    /// True while some slot is starting or will retry by itself.
    fn pending(&self) -> bool {
        self.slots.iter().any(|s| {
            matches!(
                &*s.state.borrow(),
                SlotState::Starting | SlotState::Down { retrying: true, .. }
            )
        })
    }

    fn first_failure(&self) -> Option<Arc<Failure>> {
        self.slots.iter().find_map(|s| match &*s.state.borrow() {
            SlotState::Down { failure, .. } => Some(failure.clone()),
            _ => None,
        })
    }

    async fn stop(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// What a connection's last request got from the supervisor, kept by the
/// connection and used again while the epoch says nothing has changed: a
/// request then takes no lock and no reference to the generation, only
/// the configuration's and the process's it is given. With one process
/// (the default) that process is kept too; with more, each request still
/// takes its turn (round-robin per request, as before).
#[derive(Default)]
pub struct Seen {
    epoch: u64,
    generation: Option<Arc<Generation>>,
    only: Option<Arc<Backend>>,
}

struct Shared {
    current: RwLock<Arc<Generation>>,
    epoch: Arc<Epoch>,
    offline: RwLock<Option<Bytes>>,
    /// Whether `offline` holds a page (set under its lock): every request
    /// reads this, and takes the lock only while the site is offline.
    is_offline: AtomicBool,
    shutting_down: AtomicBool,
    rapid: Arc<Mutex<RapidFail>>,
    watchdog: Arc<os::Watchdog>,
    next_generation: AtomicU64,
    round_robin: AtomicUsize,
    /// Stops of retired generations still under way.
    retiring: TaskTracker,
    /// The shutdown deadline, once hpgate is stopping (see `SlotCtx`).
    stop_by: watch::Sender<Option<Deadline>>,
    metrics: Arc<Metrics>,
}

/// Handle to the supervisor; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    /// Starts the app processes at once (the original waits for a request).
    pub fn start(cfg: Arc<Config>) -> Supervisor {
        let epoch = Arc::new(Epoch::new());
        let rapid = Arc::new(Mutex::new(RapidFail::new(cfg.rapid_fails_per_minute)));
        let watchdog = Arc::new(os::Watchdog::start());
        let stop_by = watch::Sender::new(None);
        let metrics = Arc::new(Metrics::new());
        let first = Spawn {
            epoch: &epoch,
            rapid: &rapid,
            watchdog: &watchdog,
            stop_by: &stop_by,
            metrics: &metrics,
        }
        .generation(FIRST_GENERATION, cfg);
        Supervisor {
            shared: Arc::new(Shared {
                current: RwLock::new(first),
                epoch,
                offline: RwLock::new(None),
                is_offline: AtomicBool::new(false),
                shutting_down: AtomicBool::new(false),
                rapid,
                watchdog,
                next_generation: AtomicU64::new(FIRST_GENERATION + 1),
                round_robin: AtomicUsize::new(0),
                retiring: TaskTracker::new(),
                stop_by,
                metrics,
            }),
        }
    }

    fn current(&self) -> Arc<Generation> {
        match self.shared.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The configuration of the generation now serving.
    pub fn config(&self) -> Arc<Config> {
        self.current().cfg.clone()
    }

    /// `config`, from what `seen` holds while nothing has changed.
    pub fn config_seen(&self, seen: &mut Seen) -> Arc<Config> {
        self.look(seen).cfg.clone()
    }

    /// `pick`, answered from `seen` while nothing has changed and its one
    /// process was ready when it was filled.
    pub async fn pick_seen(
        &self,
        prefer_pid: Option<u32>,
        seen: &mut Seen,
    ) -> Result<Arc<Backend>, Unavailable> {
        let serving = !self.shared.shutting_down.load(Ordering::Acquire)
            && !self.shared.is_offline.load(Ordering::Acquire);
        if serving {
            self.look(seen);
            if let Some(b) = &seen.only {
                return Ok(b.clone());
            }
        }
        self.pick(prefer_pid).await
    }

    /// The serving generation, filling `seen` again if anything changed
    /// since it was filled. The epoch is read first: a change made while
    /// filling leaves it older than the count, and the next look fills
    /// again.
    fn look<'s>(&self, seen: &'s mut Seen) -> &'s Arc<Generation> {
        let epoch = self.shared.epoch.now();
        if seen.epoch != epoch || seen.generation.is_none() {
            let generation = self.current();
            // With one process there is no turn to take.
            seen.only = match generation.slots.len() {
                1 => generation.pick_ready(None, &self.shared.round_robin),
                _ => None,
            };
            seen.epoch = epoch;
            seen.generation = Some(generation);
        }
        seen.generation.get_or_insert_with(|| self.current())
    }

    /// A ready process for one request (`prefer_pid` when it is ready:
    /// session affinity). Waits while a process is starting
    /// (up to startupTimeLimit); answers at once when starting has failed
    /// for good, is locked out, or the site is offline.
    pub async fn pick(&self, prefer_pid: Option<u32>) -> Result<Arc<Backend>, Unavailable> {
        // The common case first: a process is ready, nothing to wait for.
        if let Some(b) = self.ready_now(prefer_pid)? {
            return Ok(b);
        }
        // Boxed: waiting is the exception, and its timer and channel would
        // otherwise make every request's future larger.
        Box::pin(self.wait_for_ready(prefer_pid)).await
    }

    /// `pick` when no process is ready: waits for one (or the verdict).
    async fn wait_for_ready(&self, prefer_pid: Option<u32>) -> Result<Arc<Backend>, Unavailable> {
        let limit = self.config().startup_time_limit.max(Duration::from_secs(1));
        // A little past the start limit, so a failed attempt can report its
        // own diagnosis rather than a generic "still starting".
        let deadline = tokio::time::Instant::now() + limit + START_MARGIN;
        loop {
            // Subscribed before looking, so no change is missed.
            let mut changes = self.shared.epoch.subscribe();
            if let Some(b) = self.ready_now(prefer_pid)? {
                return Ok(b);
            }
            let generation = self.current();
            if !generation.pending() {
                for s in &generation.slots {
                    s.kick.notify_one();
                }
                if let Some(f) = generation.first_failure() {
                    return Err(Unavailable::Failed(f));
                }
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => {
                    let failure = generation.first_failure().unwrap_or_else(|| {
                        Failure::new(
                            Cause::StillStarting {
                                secs: limit.as_secs(),
                            },
                            String::new(),
                        )
                    });
                    return Err(Unavailable::Failed(failure));
                }
            }
        }
    }

    /// A ready process now, if there is one; Err when none may serve.
    fn ready_now(&self, prefer_pid: Option<u32>) -> Result<Option<Arc<Backend>>, Unavailable> {
        if self.shared.shutting_down.load(Ordering::Acquire) {
            return Err(Unavailable::ShuttingDown);
        }
        // The flag first: the lock only while the site is offline (a
        // request racing the page's arrival is served, as before).
        if self.shared.is_offline.load(Ordering::Acquire) {
            if let Some(page) = self.offline_page() {
                return Err(Unavailable::Offline(page));
            }
        }
        Ok(self
            .current()
            .pick_ready(prefer_pid, &self.shared.round_robin))
    }

    fn offline_page(&self) -> Option<Bytes> {
        self.shared.offline.read().ok().and_then(|o| o.clone())
    }

    fn bump(&self) {
        self.shared.epoch.bump();
    }

    /// Starts the processes of a new generation (not yet serving).
    fn new_generation(&self, cfg: Arc<Config>) -> Arc<Generation> {
        let id = self.shared.next_generation.fetch_add(1, Ordering::Relaxed);
        let sh = &self.shared;
        Spawn {
            epoch: &sh.epoch,
            rapid: &sh.rapid,
            watchdog: &sh.watchdog,
            stop_by: &sh.stop_by,
            metrics: &sh.metrics,
        }
        .generation(id, cfg)
    }

    /// hpgate's metrics (the supervisor counts starts, exits, recycles).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Starts a generation from `cfg`, switches traffic to it once ready and
    /// retires the old one. Returns false (old one kept) if it never got
    /// ready, the site went offline meanwhile, or `abandon` completed first
    /// (a newer configuration is waiting: the last edit wins).
    pub async fn recycle(&self, cfg: Arc<Config>, abandon: impl Future<Output = ()>) -> bool {
        let next = self.new_generation(cfg);
        let abandoned = tokio::select! {
            _ = self.settled(&next) => false,
            _ = abandon => true,
        };
        if abandoned {
            tracing::info!("a newer configuration came before this one was ready; starting that");
        } else if next.ready_count() == 0 || self.shared.shutting_down.load(Ordering::Acquire) {
            if let Some(f) = next.first_failure() {
                tracing::error!(
                    "the new configuration did not start ({}); still serving with the old processes",
                    f.cause
                );
            }
        } else if self.swap_in(next.clone(), true) {
            tracing::info!("recycled: traffic now goes to the new processes");
            self.shared.metrics.recycles.inc();
            return true;
        } else {
            return false;
        }
        self.retire(next);
        false
    }

    /// Returns once every slot of `next` is ready, none is still starting,
    /// or hpgate is stopping.
    async fn settled(&self, next: &Generation) {
        let mut changes = self.shared.epoch.subscribe();
        loop {
            let all_ready = next.ready_count() == next.slots.len();
            if all_ready || !next.pending() || self.shared.shutting_down.load(Ordering::Acquire) {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Makes `next` current and retires the old generation. With
    /// `unless_offline`, refuses (and retires `next`) while app_offline.htm
    /// is up; checked under the lock `set_offline` reads through, so a
    /// generation swapped in just before is still stopped by it.
    fn swap_in(&self, next: Arc<Generation>, unless_offline: bool) -> bool {
        let mut current = self
            .shared
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let refused = unless_offline && self.offline_page().is_some();
        let retired = if refused {
            next
        } else {
            std::mem::replace(&mut *current, next)
        };
        drop(current);
        if !refused {
            self.bump();
        }
        self.retire(retired);
        !refused
    }

    fn retire(&self, generation: Arc<Generation>) {
        self.shared
            .retiring
            .spawn(async move { generation.stop().await });
    }

    /// `app_offline.htm` appeared (or its content changed): requests get
    /// 503 with `page`, and the app is stopped.
    pub async fn set_offline(&self, page: Bytes) {
        let was_offline = self.offline_page().is_some();
        if let Ok(mut o) = self.shared.offline.write() {
            *o = Some(page);
            self.shared.is_offline.store(true, Ordering::Release);
        }
        self.bump();
        if !was_offline {
            tracing::info!(
                "app_offline.htm found: stopping the app; requests get 503 with its content"
            );
            self.current().stop().await;
        }
    }

    /// `app_offline.htm` went away: start the app from `cfg`.
    pub fn set_online(&self, cfg: Arc<Config>) {
        if self.offline_page().is_none() {
            return;
        }
        tracing::info!("app_offline.htm removed: starting the app");
        let next = self.new_generation(cfg);
        if let Ok(mut o) = self.shared.offline.write() {
            *o = None;
            self.shared.is_offline.store(false, Ordering::Release);
        }
        self.swap_in(next, false);
    }

    pub fn is_offline(&self) -> bool {
        self.offline_page().is_some()
    }

    /// Returns once the site answers: a process of the serving generation
    /// is ready, or starting it has failed for good (requests get the
    /// 502 that says why), or the site is offline or stopping. systemd's
    /// READY=1 waits for this.
    pub async fn started(&self) {
        let mut changes = self.shared.epoch.subscribe();
        loop {
            let generation = self.current();
            if generation.ready_count() > 0
                || !generation.pending()
                || self.is_offline()
                || self.shared.shutting_down.load(Ordering::Acquire)
            {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stops every process: in-flight requests first, then the stop signal,
    /// then a kill; all by `deadline` (a process still gets a moment
    /// between the stop signal and the kill).
    pub async fn shutdown(&self, deadline: Deadline) {
        self.shared.stop_by.send_replace(Some(deadline));
        self.shared.shutting_down.store(true, Ordering::Release);
        self.bump();
        self.current().stop().await;
        self.shared.retiring.close();
        self.shared.retiring.wait().await;
        self.shared.watchdog.stop_orphans();
    }
}

/// What starting a generation needs from the supervisor.
struct Spawn<'a> {
    epoch: &'a Arc<Epoch>,
    rapid: &'a Arc<Mutex<RapidFail>>,
    watchdog: &'a Arc<os::Watchdog>,
    stop_by: &'a watch::Sender<Option<Deadline>>,
    metrics: &'a Arc<Metrics>,
}

impl Spawn<'_> {
    fn generation(self, id: u64, cfg: Arc<Config>) -> Arc<Generation> {
        let ctx = Arc::new(SlotCtx {
            cfg: cfg.clone(),
            rapid: self.rapid.clone(),
            watchdog: self.watchdog.clone(),
            stop_by: self.stop_by.subscribe(),
        });
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let slots: Vec<Arc<Slot>> = (0..cfg.processes_per_application as usize)
            .map(|i| Arc::new(Slot::new(i, self.epoch.clone(), self.metrics.clone())))
            .collect();
        for s in &slots {
            tasks.spawn(slot::run(s.clone(), ctx.clone(), stop.clone()));
        }
        tracing::debug!(generation = id, "starting app processes");
        Arc::new(Generation {
            cfg,
            slots,
            stop,
            tasks,
        })
    }
}
