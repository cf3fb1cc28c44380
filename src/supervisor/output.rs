//! The app's stdout and stderr: kept as a 64 KiB tail for error pages,
//! written to the stdout log file when enabled, and forwarded line by line
//! to hpgate's own log at debug level.
//!
//! Owns the log file's name and creation. It must not decide what happens
//! to the process; a failed log file never stops the app.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncReadExt};

/// How much output each process keeps in memory for error pages.
pub const TAIL_BYTES: usize = 64 * 1024;
/// Lines shown on an error page.
pub const TAIL_LINES: usize = 30;

/// The last [`TAIL_BYTES`] of a process's combined output.
#[derive(Debug, Default)]
pub struct Tail {
    buf: Mutex<VecDeque<u8>>,
}

impl Tail {
    pub fn push(&self, bytes: &[u8]) {
        let Ok(mut buf) = self.buf.lock() else { return };
        let bytes = &bytes[bytes.len().saturating_sub(TAIL_BYTES)..];
        let overflow = (buf.len() + bytes.len()).saturating_sub(TAIL_BYTES);
        buf.drain(..overflow);
        buf.extend(bytes);
    }

    /// The last `lines` lines as text (lossy UTF-8).
    pub fn last_lines(&self, lines: usize) -> String {
        let Ok(buf) = self.buf.lock() else {
            return String::new();
        };
        let (a, b) = buf.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        let all: Vec<&str> = text.trim_end().lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// `<prefix>_<YYYYMMDDhhmmss>_<pid>.log`, UTC, as ANCM names them.
pub fn log_file_name(prefix: &Path, started: SystemTime, pid: u32) -> PathBuf {
    let stamp = time::OffsetDateTime::from(started)
        .format(time::macros::format_description!(
            "[year][month][day][hour][minute][second]"
        ))
        .unwrap_or_else(|_| "00000000000000".into());
    let mut name = prefix.as_os_str().to_owned();
    name.push(format!("_{stamp}_{pid}.log"));
    PathBuf::from(name)
}

/// Opens the log file, creating its folder. On failure, says why in a
/// sentence the user can act on; the caller logs it and carries on.
pub fn open_log_file(path: &Path) -> Result<std::fs::File, String> {
    if crate::config::is_windows_absolute(&path.to_string_lossy()) && cfg!(unix) {
        return Err(format!(
            "cannot create stdout log file {}: it is a Windows path; set stdoutLogFile to a path on this system (for example \".\\logs\\python\"). The app keeps running without a log file",
            path.display()
        ));
    }
    let create = || -> std::io::Result<std::fs::File> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    };
    create().map_err(|e| {
        format!(
            "cannot create stdout log file {}: {e} (the account running hpgate needs write access to its folder). The app keeps running without a log file",
            path.display()
        )
    })
}

/// Reads both pipes to the end, feeding the tail, the file and the log.
pub async fn capture(
    pid: u32,
    stdout: impl AsyncRead + Unpin,
    stderr: impl AsyncRead + Unpin,
    tail: Arc<Tail>,
    mut file: Option<std::fs::File>,
) {
    let mut out = Stream::new(stdout, "stdout");
    let mut err = Stream::new(stderr, "stderr");
    while !(out.done && err.done) {
        let (chunk, name) = tokio::select! {
            c = out.next(), if !out.done => (c, out.name),
            c = err.next(), if !err.done => (c, err.name),
        };
        let Some(chunk) = chunk else { continue };
        tail.push(chunk.bytes());
        if let Some(f) = file.as_mut() {
            // A full disk must not stop the app; say it once and stop writing.
            if let Err(e) = f.write_all(chunk.bytes()) {
                tracing::warn!(
                    pid,
                    "stdout log write failed: {e}; no more output is saved to the file"
                );
                file = None;
            }
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            for line in String::from_utf8_lossy(chunk.bytes()).lines() {
                tracing::debug!(pid, stream = name, "app: {line}");
            }
        }
    }
}

struct Chunk(Vec<u8>);

impl Chunk {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

struct Stream<R> {
    reader: R,
    name: &'static str,
    done: bool,
    buf: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> Stream<R> {
    fn new(reader: R, name: &'static str) -> Self {
        Stream {
            reader,
            name,
            done: false,
            buf: vec![0u8; 8192].into_boxed_slice(),
        }
    }

    async fn next(&mut self) -> Option<Chunk> {
        match self.reader.read(&mut self.buf).await {
            Ok(0) | Err(_) => {
                self.done = true;
                None
            }
            Ok(n) => Some(Chunk(self.buf[..n].to_vec())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let t = Tail::default();
        t.push(b"one\ntwo\n");
        t.push(&vec![b'x'; TAIL_BYTES]);
        t.push(b"\nlast\n");
        assert_eq!(t.last_lines(1), "last");
        assert!(!t.last_lines(10).contains("one"));
    }

    #[test]
    fn log_name_is_ancm_style() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let p = log_file_name(Path::new("/srv/logs/python"), t, 42);
        assert_eq!(p, PathBuf::from("/srv/logs/python_20231114221320_42.log"));
    }
}
