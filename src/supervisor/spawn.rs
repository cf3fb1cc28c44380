//! Starting one app process: its port, command line, environment, working
//! directory, output capture and OS guard.
//!
//! Owns the child's launch contract (HTTP_PLATFORM_PORT, the placeholder,
//! HTTP_PLATFORM_APPL_PATH, site root as working directory). It must not
//! wait for readiness or decide about restarts (`ready.rs`, `slot.rs`).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::failure::{spawn_reason, Cause};
use super::os::{self, Guard, Watchdog};
use super::output::{self, Tail};
use crate::config::{Config, PORT_PLACEHOLDER};

/// A process that has been started (not necessarily ready).
pub struct Started {
    pub child: Child,
    pub pid: u32,
    pub guard: Guard,
    pub tail: Arc<Tail>,
    pub capture: JoinHandle<()>,
    pub started_at: Instant,
}

/// Picks a free loopback port by letting the OS choose one. The listener is
/// dropped at once; the small race with other programs is the same one
/// every port hand-over (IIS included) accepts.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// Replaces every `%HTTP_PLATFORM_PORT%` with the port, without padding.
pub fn fill_port(s: &str, port: u16) -> String {
    s.replace(PORT_PLACEHOLDER, &port.to_string())
}

pub fn spawn(cfg: &Config, port: u16, watchdog: &Arc<Watchdog>) -> Result<Started, Cause> {
    let mut cmd = Command::new(&cfg.process_path);
    cmd.args(cfg.argv.iter().map(|a| fill_port(a, port)))
        .env("HTTP_PLATFORM_PORT", port.to_string())
        .env("HTTP_PLATFORM_APPL_PATH", "/")
        .envs(
            cfg.environment_variables
                .iter()
                .map(|(k, v)| (k, fill_port(v, port))),
        )
        .current_dir(&cfg.site_root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    os::prepare(&mut cmd);

    let (mut child, pid, guard) =
        os::spawn(&mut cmd, port, watchdog).map_err(|e| Cause::Spawn {
            program: cfg.process_path.clone(),
            reason: spawn_reason(&e),
        })?;
    let started_at = Instant::now();

    let file = if cfg.stdout_log_enabled {
        let opened = output::LogFile::open(
            &cfg.stdout_log_file,
            SystemTime::now(),
            pid,
            cfg.stdout_log_max_bytes,
            cfg.stdout_log_max_files,
        );
        match opened {
            Ok(f) => {
                tracing::info!(pid, file = %f.path().display(), "app output goes to the stdout log file");
                Some(f)
            }
            Err(msg) => {
                tracing::warn!(pid, "{msg}");
                None
            }
        }
    } else {
        None
    };

    let tail = Arc::new(Tail::default());
    let capture = match (child.stdout.take(), child.stderr.take()) {
        (Some(out), Some(err)) => tokio::spawn(output::capture(pid, out, err, tail.clone(), file)),
        _ => tokio::spawn(async {}),
    };
    tracing::info!(pid, port, program = %cfg.process_path, "started app process");
    Ok(Started {
        child,
        pid,
        guard,
        tail,
        capture,
        started_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_every_placeholder_without_padding() {
        assert_eq!(
            fill_port("--port %HTTP_PLATFORM_PORT% --x=%HTTP_PLATFORM_PORT%", 5001),
            "--port 5001 --x=5001"
        );
    }
}
