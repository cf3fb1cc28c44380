//! Linux: the app's daemons. A process that double-forks and calls
//! `setsid` leaves its own process group and loses its parent; hpgate is a
//! child subreaper (PR_SET_CHILD_SUBREAPER), so such orphans become its
//! children instead of init's, and this module tracks them.
//!
//! Owns the record of hpgate's children: the ones it started (reaped by
//! tokio or std, never here) and the adopted ones (reaped here, by pid, so
//! no exit status of a started child is taken). An adopted process belongs
//! to the app process whose `HTTP_PLATFORM_PORT` its environment holds,
//! and is stopped with it; one without that variable lives until hpgate
//! stops. It must not decide when apps stop (`slot.rs`).

use std::collections::{HashMap, HashSet};

/// One process as /proc shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub pgid: i32,
    pub zombie: bool,
}

/// An adopted orphan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adopted {
    pub pgid: i32,
    /// The port of the app process it came from, if its environment says.
    pub port: Option<u16>,
    /// Whether its whole group may be killed (not hpgate's, the
    /// watchdog's, or a live app's group).
    pub group: bool,
}

/// hpgate's children, started and adopted.
#[derive(Debug, Default)]
pub struct Family {
    /// Started by hpgate: app processes and the watchdog.
    pub own: HashSet<i32>,
    /// Live app processes: pid -> port.
    pub apps: HashMap<i32, u16>,
    pub adopted: HashMap<i32, Adopted>,
    /// Groups that are never killed as a whole (hpgate's, the watchdog's).
    pub protected: HashSet<i32>,
}

/// What a scan found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Adopted(i32, Adopted),
    /// An adopted process has exited and must be reaped.
    Exited(i32, Option<Adopted>),
}

impl Family {
    /// Compares hpgate's children now (`seen`) with the record.
    pub fn update(
        &mut self,
        seen: &[ProcInfo],
        port_of: &dyn Fn(i32) -> Option<u16>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        for p in seen.iter().filter(|p| !self.own.contains(&p.pid)) {
            if p.zombie {
                events.push(Event::Exited(p.pid, self.adopted.remove(&p.pid)));
            } else if !self.adopted.contains_key(&p.pid) {
                let a = Adopted {
                    pgid: p.pgid,
                    port: port_of(p.pid),
                    group: p.pgid > INIT_PGID
                        && !self.protected.contains(&p.pgid)
                        && !self.apps.contains_key(&p.pgid),
                };
                self.adopted.insert(p.pid, a);
                events.push(Event::Adopted(p.pid, a));
            }
        }
        events
    }

    /// Whether the app an adopted process came from is gone.
    pub fn owner_gone(&self, a: &Adopted) -> bool {
        a.port
            .is_some_and(|port| !self.apps.values().any(|&p| p == port))
    }

    /// Adopted processes that came from the app on `port`.
    pub fn of_app(&self, port: u16) -> Vec<(i32, Adopted)> {
        self.adopted
            .iter()
            .filter(|(_, a)| a.port == Some(port))
            .map(|(pid, a)| (*pid, *a))
            .collect()
    }
}

/// Makes hpgate the reaper of its descendants' orphans. False where the
/// system has no such thing (then daemons escape, as before).
pub fn become_subreaper() -> bool {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_child_subreaper(true).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The children of `parent`, from /proc (empty without /proc).
pub fn children_of(parent: i32) -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let mut head = [0u8; STAT_HEAD];
            let stat = stat_head(pid, &mut head)?;
            let (ppid, info) = parse_stat(pid, stat)?;
            (ppid == parent).then_some(info)
        })
        .collect()
}

/// Enough of /proc/PID/stat for the fields `parse_stat` needs: the pid,
/// a command name of at most 64 bytes, then state, ppid and pgrp.
const STAT_HEAD: usize = 256;

/// The start of /proc/PID/stat in one read: open, read, close, three
/// system calls per process (`read_to_string` took about eight: a size
/// query and small reads growing the buffer). The scan runs twice a
/// second over every process on the host, so this is hpgate's idle cost.
fn stat_head(pid: i32, head: &mut [u8; STAT_HEAD]) -> Option<&str> {
    use std::io::Read;
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let n = file.read(head).ok()?;
    std::str::from_utf8(&head[..n]).ok()
}

/// The process group of init; a pgid at or below it is never an app's.
const INIT_PGID: i32 = 1;

/// Fields 3 (state), 4 (ppid) and 5 (pgrp) of /proc/PID/stat; the command
/// name before them may hold spaces and parentheses.
fn parse_stat(pid: i32, stat: &str) -> Option<(i32, ProcInfo)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgid = f.next()?.parse().ok()?;
    Some((
        ppid,
        ProcInfo {
            pid,
            pgid,
            zombie: state == "Z" || state == "X",
        },
    ))
}

/// `HTTP_PLATFORM_PORT` from a process's initial environment.
pub fn app_port(pid: i32) -> Option<u16> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"HTTP_PLATFORM_PORT="))
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_an_odd_name() {
        let s = "42 (a (b) c) S 7 40 40 0 -1";
        assert_eq!(
            parse_stat(42, s),
            Some((
                7,
                ProcInfo {
                    pid: 42,
                    pgid: 40,
                    zombie: false
                }
            ))
        );
        assert!(parse_stat(42, "42 (x) Z 7 42 42").unwrap().1.zombie);
    }

    #[test]
    fn the_fields_survive_a_stat_line_cut_after_a_long_name() {
        let name = "w".repeat(64);
        let line = format!("42 ({name}) S 7 40 40 0 -1 {}", "123 ".repeat(80));
        let cut = &line[..STAT_HEAD];
        assert_eq!(
            parse_stat(42, cut).map(|(ppid, p)| (ppid, p.pgid)),
            Some((7, 40))
        );
    }

    #[test]
    fn a_started_child_is_found_by_the_scan() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let found = children_of(std::process::id() as i32);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.iter().any(|p| p.pid == pid), "{found:?}");
        assert!(children_of(-1).is_empty());
    }

    #[test]
    fn started_children_are_never_adopted_or_reaped() {
        let mut f = Family::default();
        f.own.insert(10);
        f.apps.insert(10, 5000);
        f.protected.insert(1000);
        let seen = [
            ProcInfo {
                pid: 10,
                pgid: 10,
                zombie: true,
            },
            ProcInfo {
                pid: 20,
                pgid: 15,
                zombie: false,
            },
            ProcInfo {
                pid: 21,
                pgid: 10,
                zombie: false,
            },
            ProcInfo {
                pid: 22,
                pgid: 1000,
                zombie: false,
            },
        ];
        let ev = f.update(&seen, &|pid| (pid != 22).then_some(5000));
        assert_eq!(ev.len(), 3, "{ev:?}");
        assert!(f.adopted[&20].group);
        assert!(
            !f.adopted[&21].group,
            "a live app's group is not killed by an orphan"
        );
        assert!(!f.adopted[&22].group, "hpgate's own group is protected");
        assert_eq!(f.of_app(5000).len(), 2);
        assert!(!f.owner_gone(&f.adopted[&20]));
        f.apps.clear();
        assert!(f.owner_gone(&f.adopted[&20]));
        assert!(
            !f.owner_gone(&f.adopted[&22]),
            "no port: kept until hpgate stops"
        );
        // Seen again: nothing new. Exited: reaped and forgotten.
        assert!(f.update(&seen[1..2], &|_| None).is_empty());
        let gone = [ProcInfo {
            pid: 20,
            pgid: 15,
            zombie: true,
        }];
        assert!(matches!(
            f.update(&gone, &|_| None)[..],
            [Event::Exited(20, Some(_))]
        ));
        assert!(!f.adopted.contains_key(&20));
    }

    #[test]
    fn reads_the_port_from_the_environment() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("HTTP_PLATFORM_PORT", "4321")
            .spawn()
            .unwrap();
        // Until the child has exec'd, /proc shows the parent's environment.
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep"))
            && std::time::Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        let port = app_port(pid as i32);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(port, Some(4321));
        assert_eq!(app_port(-1), None);
    }
}
