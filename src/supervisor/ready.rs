//! Readiness: the process is ready once 127.0.0.1:PORT accepts a TCP
//! connection. Polled every 10 ms (the original polls every 250 ms); the
//! attempt fails at once if the process exits first.
//!
//! Owns the "why it never got ready" diagnosis (IPv6-only listener, wrong
//! port, nothing at all). It must not kill or restart anything.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::time::{sleep, timeout, Instant};

use super::failure::Cause;
use super::os;

/// How often a starting process is probed: short, because every request
/// waiting for it waits this much longer than needed.
const POLL: Duration = Duration::from_millis(10);
/// A loopback connect answers at once unless the backlog is full; past this
/// the probe counts as "not yet" and tries again.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// Waits for the listener. `limit` of zero means no limit.
pub async fn wait_ready(
    child: &mut Child,
    pid: u32,
    port: u16,
    limit: Duration,
) -> Result<(), Cause> {
    let deadline = (!limit.is_zero()).then(|| Instant::now() + limit);
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Ok(Ok(_)) = timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Cause::NotListening {
                pid,
                port,
                secs: limit.as_secs(),
                detail: diagnose(pid, port).await,
            });
        }
        tokio::select! {
            status = child.wait() => {
                return Err(Cause::ExitedEarly {
                    pid,
                    status: describe_status(status),
                    port,
                });
            }
            _ = sleep(POLL) => {}
        }
    }
}

/// Explains a process that never listened on 127.0.0.1:PORT.
async fn diagnose(pid: u32, port: u16) -> String {
    elsewhere(pid, port).await.unwrap_or_else(|| {
        "; it is not listening on any TCP port yet (if it needs longer to start, raise startupTimeLimit)"
            .into()
    })
}

/// Where the process listens instead of 127.0.0.1:PORT (IPv6 only, or
/// other ports), as the tail of a [`Cause::NotListening`] sentence; None
/// when it listens nowhere yet.
async fn elsewhere(pid: u32, port: u16) -> Option<String> {
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    if let Ok(Ok(_)) = timeout(CONNECT_TIMEOUT, TcpStream::connect(v6)).await {
        return Some(format!(
            ": it listens on [::1]:{port} (IPv6) only; make it listen on 127.0.0.1 (for waitress: --listen 127.0.0.1:%HTTP_PLATFORM_PORT%)"
        ));
    }
    let others = os::listening_addrs(pid);
    if others.is_empty() {
        return None;
    }
    let list: Vec<String> = others.iter().map(|a| a.to_string()).collect();
    Some(format!(
        ": it listens on {} instead; pass %HTTP_PLATFORM_PORT% in arguments (for example --port %HTTP_PLATFORM_PORT%) or read the HTTP_PLATFORM_PORT environment variable",
        list.join(", ")
    ))
}

/// Resolves once the process listens somewhere, but still not on
/// 127.0.0.1:PORT after a second look, with the same diagnosis as a start
/// that timed out: `hpgate check` need not wait out startupTimeLimit.
pub async fn listens_elsewhere(pid: u32, port: u16) -> String {
    const LOOK: Duration = Duration::from_millis(250);
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let mut seen = false;
    loop {
        sleep(LOOK).await;
        let here = matches!(
            timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await,
            Ok(Ok(_))
        );
        match elsewhere(pid, port).await {
            // Seen twice in a row: an app that binds the handed port after
            // another one (a debug port) had its chance.
            Some(detail) if seen && !here => return detail,
            Some(_) if !here => seen = true,
            _ => seen = false,
        }
    }
}

/// "exit code 1" / "signal 9 (SIGKILL)".
pub fn describe_status(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => {
            if let Some(code) = s.code() {
                return format!("exit code {code}");
            }
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                if let Some(sig) = s.signal() {
                    let name = nix::sys::signal::Signal::try_from(sig)
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default();
                    return format!("signal {sig} ({name})");
                }
            }
            s.to_string()
        }
        Err(e) => format!("an unknown status ({e})"),
    }
}
