//! The app's stdout and stderr: kept as a 64 KiB tail for error pages,
//! written to the stdout log file when enabled (continued in a new file at
//! `stdoutLogMaxBytes`, at most `stdoutLogMaxFiles` kept), and forwarded
//! line by line to hpgate's own log at debug level (lines cut at
//! [`DEBUG_LINE_BYTES`], at most [`DEBUG_LINES_PER_SEC`] a second).
//!
//! Owns the log files' names, creation and rotation. It must not decide
//! what happens to the process; a failed log file never stops the app.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt};

/// How much output each process keeps in memory for error pages.
pub const TAIL_BYTES: usize = 64 * 1024;
/// Lines shown on an error page.
pub const TAIL_LINES: usize = 30;
/// Longest app output line copied into hpgate's debug log.
pub const DEBUG_LINE_BYTES: usize = 2048;
/// App output lines per second and process copied into the debug log.
pub const DEBUG_LINES_PER_SEC: u32 = 200;
/// The window [`DEBUG_LINES_PER_SEC`] is counted over.
const DEBUG_WINDOW: Duration = Duration::from_secs(1);
/// One read from an app's stdout or stderr: a pipe's usual chunk.
const READ_BUF: usize = 8192;

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

/// `<prefix>_<YYYYMMDDhhmmss>_<pid>.log`, UTC, as ANCM names them; the
/// files that continue it (`seq` 1, 2, ...) end in `.<seq>.log`.
pub fn log_file_name(prefix: &Path, started: SystemTime, pid: u32, seq: u64) -> PathBuf {
    let stamp = time::OffsetDateTime::from(started)
        .format(time::macros::format_description!(
            "[year][month][day][hour][minute][second]"
        ))
        .unwrap_or_else(|_| "00000000000000".into());
    let mut name = prefix.as_os_str().to_owned();
    match seq {
        0 => name.push(format!("_{stamp}_{pid}.log")),
        n => name.push(format!("_{stamp}_{pid}.{n}.log")),
    }
    PathBuf::from(name)
}

/// One process's stdout log: a series of files of at most `max_bytes`,
/// of which the newest `max_files` are kept.
pub struct LogFile {
    prefix: PathBuf,
    started: SystemTime,
    pid: u32,
    max_bytes: u64,
    max_files: usize,
    seq: u64,
    file: std::fs::File,
    written: u64,
    /// Files of this series on disk, oldest first (the current one last).
    kept: VecDeque<PathBuf>,
}

impl LogFile {
    /// Creates the first file of the series; the error is a sentence.
    pub fn open(
        prefix: &Path,
        started: SystemTime,
        pid: u32,
        max_bytes: u64,
        max_files: u64,
    ) -> Result<LogFile, String> {
        let path = log_file_name(prefix, started, pid, 0);
        let file = open_log_file(&path)?;
        Ok(LogFile {
            prefix: prefix.to_path_buf(),
            started,
            pid,
            max_bytes: max_bytes.max(1),
            max_files: usize::try_from(max_files).unwrap_or(usize::MAX).max(1),
            seq: 0,
            file,
            written: 0,
            kept: VecDeque::from([path]),
        })
    }

    pub fn path(&self) -> &Path {
        self.kept
            .back()
            .map(PathBuf::as_path)
            .unwrap_or(&self.prefix)
    }

    /// Appends `bytes`, first moving to a new file if they would not fit
    /// (a chunk is far smaller than the smallest `max_bytes`).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.written > 0 && self.written + bytes.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file
            .write_all(bytes)
            .map_err(|e| format!("stdout log write failed: {e}"))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Deletes the oldest files first, so there are never more than
    /// `max_files` on disk, then starts the next one.
    fn rotate(&mut self) -> Result<(), String> {
        while self.kept.len() >= self.max_files {
            if let Some(old) = self.kept.pop_front() {
                // Already gone (removed by hand) is fine.
                let _ = std::fs::remove_file(old);
            }
        }
        self.seq += 1;
        let path = log_file_name(&self.prefix, self.started, self.pid, self.seq);
        self.file = open_log_file(&path)?;
        self.kept.push_back(path);
        self.written = 0;
        Ok(())
    }
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
    mut file: Option<LogFile>,
) {
    let mut out = Stream::new(stdout, "stdout");
    let mut err = Stream::new(stderr, "stderr");
    let mut debug = DebugLines::new(Instant::now());
    while !(out.done && err.done) {
        // Lines held back are reported once their second is over, even if
        // the app then goes quiet.
        let report = debug.report_at();
        let (chunk, name) = tokio::select! {
            c = out.next(), if !out.done => (c, out.name),
            c = err.next(), if !err.done => (c, err.name),
            _ = tokio::time::sleep_until(report.unwrap_or_else(Instant::now).into()), if report.is_some() => {
                debug.flush(pid);
                continue;
            }
        };
        let Some(chunk) = chunk else { continue };
        tail.push(chunk.bytes());
        if let Some(f) = file.as_mut() {
            // A full disk must not stop the app; say it once and stop writing.
            if let Err(e) = f.write(chunk.bytes()) {
                tracing::warn!(pid, "{e}; no more output is saved to the file");
                file = None;
            }
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            for line in String::from_utf8_lossy(chunk.bytes()).lines() {
                debug.line(pid, name, line, Instant::now());
            }
        }
    }
    debug.flush(pid);
}

/// Copies app output lines into the debug log without letting a chatty
/// app flood it: long lines are cut, and past the per-second budget lines
/// are only counted, then reported as one line.
struct DebugLines {
    second: Instant,
    shown: u32,
    skipped: u64,
}

impl DebugLines {
    fn new(now: Instant) -> Self {
        DebugLines {
            second: now,
            shown: 0,
            skipped: 0,
        }
    }

    fn line(&mut self, pid: u32, stream: &str, line: &str, now: Instant) {
        if now.duration_since(self.second) >= DEBUG_WINDOW {
            self.flush(pid);
            self.second = now;
            self.shown = 0;
        }
        if self.shown >= DEBUG_LINES_PER_SEC {
            self.skipped += 1;
            return;
        }
        self.shown += 1;
        let (cut, rest) = cut_line(line);
        if rest == 0 {
            tracing::debug!(pid, stream, "app: {cut}");
        } else {
            tracing::debug!(pid, stream, "app: {cut}... ({rest} more bytes)");
        }
    }

    /// When the count of lines held back is due in the log.
    fn report_at(&self) -> Option<Instant> {
        (self.skipped > 0).then(|| self.second + DEBUG_WINDOW)
    }

    fn flush(&mut self, pid: u32) {
        if self.skipped > 0 {
            tracing::debug!(
                pid,
                "{} app output lines not shown in the debug log (over {DEBUG_LINES_PER_SEC} lines a second; the stdout log file has them all)",
                self.skipped
            );
            self.skipped = 0;
        }
    }
}

/// The first [`DEBUG_LINE_BYTES`] of a line (at a character boundary) and
/// how many bytes were left out.
fn cut_line(line: &str) -> (&str, usize) {
    if line.len() <= DEBUG_LINE_BYTES {
        return (line, 0);
    }
    let mut end = DEBUG_LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    (&line[..end], line.len() - end)
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
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
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
        let p = log_file_name(Path::new("/srv/logs/python"), t, 42, 0);
        assert_eq!(p, PathBuf::from("/srv/logs/python_20231114221320_42.log"));
        let p = log_file_name(Path::new("/srv/logs/python"), t, 42, 3);
        assert_eq!(p, PathBuf::from("/srv/logs/python_20231114221320_42.3.log"));
    }

    #[test]
    fn long_lines_are_cut_at_a_char_boundary() {
        assert_eq!(cut_line("short"), ("short", 0));
        let long = format!("{}é{}", "a".repeat(DEBUG_LINE_BYTES - 1), "b".repeat(10));
        let (cut, rest) = cut_line(&long);
        assert_eq!(cut.len(), DEBUG_LINE_BYTES - 1);
        assert_eq!(rest, 12);
    }

    #[test]
    fn debug_lines_keep_to_the_budget() {
        let t0 = Instant::now();
        let mut d = DebugLines::new(t0);
        for _ in 0..(DEBUG_LINES_PER_SEC + 50) {
            d.line(1, "stdout", "x", t0);
        }
        assert_eq!(d.skipped, 50);
        d.line(1, "stdout", "x", t0 + std::time::Duration::from_secs(1));
        assert_eq!((d.skipped, d.shown), (0, 1));
    }
}
