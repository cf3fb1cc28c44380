//! Reloads certificates when their files change, without a restart and
//! without dropping connections.
//!
//! Polls each source's files every second (like `supervisor/watch_files.rs`:
//! portable, and immune to the rename and symlink swaps that certbot and
//! deploy scripts use). A file's stamp is its resolved target path (symlinks
//! followed), modification time, size and, on Unix, inode, so both a
//! rename over the file and a link pointed elsewhere count as a change. A
//! change is loaded once the stamps have held still for one more poll (so a
//! half-done rotation, the chain renewed but not yet the key, is not
//! loaded). A source that then fails to load keeps serving its previous
//! certificates and the error, naming the file, is logged once; the next
//! change retries.
//!
//! Owns change detection and the swap. It must not decide which
//! certificate a handshake gets (`resolver.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::resolver::Resolver;
use super::CertSource;

/// How often the certificate files are looked at.
pub const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp {
    target: Option<PathBuf>,
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

pub(crate) type Stamp = Vec<(PathBuf, Option<FileStamp>)>;

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        target: std::fs::canonicalize(path).ok(),
        modified: m.modified().ok(),
        len: m.len(),
        inode: inode(&m),
    })
}

pub(crate) fn stamp(source: &CertSource) -> Stamp {
    source
        .files()
        .into_iter()
        .map(|f| {
            let s = file_stamp(&f);
            (f, s)
        })
        .collect()
}

/// Per source: the stamp last loaded (or tried) and a change seen once.
struct State {
    loaded: Vec<Stamp>,
    pending: Vec<Option<Stamp>>,
}

/// Runs until `stop` is cancelled, polling every [`POLL`].
pub async fn watch(resolver: Arc<Resolver>, stop: CancellationToken) {
    watch_every(resolver, POLL, stop).await
}

/// [`watch`] with another poll interval (tests).
pub async fn watch_every(resolver: Arc<Resolver>, poll: Duration, stop: CancellationToken) {
    // From the stamps taken before the first load, so that a change made
    // between loading and this task's start is not missed.
    let loaded: Vec<Stamp> = resolver.initial_stamps().to_vec();
    let pending = vec![None; loaded.len()];
    let mut state = State { loaded, pending };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
        // Stamping and loading touch the disk: keep them off the workers.
        let r = resolver.clone();
        state = match tokio::task::spawn_blocking(move || {
            step(&r, &mut state);
            state
        })
        .await
        {
            Ok(state) => state,
            Err(e) => {
                tracing::error!("certificate watcher stopped: {e}");
                return;
            }
        };
    }
}

fn step(resolver: &Resolver, state: &mut State) {
    for (i, source) in resolver.sources().iter().enumerate() {
        let now = stamp(source);
        if now == state.loaded[i] {
            state.pending[i] = None;
            continue;
        }
        if state.pending[i].as_ref() != Some(&now) {
            state.pending[i] = Some(now);
            continue;
        }
        state.pending[i] = None;
        state.loaded[i] = now;
        reload(resolver, i, source);
    }
}

fn reload(resolver: &Resolver, index: usize, source: &CertSource) {
    match source.load() {
        Ok(certs) => {
            let now = OffsetDateTime::now_utc();
            for c in &certs {
                tracing::info!(file = %c.file.display(), names = ?c.names, not_after = %c.not_after, "certificate reloaded");
                if let Some(w) = c.expiry_warning(now) {
                    tracing::warn!("{w}");
                }
            }
            resolver.replace(index, certs);
        }
        Err(e) => {
            resolver.count_failure();
            tracing::error!("certificate not reloaded: {e}; still serving the previous one");
        }
    }
}
