//! Why no process can serve, in words a user can act on.
//!
//! Owns the failure causes and their messages. The proxy renders them as
//! error pages (`proxy/error.rs`); this file must not know about HTTP.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One failed start or crash, with what the process printed last.
#[derive(Debug, Clone)]
pub struct Failure {
    pub cause: Cause,
    /// The last lines of the process's output (empty when it printed nothing).
    pub output_tail: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Cause {
    #[error("could not start {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("the process (pid {pid}) exited with {status} before listening on port {port}")]
    ExitedEarly { pid: u32, status: String, port: u16 },
    #[error("the process (pid {pid}) was not listening on 127.0.0.1:{port} after {secs} s (startupTimeLimit){detail}")]
    NotListening {
        pid: u32,
        port: u16,
        secs: u64,
        detail: String,
    },
    #[error("the process (pid {pid}) exited with {status} after running for {}; it is being restarted", human(*.uptime))]
    Crashed {
        pid: u32,
        status: String,
        uptime: Duration,
    },
    #[error("gave up after {attempts} failed start attempts (startupRetryCount); the next request tries again. Last: {last}")]
    GaveUp { attempts: u64, last: Box<Cause> },
    #[error("the app is still starting after {secs} s; try again shortly (raise startupTimeLimit if it needs longer)")]
    StillStarting { secs: u64 },
    #[error("too many crashes: {count} in the last minute (rapidFailsPerMinute is {limit}); next try at {} UTC", clock(*.next_try))]
    TooManyCrashes {
        count: u64,
        limit: u64,
        next_try: SystemTime,
    },
}

impl Cause {
    /// A short stable name for metrics labels and /status.
    pub fn kind(&self) -> &'static str {
        match self {
            Cause::Spawn { .. } => "spawn_failed",
            Cause::ExitedEarly { .. } => "exited_early",
            Cause::NotListening { .. } => "not_listening",
            Cause::Crashed { .. } => "crashed",
            Cause::GaveUp { .. } => "gave_up",
            Cause::StillStarting { .. } => "still_starting",
            Cause::TooManyCrashes { .. } => "too_many_crashes",
        }
    }

    /// True for a process that ended or never started (not a verdict
    /// about several attempts).
    pub fn is_exit(&self) -> bool {
        matches!(
            self,
            Cause::Spawn { .. }
                | Cause::ExitedEarly { .. }
                | Cause::NotListening { .. }
                | Cause::Crashed { .. }
        )
    }
}

impl Failure {
    pub fn new(cause: Cause, output_tail: String) -> Arc<Failure> {
        Arc::new(Failure { cause, output_tail })
    }
}

/// Describes a spawn error with the fix for the common cases; on Windows
/// with the HRESULT IIS shows for the same failure (0x80070005 for access
/// denied), the code users search for.
pub fn spawn_reason(err: &io::Error) -> String {
    let win32 = if cfg!(windows) {
        err.raw_os_error()
    } else {
        None
    };
    reason_for(err.kind(), err.to_string(), win32)
}

fn reason_for(kind: io::ErrorKind, text: String, win32: Option<i32>) -> String {
    let reason = match kind {
        io::ErrorKind::NotFound => "no such file (check processPath: a bare name is looked up in the site root, then on PATH; a script's #! interpreter must exist too)".into(),
        io::ErrorKind::PermissionDenied => "permission denied (the account running hpgate needs read and execute access to the interpreter and its whole folder)".into(),
        _ => text,
    };
    match win32 {
        Some(code @ 1..=0xFFFF) => format!("{reason} [0x{:08X}]", 0x8007_0000 | code as u32),
        _ => reason,
    }
}

/// `HH:MM:SS` of a wall-clock time, UTC.
pub fn clock(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_fix() {
        let e = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(spawn_reason(&e).contains("read and execute access"));
        // Windows' ERROR_ACCESS_DENIED (wine cannot produce it: see docs/windows.md).
        let denied = reason_for(io::ErrorKind::PermissionDenied, String::new(), Some(5));
        assert!(denied.starts_with("permission denied ("), "{denied}");
        assert!(denied.ends_with(") [0x80070005]"), "{denied}");
        let c = Cause::TooManyCrashes {
            count: 11,
            limit: 10,
            next_try: SystemTime::UNIX_EPOCH + Duration::from_secs(3600 + 62),
        };
        assert_eq!(
            c.to_string(),
            "too many crashes: 11 in the last minute (rapidFailsPerMinute is 10); next try at 01:01:02 UTC"
        );
    }
}
