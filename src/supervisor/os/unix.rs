//! Unix: process groups, parent-death signal, and a watchdog process.
//!
//! Each app process leads its own process group, so a stop reaches its
//! workers too. Two mechanisms make sure nothing outlives hpgate, even when
//! it is killed with SIGKILL and runs no clean-up:
//! - the direct child gets PR_SET_PDEATHSIG (Linux), so the kernel kills it;
//! - a tiny watchdog (`hpgate __watchdog`, in its own group, deaf to
//!   signals) holds the read end of a pipe listing live groups; when hpgate
//!   dies the pipe closes and the watchdog kills every group still listed.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Sets up a command so the child leads a new process group and, on Linux,
/// dies with hpgate.
pub fn prepare(cmd: &mut tokio::process::Command) {
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = nix::unistd::getpid();
        // SAFETY: the closure runs between fork and exec and only makes two
        // async-signal-safe system calls (prctl, getppid).
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // hpgate may have died before prctl took effect.
                if nix::unistd::getppid() != parent {
                    return Err(std::io::Error::other("hpgate exited during start"));
                }
                Ok(())
            });
        }
    }
}

/// Keeps one process group tied to hpgate's lifetime.
#[derive(Debug)]
pub struct Guard {
    pgid: Pid,
    watchdog: Arc<Watchdog>,
}

impl Guard {
    pub fn new(_child: &tokio::process::Child, pid: u32, watchdog: Arc<Watchdog>) -> Guard {
        let pgid = Pid::from_raw(pid as i32);
        watchdog.send(&format!("+{pgid}"));
        Guard { pgid, watchdog }
    }

    /// Asks every process in the group to stop (SIGTERM).
    pub fn terminate(&self) {
        let _ = killpg(self.pgid, Signal::SIGTERM);
    }

    /// Kills every process in the group (SIGKILL). Idempotent.
    pub fn kill(&self) {
        let _ = killpg(self.pgid, Signal::SIGKILL);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Whatever is left in the group once its leader is gone is an orphan.
        self.kill();
        self.watchdog.send(&format!("-{}", self.pgid));
    }
}

/// The pipe to the watchdog process (absent if it could not start).
#[derive(Debug, Default)]
pub struct Watchdog {
    pipe: Mutex<Option<std::process::ChildStdin>>,
}

impl Watchdog {
    pub fn start() -> Watchdog {
        let spawned = std::env::current_exe().and_then(|exe| {
            std::process::Command::new(exe)
                .arg("__watchdog")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .process_group(0)
                .spawn()
        });
        match spawned {
            Ok(mut child) => Watchdog {
                pipe: Mutex::new(child.stdin.take()),
            },
            Err(e) => {
                tracing::warn!("cannot start the watchdog process ({e}); app processes may outlive hpgate if it is killed with SIGKILL");
                Watchdog::default()
            }
        }
    }

    fn send(&self, line: &str) {
        if let Ok(mut pipe) = self.pipe.lock() {
            if let Some(p) = pipe.as_mut() {
                if writeln!(p, "{line}").is_err() {
                    *pipe = None;
                }
            }
        }
    }
}

/// Body of `hpgate __watchdog`: track groups until stdin closes, then kill
/// what is left.
pub fn run_watchdog() -> ExitCode {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
    // Blocked, these stay pending forever: the watchdog ends only on EOF.
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);

    let mut groups: Vec<i32> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (op, num) = line.split_at(line.len().min(1));
        let Ok(pgid) = num.trim().parse::<i32>() else {
            continue;
        };
        match op {
            "+" => groups.push(pgid),
            "-" => groups.retain(|g| *g != pgid),
            _ => {}
        }
    }
    for g in groups {
        let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
    }
    ExitCode::SUCCESS
}

/// TCP addresses that processes of group `pgid` listen on (Linux /proc;
/// empty elsewhere). Used only to explain a start that never got ready.
pub fn listening_addrs(pgid: u32) -> Vec<SocketAddr> {
    #[cfg(target_os = "linux")]
    {
        linux_listeners(pgid)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pgid;
        Vec::new()
    }
}

#[cfg(target_os = "linux")]
fn linux_listeners(pgid: u32) -> Vec<SocketAddr> {
    use std::collections::HashSet;
    use std::fs;

    let mut inodes = HashSet::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in procs.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // Field 5 of /proc/PID/stat is the process group; the command name
        // (field 2) may hold spaces, so count from the closing parenthesis.
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if after.split_whitespace().nth(2) != Some(&pgid.to_string()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    inodes.insert(inode.to_string());
                }
            }
        }
    }
    let mut found = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(table) = fs::read_to_string(file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // cols: sl local remote st ... inode(9)
            if cols.len() > 9 && cols[3] == "0A" && inodes.contains(cols[9]) {
                if let Some(addr) = parse_proc_addr(cols[1], v6) {
                    found.push(addr);
                }
            }
        }
    }
    found
}

/// Parses `0100007F:1F90` (IPv4) or the 32-hex-digit IPv6 form of /proc/net/tcp*.
#[cfg(target_os = "linux")]
fn parse_proc_addr(s: &str, v6: bool) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if !v6 {
        let raw = u32::from_str_radix(ip, 16).ok()?;
        return Some(SocketAddr::from((
            std::net::Ipv4Addr::from(raw.to_ne_bytes()),
            port,
        )));
    }
    if ip.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for w in 0..4 {
        let word = u32::from_str_radix(&ip[w * 8..w * 8 + 8], 16).ok()?;
        bytes[w * 4..w * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Some(SocketAddr::from((std::net::Ipv6Addr::from(bytes), port)))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_addresses() {
        // Little-endian hosts store 127.0.0.1 as 0100007F.
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_proc_addr("0100007F:1F90", false),
                Some("127.0.0.1:8080".parse().unwrap())
            );
            assert_eq!(
                parse_proc_addr("00000000000000000000000001000000:0050", true),
                Some("[::1]:80".parse().unwrap())
            );
        }
    }

    #[test]
    fn finds_own_listener() {
        // A listener in this test process, found through our own group.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let pgid = nix::unistd::getpgrp().as_raw() as u32;
        assert!(listening_addrs(pgid).iter().any(|a| a.port() == port));
    }
}
