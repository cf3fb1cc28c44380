//! Unix: process groups, parent-death signal, and a watchdog process.
//!
//! Each app process leads its own process group, so a stop reaches its
//! workers too. Two mechanisms make sure nothing outlives hpgate, even when
//! it is killed with SIGKILL and runs no clean-up:
//! - the direct child gets PR_SET_PDEATHSIG (Linux), so the kernel kills it;
//! - a tiny watchdog (`hpgate __watchdog`, in its own group, deaf to
//!   signals) holds the read end of a pipe listing live groups; when hpgate
//!   dies the pipe closes and the watchdog kills every group still listed.
//!
//! Daemons that leave the group (double fork and `setsid`) are adopted on
//! Linux (`orphans.rs`): stopped with their app, and listed with the
//! watchdog too.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::orphans::{self, Adopted, Event, Family};

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

/// Starts the app under the family lock, so a scan never mistakes the new
/// child for an adopted orphan (and never reaps it), and ties it to hpgate.
pub fn spawn(
    cmd: &mut tokio::process::Command,
    port: u16,
    watchdog: &Arc<Watchdog>,
) -> std::io::Result<(tokio::process::Child, u32, Guard)> {
    let child = {
        let mut family = watchdog.inner.family();
        let child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0) as i32;
        family.own.insert(pid);
        family.apps.insert(pid, port);
        child
    };
    let pid = child.id().unwrap_or(0);
    let pgid = Pid::from_raw(pid as i32);
    watchdog.inner.send(&format!("+{pgid}"));
    let guard = Guard {
        pgid,
        port,
        watchdog: watchdog.clone(),
    };
    Ok((child, pid, guard))
}

/// Keeps one process group, and the daemons it leaves, tied to hpgate's
/// lifetime.
#[derive(Debug)]
pub struct Guard {
    pgid: Pid,
    port: u16,
    watchdog: Arc<Watchdog>,
}

impl Guard {
    /// Asks every process in the group, and its adopted daemons, to stop
    /// (SIGTERM).
    pub fn terminate(&self) {
        let _ = killpg(self.pgid, Signal::SIGTERM);
        self.watchdog
            .inner
            .signal_app_orphans(self.port, Signal::SIGTERM);
    }

    /// Kills every process in the group and its adopted daemons (SIGKILL).
    /// Idempotent.
    pub fn kill(&self) {
        let _ = killpg(self.pgid, Signal::SIGKILL);
        self.watchdog
            .inner
            .signal_app_orphans(self.port, Signal::SIGKILL);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // The leader is gone: what it left running is an orphan, and its
        // children have just been re-parented to hpgate.
        self.watchdog.inner.scan();
        self.kill();
        {
            let mut family = self.watchdog.inner.family();
            family.own.remove(&self.pgid.as_raw());
            family.apps.remove(&self.pgid.as_raw());
        }
        self.watchdog.inner.send(&format!("-{}", self.pgid));
    }
}

/// The pipe to the watchdog process (absent if it could not start) and
/// the record of hpgate's children.
#[derive(Debug, Default)]
pub struct Watchdog {
    inner: Arc<Inner>,
    /// The orphan scan; it stops with its watchdog, or it would take a
    /// later watchdog's apps (`hpgate check`: the trial's, then the
    /// gateway's) for orphans of a gone app and kill them.
    adopter: Option<tokio::task::AbortHandle>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(a) = &self.adopter {
            a.abort();
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    pipe: Mutex<Option<std::process::ChildStdin>>,
    family: Mutex<Family>,
}

/// How often hpgate looks for new orphans: re-parenting sends no signal,
/// and the watchdog must learn of them to kill them if hpgate is killed.
const ORPHAN_SCAN: std::time::Duration = std::time::Duration::from_millis(500);

impl Watchdog {
    pub fn start() -> Watchdog {
        let adopting = orphans::become_subreaper();
        let inner = Arc::new(Inner::default());
        {
            let mut family = inner.family();
            family.protected.insert(nix::unistd::getpgrp().as_raw());
            match spawn_watchdog() {
                Ok(mut child) => {
                    family.own.insert(child.id() as i32);
                    family.protected.insert(child.id() as i32);
                    *inner.pipe.lock().unwrap_or_else(|p| p.into_inner()) = child.stdin.take();
                }
                Err(e) => tracing::warn!("cannot start the watchdog process ({e}); app processes may outlive hpgate if it is killed with SIGKILL"),
            }
        }
        let adopter = adopting
            .then(|| tokio::runtime::Handle::try_current().ok())
            .flatten()
            .map(|rt| rt.spawn(adopt_orphans(inner.clone())).abort_handle());
        Watchdog { inner, adopter }
    }

    /// Kills every adopted daemon (hpgate is stopping; the apps are gone).
    pub fn stop_orphans(&self) {
        self.inner.scan();
        let all: Vec<(i32, Adopted)> = self
            .inner
            .family()
            .adopted
            .iter()
            .map(|(p, a)| (*p, *a))
            .collect();
        for (pid, a) in all {
            tracing::info!(pid, "stopping a daemon the app left running");
            signal_orphan(pid, &a, Signal::SIGKILL);
        }
    }
}

fn spawn_watchdog() -> std::io::Result<std::process::Child> {
    let exe = std::env::current_exe()?;
    std::process::Command::new(exe)
        .arg("__watchdog")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
}

/// Scans on every SIGCHLD (an adopted process exited: reap it) and every
/// [`ORPHAN_SCAN`] (one may have been adopted).
async fn adopt_orphans(inner: Arc<Inner>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut chld = signal(SignalKind::child()).ok();
    loop {
        tokio::select! {
            _ = async {
                match chld.as_mut() {
                    Some(s) => { s.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
            _ = tokio::time::sleep(ORPHAN_SCAN) => {}
        }
        // Off the event loop: the scan reads every process's /proc entry,
        // which on a busy host would hold up the connections it serves.
        let scanner = inner.clone();
        let _ = tokio::task::spawn_blocking(move || scanner.scan()).await;
    }
}

fn signal_orphan(pid: i32, a: &Adopted, sig: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
    if a.group {
        let _ = killpg(Pid::from_raw(a.pgid), sig);
    }
}

impl Inner {
    fn family(&self) -> std::sync::MutexGuard<'_, Family> {
        self.family.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Records newly adopted orphans (and tells the watchdog), reaps the
    /// ones that exited, and kills those whose app is already gone.
    fn scan(&self) {
        let me = nix::unistd::getpid().as_raw();
        let mut family = self.family();
        let seen = orphans::children_of(me);
        for event in family.update(&seen, &orphans::app_port) {
            match event {
                Event::Adopted(pid, a) => {
                    tracing::info!(pid, pgid = a.pgid, app_port = a.port, "adopted orphan process (a daemon the app left running); it is stopped with its app");
                    self.send(&format!("+p{pid}"));
                    if a.group {
                        self.send(&format!("+{}", a.pgid));
                    }
                    if family.owner_gone(&a) {
                        signal_orphan(pid, &a, Signal::SIGKILL);
                    }
                }
                Event::Exited(pid, a) => {
                    // By pid, never -1: tokio reaps the children it started.
                    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
                    if let Some(a) = a {
                        tracing::debug!(pid, "adopted orphan process exited");
                        self.send(&format!("-p{pid}"));
                        if a.group {
                            self.send(&format!("-{}", a.pgid));
                        }
                    }
                }
            }
        }
    }

    /// Signals the adopted daemons that came from the app on `port`.
    fn signal_app_orphans(&self, port: u16, sig: Signal) {
        let list = self.family().of_app(port);
        for (pid, a) in list {
            signal_orphan(pid, &a, sig);
        }
    }
}

/// Body of `hpgate __watchdog`: track groups (`+PGID`, `-PGID`) and single
/// processes (`+pPID`, `-pPID`) until stdin closes, then kill what is left.
/// Each line is counted: a group listed twice needs two removals.
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
    let mut procs: Vec<i32> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (op, rest) = line.split_at(line.len().min(1));
        let (list, num) = match rest.strip_prefix('p') {
            Some(n) => (&mut procs, n),
            None => (&mut groups, rest),
        };
        let Ok(id) = num.trim().parse::<i32>() else {
            continue;
        };
        match op {
            "+" => list.push(id),
            "-" => {
                if let Some(i) = list.iter().position(|g| *g == id) {
                    list.swap_remove(i);
                }
            }
            _ => {}
        }
    }
    for p in procs {
        let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
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

/// Columns of /proc/net/tcp*: `sl local_address rem_address st ... inode`.
#[cfg(target_os = "linux")]
const NET_LOCAL: usize = 1;
#[cfg(target_os = "linux")]
const NET_STATE: usize = 3;
#[cfg(target_os = "linux")]
const NET_INODE: usize = 9;
/// The `st` of a listening socket (the kernel's TCP_LISTEN, in hex).
#[cfg(target_os = "linux")]
const TCP_LISTEN: &str = "0A";

#[cfg(target_os = "linux")]
fn linux_listeners(pgid: u32) -> Vec<SocketAddr> {
    use std::collections::HashSet;

    let mut inodes = HashSet::new();
    for pid in proc_pids() {
        // Field 5 of /proc/PID/stat is the process group; the command name
        // (field 2) may hold spaces, so count from the closing parenthesis.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if after.split_whitespace().nth(2) != Some(&pgid.to_string()) {
            continue;
        }
        inodes.extend(socket_inodes(pid));
    }
    listen_table()
        .into_iter()
        .filter(|(_, inode)| inodes.contains(inode))
        .map(|(addr, _)| addr)
        .collect()
}

/// Processes holding a TCP listener on `port`: pid and command name
/// (Linux /proc; empty elsewhere, or when /proc hides other users' files).
pub fn port_owners(port: u16) -> Vec<(u32, String)> {
    #[cfg(target_os = "linux")]
    {
        let inodes: Vec<String> = listen_table()
            .into_iter()
            .filter(|(a, _)| a.port() == port)
            .map(|(_, inode)| inode)
            .collect();
        if inodes.is_empty() {
            return Vec::new();
        }
        proc_pids()
            .filter(|pid| socket_inodes(*pid).iter().any(|i| inodes.contains(i)))
            .map(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                (pid, comm.trim().to_string())
            })
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = port;
        Vec::new()
    }
}

/// Every process id in /proc.
#[cfg(target_os = "linux")]
fn proc_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// The socket inodes among a process's open files.
#[cfg(target_os = "linux")]
fn socket_inodes(pid: u32) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            let t = target.to_string_lossy();
            let inode = t.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_string())
        })
        .collect()
}

/// Every listening TCP socket of the system: address and inode.
#[cfg(target_os = "linux")]
fn listen_table() -> Vec<(SocketAddr, String)> {
    let mut found = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(table) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > NET_INODE && cols[NET_STATE] == TCP_LISTEN {
                if let Some(addr) = parse_proc_addr(cols[NET_LOCAL], v6) {
                    found.push((addr, cols[NET_INODE].to_string()));
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
