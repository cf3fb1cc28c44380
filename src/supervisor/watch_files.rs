//! Watches the site folder: `app_offline.htm` (take the app offline while it
//! exists) and web.config plus `<recycleOnFileChange>` files (recycle on
//! change). Polls every 250 ms: portable, cheap for a handful of files, and
//! immune to editors that replace files instead of writing them.
//!
//! A [`Reloader`] (SIGHUP) asks for the same reload without an edit.
//!
//! Owns change detection and the reload decision. It must not start or stop
//! processes itself; it asks the [`Supervisor`], through one recycler task
//! so that recycles never overlap and the last edit wins.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::Supervisor;
use crate::config::{Config, ConfigErrors};

/// How often watched files are checked (why polling: see above), and how
/// long they must then stay unchanged before hpgate acts on an edit.
const POLL: Duration = Duration::from_millis(250);
pub const APP_OFFLINE: &str = "app_offline.htm";

type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &[PathBuf]) -> Stamp {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        })
        .collect()
}

fn watched(cfg: &Config) -> Vec<PathBuf> {
    cfg.config_file
        .iter()
        .chain(cfg.recycle_on_file_change.iter())
        .cloned()
        .collect()
}

fn read_offline(site_root: &Path) -> Option<Bytes> {
    std::fs::read(site_root.join(APP_OFFLINE))
        .ok()
        .map(Bytes::from)
}

/// Asks the watcher for a reload now, as if web.config had changed (what
/// SIGHUP does). Cheap to clone.
#[derive(Clone)]
pub struct Reloader(mpsc::Sender<oneshot::Sender<()>>);

/// The watcher's end of [`Reloader`].
pub struct ReloadRequests(mpsc::Receiver<oneshot::Sender<()>>);

pub fn reloader() -> (Reloader, ReloadRequests) {
    let (tx, rx) = mpsc::channel(4);
    (Reloader(tx), ReloadRequests(rx))
}

impl Reloader {
    /// Re-reads the configuration and recycles the app; returns once the
    /// new processes serve, the recycle gave up, or the configuration had
    /// errors (the old one keeps serving).
    pub async fn reload(&self) {
        let (done, finished) = oneshot::channel();
        if self.0.send(done).await.is_ok() {
            let _ = finished.await;
        }
    }
}

/// A configuration for the recycler, numbered so a reload can wait for
/// its own: the recycler reports the number of each it has finished with.
type Wanted = Option<(u64, Arc<Config>)>;

/// Runs until `stop` is cancelled.
pub async fn run(
    sup: Supervisor,
    reload: impl Fn() -> Result<Config, ConfigErrors>,
    requests: ReloadRequests,
    stop: CancellationToken,
) {
    let (latest, wanted) = watch::channel(None);
    let (finished_tx, finished) = watch::channel(0);
    let recycler = tokio::spawn(recycle_latest(sup.clone(), wanted, finished_tx));
    let recycle = Recycle {
        latest,
        finished,
        sent: 0,
    };
    watch(sup, reload, requests, stop, recycle).await;
    // Dropping the channel abandons a recycle still waiting for its processes.
    let _ = recycler.await;
}

/// Recycles to each configuration sent, one at a time. A newer one abandons
/// a recycle whose processes are still starting, so however edits overlap,
/// the last one ends up serving.
async fn recycle_latest(
    sup: Supervisor,
    mut wanted: watch::Receiver<Wanted>,
    finished: watch::Sender<u64>,
) {
    while wanted.changed().await.is_ok() {
        let Some((n, cfg)) = wanted.borrow_and_update().clone() else {
            continue;
        };
        let mut newer = wanted.clone();
        sup.recycle(cfg, async move {
            let _ = newer.changed().await;
        })
        .await;
        // An abandoned one is finished too: a newer one took its place.
        finished.send_replace(n);
    }
}

/// The watcher's side of the recycler.
struct Recycle {
    latest: watch::Sender<Wanted>,
    finished: watch::Receiver<u64>,
    sent: u64,
}

impl Recycle {
    /// Hands `cfg` to the recycler; `done` (a reload's) gets an answer
    /// once the recycler has finished with it or a newer one.
    fn send(&mut self, cfg: Arc<Config>, done: Option<oneshot::Sender<()>>) {
        self.sent += 1;
        let n = self.sent;
        self.latest.send_replace(Some((n, cfg)));
        if let Some(done) = done {
            let mut finished = self.finished.clone();
            tokio::spawn(async move {
                let _ = finished.wait_for(|f| *f >= n).await;
                let _ = done.send(());
            });
        }
    }
}

async fn watch(
    sup: Supervisor,
    reload: impl Fn() -> Result<Config, ConfigErrors>,
    mut requests: ReloadRequests,
    stop: CancellationToken,
    mut recycle: Recycle,
) {
    let mut cfg = sup.config();
    // What start-up used, for the settings only a restart changes.
    let initial = cfg.clone();
    let mut files = watched(&cfg);
    let mut last = stamp(&files);
    let mut offline: Option<Bytes> = None;
    loop {
        let mut asked = None;
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            Some(done) = requests.0.recv() => asked = Some(done),
            _ = stop.cancelled() => return,
        }

        let now_offline = read_offline(&cfg.site_root);
        if now_offline != offline {
            match &now_offline {
                Some(page) => sup.set_offline(page.clone()).await,
                None => sup.set_online(cfg.clone()),
            }
            offline = now_offline;
        }

        if asked.is_none() && !settled_change(&files, &mut last).await {
            continue;
        }
        match reload() {
            Ok(new_cfg) => {
                warn_restart_only(&initial, &new_cfg);
                tracing::info!("configuration changed: recycling the app");
                cfg = Arc::new(new_cfg);
                files = watched(&cfg);
                last = stamp(&files);
                if offline.is_none() {
                    // The recycler works meanwhile; keep watching.
                    recycle.send(cfg.clone(), asked);
                }
            }
            Err(errors) => {
                tracing::error!(
                    "configuration changed but has errors; still running the old one:\n{errors}"
                );
            }
        }
    }
}

/// True when the watched files changed and then stayed unchanged for a
/// poll (a writer has finished); `last` then holds their new stamp.
async fn settled_change(files: &[PathBuf], last: &mut Stamp) -> bool {
    let current = stamp(files);
    if current == *last {
        return false;
    }
    tokio::time::sleep(POLL).await;
    let settled = stamp(files);
    if settled != current {
        return false;
    }
    *last = settled;
    true
}

/// Names each setting that differs from what hpgate started with and is read
/// only at start-up. Everything else
/// applies with the new processes (and, for connection settings, to the
/// connections accepted after the switch).
fn warn_restart_only(old: &Config, new: &Config) {
    // Which settings these are is declared in config/settings.rs (`restart: true`).
    for (name, was, now) in old.restart_only_changes(new) {
        tracing::warn!(
            "{name} changed ({was} -> {now}) but takes effect only when hpgate restarts; still using {was}"
        );
    }
}
