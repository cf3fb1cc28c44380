//! Watches the site folder: `app_offline.htm` (take the app offline while it
//! exists) and web.config plus `<recycleOnFileChange>` files (recycle on
//! change). Polls every 250 ms: portable, cheap for a handful of files, and
//! immune to editors that replace files instead of writing them.
//!
//! Owns change detection and the reload decision. It must not start or stop
//! processes itself; it asks the [`Supervisor`], through one recycler task
//! so that recycles never overlap and the last edit wins.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;
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

/// Runs until `stop` is cancelled.
pub async fn run(
    sup: Supervisor,
    reload: impl Fn() -> Result<Config, ConfigErrors>,
    stop: CancellationToken,
) {
    let (latest, wanted) = watch::channel(None);
    let recycler = tokio::spawn(recycle_latest(sup.clone(), wanted));
    watch(sup, reload, stop, &latest).await;
    // Closing the channel abandons a recycle still waiting for its processes.
    drop(latest);
    let _ = recycler.await;
}

/// Recycles to each configuration sent, one at a time. A newer one abandons
/// a recycle whose processes are still starting, so however edits overlap,
/// the last one ends up serving.
async fn recycle_latest(sup: Supervisor, mut wanted: watch::Receiver<Option<Arc<Config>>>) {
    while wanted.changed().await.is_ok() {
        let Some(cfg) = wanted.borrow_and_update().clone() else {
            continue;
        };
        let mut newer = wanted.clone();
        sup.recycle(cfg, async move {
            let _ = newer.changed().await;
        })
        .await;
    }
}

async fn watch(
    sup: Supervisor,
    reload: impl Fn() -> Result<Config, ConfigErrors>,
    stop: CancellationToken,
    recycle: &watch::Sender<Option<Arc<Config>>>,
) {
    let mut cfg = sup.config();
    // What start-up used, for the settings only a restart changes.
    let initial = cfg.clone();
    let mut files = watched(&cfg);
    let mut last = stamp(&files);
    let mut offline: Option<Bytes> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
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

        let current = stamp(&files);
        if current == last {
            continue;
        }
        // Let a writer finish: act once the files have stopped changing.
        tokio::time::sleep(POLL).await;
        let settled = stamp(&files);
        if settled != current {
            continue;
        }
        last = settled;
        match reload() {
            Ok(new_cfg) => {
                warn_restart_only(&initial, &new_cfg);
                tracing::info!("configuration changed: recycling the app");
                cfg = Arc::new(new_cfg);
                files = watched(&cfg);
                last = stamp(&files);
                if offline.is_none() {
                    // The recycler works meanwhile; keep watching.
                    recycle.send_replace(Some(cfg.clone()));
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
