//! systemd integration: readiness notifications to `$NOTIFY_SOCKET`
//! (`Type=notify`: READY, RELOADING, STOPPING, WATCHDOG) and socket
//! activation (listeners passed in `LISTEN_FDS`, named by
//! `LISTEN_FDNAMES`). Without those variables, and on Windows, every part
//! is a no-op.
//!
//! Owns reading (and then removing) systemd's variables, so the app
//! processes neither inherit them nor the passed sockets. It must not
//! decide when to notify: `lifecycle.rs` does.

use std::time::Duration;

/// A socket systemd passed in, with its name (`FileDescriptorName=`;
/// systemd names unnamed ones after the socket unit).
pub struct Passed {
    pub listener: std::net::TcpListener,
    pub name: String,
}

impl Passed {
    /// A socket named `https` terminates TLS.
    pub fn is_https(&self) -> bool {
        self.name == "https"
    }
}

/// What systemd gave this process.
#[derive(Default)]
pub struct Systemd {
    /// `$NOTIFY_SOCKET`: a path, or an abstract name starting with '@'.
    notify_socket: Option<String>,
    /// Half of `WATCHDOG_USEC`, when the watchdog is meant for us.
    watchdog: Option<Duration>,
    /// The sockets of socket activation (empty: bind our own).
    pub passed: Vec<Passed>,
}

impl Systemd {
    /// Reads systemd's variables and removes them from the environment.
    /// Call it before any thread starts (removing a variable is not
    /// thread-safe). Err names a passed descriptor that is no TCP listener.
    pub fn from_env() -> Result<Systemd, String> {
        let take = |name: &str| {
            let v = std::env::var(name).ok().filter(|v| !v.is_empty());
            std::env::remove_var(name);
            v
        };
        let notify_socket = take("NOTIFY_SOCKET");
        let usec = take("WATCHDOG_USEC");
        let pid = take("WATCHDOG_PID");
        let names = take("LISTEN_FDNAMES");
        Ok(Systemd {
            notify_socket,
            watchdog: watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id()),
            passed: imp::passed(names.as_deref())?,
        })
    }

    /// Sends `state` (e.g. "READY=1") to systemd, if it listens. A failure
    /// is logged, not fatal: serving matters more than telling.
    pub fn notify(&self, state: &str) {
        let Some(socket) = &self.notify_socket else {
            return;
        };
        if let Err(e) = imp::send(socket, state) {
            tracing::warn!("cannot notify systemd at {socket} ({state}): {e}");
        }
    }

    /// How often to send WATCHDOG=1: half of WATCHDOG_USEC, as systemd
    /// recommends, so one late tick does not get hpgate killed.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }
}

/// Half of `usec` when the watchdog applies to `our_pid` (WATCHDOG_PID
/// unset or equal to it).
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.parse::<u32>().ok() != Some(our_pid)) {
        return None;
    }
    let usec: u64 = usec?.parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

#[cfg(unix)]
mod imp {
    use std::io;
    use std::os::unix::net::UnixDatagram;

    use nix::sys::socket::sockopt;

    use super::Passed;

    pub fn send(socket: &str, state: &str) -> io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        match socket.strip_prefix('@') {
            Some(name) => send_abstract(&sock, name, state),
            None => sock.send_to(state.as_bytes(), socket).map(|_| ()),
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn send_abstract(sock: &UnixDatagram, name: &str, state: &str) -> io::Result<()> {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr).map(|_| ())
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn send_abstract(_: &UnixDatagram, _: &str, _: &str) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "abstract socket names exist only on Linux",
        ))
    }

    /// The passed sockets (listenfd checks LISTEN_PID, that each is a TCP
    /// socket, and marks it close-on-exec; it also removes LISTEN_FDS and
    /// LISTEN_PID).
    pub fn passed(names: Option<&str>) -> Result<Vec<Passed>, String> {
        let mut fds = listenfd::ListenFd::from_env();
        let names: Vec<&str> = names.map(|n| n.split(':').collect()).unwrap_or_default();
        let mut out = Vec::new();
        for i in 0..fds.len() {
            let fd = i + 3;
            let listener = fds
                .take_tcp_listener(i)
                .map_err(|e| format!("socket activation: passed descriptor {fd}: {e}"))?
                .ok_or_else(|| format!("socket activation: passed descriptor {fd} is missing"))?;
            // Accept=yes passes a connected socket, which would only fail at accept().
            let listening = nix::sys::socket::getsockopt(&listener, sockopt::AcceptConn);
            if !listening.unwrap_or(false) {
                return Err(format!("socket activation: passed descriptor {fd} is not a listening socket (Accept=yes is not supported; use Accept=no)"));
            }
            let name = names.get(i).copied().unwrap_or("unknown").to_string();
            out.push(Passed { listener, name });
        }
        Ok(out)
    }
}

#[cfg(windows)]
mod imp {
    use super::Passed;

    pub fn send(_: &str, _: &str) -> std::io::Result<()> {
        Ok(())
    }

    pub fn passed(_: Option<&str>) -> Result<Vec<Passed>, String> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_is_half_the_interval_and_only_for_us() {
        let half = Some(Duration::from_millis(200));
        assert_eq!(watchdog_interval(Some("400000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("400000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("400000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[cfg(unix)]
    #[test]
    fn notify_sends_one_datagram_to_a_path() {
        let dir = std::env::temp_dir().join(format!("hpgate-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        let sd = Systemd {
            notify_socket: Some(path.to_string_lossy().into_owned()),
            ..Default::default()
        };
        sd.notify("READY=1");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
