//! Check 12: a trial start. The app is started once the way `hpgate run`
//! starts it (the supervisor's own spawn, readiness and diagnosis), given
//! up to startupTimeLimit, timed, looked at (its first output, Socket.IO),
//! and stopped with everything it started; then, for a Socket.IO app that
//! offers the WebSocket upgrade, the WebSocket through hpgate (socketio).

use std::time::Duration;

use crate::config::Config;
use crate::supervisor::{Cause, Trial};

use super::access::Account;
use super::output::{self, recognize};
use super::python::Installation;
use super::report::Report;
use super::socketio;

pub const NAME: &str = "start";

/// The longest a check waits when startupTimeLimit is 0 (no limit).
const UNLIMITED_CAP: Duration = Duration::from_secs(60);
/// Output that has been quiet this long is taken as the start-up banner.
const QUIET: Duration = Duration::from_millis(200);
const QUIET_MAX: Duration = Duration::from_millis(1500);
/// Last output lines quoted in a failed start's line.
const QUOTED_LINES: usize = 6;

/// What the trial start found.
#[derive(Debug)]
pub enum Outcome {
    NotRun,
    Ready {
        port: u16,
    },
    /// It listened on the port it was handed, but on [::1] only.
    Ipv6Only {
        port: u16,
    },
    /// It listened, but not on the port it was handed.
    Elsewhere {
        detail: String,
    },
    Failed,
}

pub async fn check(
    cfg: &Config,
    account: &Account,
    python: Option<&Installation>,
    report: &mut Report,
) -> Outcome {
    let mut trial = match Trial::start(cfg) {
        Ok(t) => t,
        Err(cause) => {
            report.fail(
                NAME,
                cause.to_string(),
                "fix processPath (see the program check)",
            );
            return Outcome::NotRun;
        }
    };
    let limit = match cfg.startup_time_limit {
        Duration::ZERO => UNLIMITED_CAP,
        l => l,
    };
    let port = trial.port();
    let result = trial.ready(limit).await;
    let mut upgrade = None;
    let outcome = match result {
        Ok(after) => {
            let _ = trial.output_settled(QUIET, QUIET_MAX).await;
            ready_line(cfg, account, trial.pid(), after, limit, report);
            upgrade = socketio::check(cfg, port, report).await;
            Outcome::Ready { port }
        }
        Err(cause) => {
            let out = trial.final_output().await;
            failed_line(&cause, &out, report);
            match cause {
                Cause::NotListening { detail, .. } if detail.contains("(IPv6) only") => {
                    Outcome::Ipv6Only { port }
                }
                Cause::NotListening { detail, .. } if detail.starts_with(": it listens") => {
                    Outcome::Elsewhere { detail }
                }
                _ => Outcome::Failed,
            }
        }
    };
    let out = trial.stop(cfg.shutdown_time_limit).await;
    output_lines(&out, python, report);
    // One app at a time: the WebSocket goes through hpgate to its own.
    if let Some(up) = upgrade {
        socketio::through_hpgate(cfg, up, limit, report).await;
    }
    outcome
}

fn ready_line(
    cfg: &Config,
    account: &Account,
    pid: u32,
    after: Duration,
    limit: Duration,
    report: &mut Report,
) {
    let who = match account {
        Account::Current { .. } => String::new(),
        #[cfg(unix)]
        Account::Other { name, .. } => {
            format!(" (started as the account running this check, not as {name})")
        }
    };
    let msg = format!(
        "the app (pid {pid}) was ready on its port after {:.2} s (startupTimeLimit is {} s){who}",
        after.as_secs_f64(),
        cfg.startup_time_limit.as_secs()
    );
    if after * 2 > limit {
        report.warn(
            NAME,
            msg,
            "raise startupTimeLimit: a loaded machine starts the app slower",
        );
    } else {
        report.ok(NAME, msg);
    }
}

fn failed_line(cause: &Cause, out: &str, report: &mut Report) {
    let lines: Vec<&str> = out.lines().collect();
    let last = lines[lines.len().saturating_sub(QUOTED_LINES)..].join("\n           | ");
    let quoted = if last.is_empty() {
        " (it printed nothing)".to_string()
    } else {
        format!("; last output:\n           | {last}")
    };
    // Found listening elsewhere before the limit: not "after N s".
    let what = match cause {
        Cause::NotListening {
            pid, port, detail, ..
        } if detail.starts_with(": it listens") => {
            format!("the process (pid {pid}) is not listening on 127.0.0.1:{port}{detail}")
        }
        _ => cause.to_string(),
    };
    let fix = match cause {
        Cause::NotListening { detail, .. } if detail.contains("(IPv6) only") => {
            "make the app listen on 127.0.0.1 (not localhost or ::1), on the handed port"
        }
        Cause::NotListening { detail, .. } if detail.starts_with(": it listens") => {
            "make the app listen on 127.0.0.1:%HTTP_PLATFORM_PORT% (see the port check)"
        }
        Cause::NotListening { .. } => {
            "raise startupTimeLimit if the app needs longer to start, or see its output"
        }
        _ => "read the app's output above (and the output check below)",
    };
    report.fail(NAME, format!("{what}{quoted}"), fix);
}

fn output_lines(out: &str, python: Option<&Installation>, report: &mut Report) {
    let found = recognize(out, python);
    if found.is_empty() {
        report.ok(output::NAME, "no known problem in the app's output");
    }
    for f in found {
        report.add(output::NAME, f.status, f.message, Some(f.fix));
    }
}
