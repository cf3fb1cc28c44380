//! Which account the checks speak for, and asking the system whether that
//! account may enter, read, write or execute a path.
//!
//! How `--as USER` works on Linux (as root): hpgate starts itself again as
//! a small probe (`hpgate __access-probe`, hidden) that takes USER's uid,
//! gid and supplementary groups (setgroups, setgid, setuid, in that order)
//! and then asks the kernel with access(2) about each path, or walks a
//! folder tree the way Python reads it. So the kernel's own answer counts,
//! with ACLs, read-only mounts and security modules, instead of a copy of
//! the permission rules. A separate process because identity is
//! process-wide: setfsuid in a thread would still share the supplementary
//! groups of the whole process (and need unsafe code), and hpgate itself
//! keeps running as root. Without `--as` the same checks run in-process as
//! the account running `hpgate check`.
//!
//! On Windows `--as` is not implemented (reading the ACL of an app pool
//! identity needs the Windows security API): the checks run as the current
//! account and the report says so; fixes are given as icacls commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

/// What an account must be able to do with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Need {
    /// Pass through a folder (search permission).
    Enter,
    Read,
    /// Create files in a folder.
    Write,
    Execute,
    /// Read a whole folder tree: every folder listed and entered, every file read.
    Tree,
}

impl Need {
    fn verb(self) -> &'static str {
        match self {
            Need::Enter => "enter the folder",
            Need::Read => "read",
            Need::Write => "create files in",
            Need::Execute => "execute",
            Need::Tree => "read",
        }
    }
}

/// One question for the probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    pub path: PathBuf,
    pub need: Need,
}

/// The first path the account may not use as needed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Denied {
    /// The path that failed (inside `asked` for a tree).
    pub path: PathBuf,
    /// The path that was asked about.
    pub asked: PathBuf,
    pub need: Need,
    pub error: String,
}

/// Folders of a tree walk, at most: a bound on time for huge installations.
const MAX_TREE_ENTRIES: usize = 200_000;

/// The account the checks are for.
#[derive(Debug, Clone)]
pub enum Account {
    /// The account running `hpgate check` (checked in-process).
    Current { name: String },
    /// Another account, checked through the probe (Linux, as root).
    #[cfg(unix)]
    Other {
        name: String,
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
    },
}

impl Account {
    pub fn name(&self) -> &str {
        match self {
            Account::Current { name } => name,
            #[cfg(unix)]
            Account::Other { name, .. } => name,
        }
    }

    /// "nobody", or "root (the account running this check)".
    pub fn describe(&self) -> String {
        match self {
            Account::Current { name } => format!("{name} (the account running this check)"),
            #[cfg(unix)]
            Account::Other {
                name,
                uid,
                gid,
                groups,
            } => format!("{name} (uid {uid}, gid {gid}, groups {groups:?})"),
        }
    }

    /// The first of `asks` this account is denied, in order.
    pub fn first_denied(&self, asks: &[Ask]) -> Result<Option<Denied>, String> {
        match self {
            Account::Current { .. } => Ok(first_denied_here(asks)),
            #[cfg(unix)]
            Account::Other {
                uid, gid, groups, ..
            } => probe(&ProbeRequest {
                uid: *uid,
                gid: *gid,
                groups: groups.clone(),
                asks: asks.to_vec(),
            }),
        }
    }

    /// "nobody cannot enter the folder /x (Permission denied)".
    pub fn sentence(&self, d: &Denied) -> String {
        let what = if d.path != d.asked {
            format!("{} (inside {})", d.path.display(), d.asked.display())
        } else {
            d.path.display().to_string()
        };
        format!(
            "{} cannot {} {what} ({})",
            self.name(),
            d.need.verb(),
            d.error
        )
    }

    /// The command that grants what was denied.
    pub fn fix(&self, d: &Denied) -> String {
        fix_for(self.name(), d)
    }
}

#[cfg(unix)]
fn fix_for(name: &str, d: &Denied) -> String {
    let p = d.path.display();
    let tree = d.asked.display();
    match d.need {
        Need::Enter => format!("setfacl -m u:{name}:x {p}   (or: chmod o+x {p})"),
        Need::Read => format!("setfacl -m u:{name}:r {p}   (or: chmod o+r {p})"),
        Need::Execute => format!("setfacl -m u:{name}:rx {p}   (or: chmod o+rx {p})"),
        Need::Write => format!("setfacl -m u:{name}:rwx {p}   (or: chown {name} {p})"),
        Need::Tree => format!(
            "setfacl -R -m u:{name}:rX {tree}   (or: chmod -R o+rX {tree}); a folder above it must be enterable too"
        ),
    }
}

#[cfg(windows)]
fn fix_for(name: &str, d: &Denied) -> String {
    let (path, grant) = match d.need {
        Need::Tree => (d.asked.display(), "(OI)(CI)RX\" /T"),
        Need::Write => (d.path.display(), "(OI)(CI)M\""),
        _ => (d.path.display(), "RX\""),
    };
    format!(
        "icacls \"{path}\" /grant \"{name}:{grant}   (for IIS, the app pool identity: \"IIS AppPool\\POOL\" or IIS_IUSRS)"
    )
}

/// The account for `--as USER` (None: the current one).
pub fn resolve(as_user: Option<&str>) -> Result<Account, String> {
    let current = Account::Current {
        name: current_name(),
    };
    match as_user {
        None => Ok(current),
        Some(user) => other(user, current),
    }
}

#[cfg(unix)]
fn current_name() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}

#[cfg(windows)]
fn current_name() -> String {
    std::env::var("USERNAME").unwrap_or_else(|_| "the current account".into())
}

#[cfg(unix)]
fn other(user: &str, current: Account) -> Result<Account, String> {
    use nix::unistd::{Uid, User};
    let found = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(user),
    };
    let u = found
        .map_err(|e| format!("cannot look up the account {user}: {e}"))?
        .ok_or_else(|| format!("there is no account {user} on this system"))?;
    if u.uid == nix::unistd::geteuid() {
        return Ok(current);
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(format!(
            "--as {user} needs root: the check takes that account's identity in a child process (run it with sudo, or as {user} itself)"
        ));
    }
    let cname = std::ffi::CString::new(u.name.clone())
        .map_err(|_| format!("the account name {user} holds a NUL byte"))?;
    let groups = nix::unistd::getgrouplist(&cname, u.gid)
        .map_err(|e| format!("cannot read the groups of {user}: {e}"))?;
    Ok(Account::Other {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        groups: groups.iter().map(|g| g.as_raw()).collect(),
    })
}

#[cfg(windows)]
fn other(user: &str, _current: Account) -> Result<Account, String> {
    Err(format!(
        "cannot check as another account on this OS (--as {user}); the checks below use the current account"
    ))
}

/// Every folder on the way to `path` (enter), the target of a symbolic
/// link the same way, then `need` on the path itself: the first denial is
/// the first path that fails.
pub fn chain(path: &Path, need: Need) -> Vec<Ask> {
    let mut asks: Vec<Ask> = Vec::new();
    let mut push = |path: &Path, need| {
        let ask = Ask {
            path: path.to_path_buf(),
            need,
        };
        if !asks.contains(&ask) {
            asks.push(ask);
        }
    };
    let folders = |p: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = p.ancestors().skip(1).map(Path::to_path_buf).collect();
        v.retain(|a| !a.as_os_str().is_empty());
        v.reverse();
        v
    };
    for f in folders(path) {
        push(&f, Need::Enter);
    }
    if let Ok(real) = std::fs::canonicalize(path) {
        if real != path {
            for f in folders(&real) {
                push(&f, Need::Enter);
            }
            push(&real, need);
        }
    }
    push(path, need);
    asks
}

fn first_denied_here(asks: &[Ask]) -> Option<Denied> {
    asks.iter().find_map(|a| {
        allowed(&a.path, a.need).err().map(|(path, error)| Denied {
            path,
            asked: a.path.clone(),
            need: a.need,
            error,
        })
    })
}

/// Whether the process (as it is now) may use `path` as `need` says;
/// Err names the path that failed and why.
fn allowed(path: &Path, need: Need) -> Result<(), (PathBuf, String)> {
    if need == Need::Tree {
        return walk(path);
    }
    may(path, need).map_err(|e| (path.to_path_buf(), e))
}

#[cfg(unix)]
fn may(path: &Path, need: Need) -> Result<(), String> {
    use nix::unistd::{access, AccessFlags};
    let flags = match need {
        Need::Enter | Need::Execute => AccessFlags::X_OK,
        Need::Read => AccessFlags::R_OK,
        Need::Write => AccessFlags::W_OK | AccessFlags::X_OK,
        Need::Tree => AccessFlags::R_OK | AccessFlags::X_OK,
    };
    access(path, flags).map_err(|e| e.desc().to_string())
}

/// Windows: try it (open, list, create a file) as the current account.
#[cfg(windows)]
fn may(path: &Path, need: Need) -> Result<(), String> {
    let r = match need {
        Need::Enter | Need::Tree => std::fs::read_dir(path).map(drop),
        Need::Read | Need::Execute => std::fs::File::open(path).map(drop),
        Need::Write => {
            let probe = path.join(format!(".hpgate-check-{}", std::process::id()));
            std::fs::File::create(&probe).and_then(|_| std::fs::remove_file(&probe))
        }
    };
    r.map_err(|e| e.to_string())
}

/// Reads a tree as Python would: every folder listed and entered, every
/// file readable. Symbolic links are not followed.
fn walk(root: &Path) -> Result<(), (PathBuf, String)> {
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        may(&dir, Need::Tree).map_err(|e| (dir.clone(), e))?;
        let entries = std::fs::read_dir(&dir).map_err(|e| (dir.clone(), e.to_string()))?;
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_TREE_ENTRIES {
                return Ok(());
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let p = entry.path();
                may(&p, Need::Read).map_err(|e| (p, e))?;
            }
        }
    }
    Ok(())
}

/// What the parent sends the probe on its standard input.
#[derive(Debug, Serialize, Deserialize)]
struct ProbeRequest {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    asks: Vec<Ask>,
}

/// What the probe answers on its standard output.
#[derive(Debug, Serialize, Deserialize)]
enum ProbeAnswer {
    Done(Option<Denied>),
    Error(String),
}

#[cfg(unix)]
fn probe(req: &ProbeRequest) -> Result<Option<Denied>, String> {
    use std::io::Write;
    use std::process::Stdio;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find hpgate itself: {e}"))?;
    let input = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(exe)
        .arg("__access-probe")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the access probe: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .map_err(|e| format!("cannot talk to the access probe: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("the access probe failed: {e}"))?;
    match serde_json::from_slice(&out.stdout) {
        Ok(ProbeAnswer::Done(d)) => Ok(d),
        Ok(ProbeAnswer::Error(e)) => Err(e),
        Err(e) => Err(format!("the access probe answered nothing readable ({e})")),
    }
}

/// `hpgate __access-probe`: takes the identity the request names and
/// answers which path it is denied first.
pub fn probe_main() -> ExitCode {
    let answer = match serde_json::from_reader::<_, ProbeRequest>(std::io::stdin().lock()) {
        Ok(req) => match become_account(&req) {
            Ok(()) => ProbeAnswer::Done(first_denied_here(&req.asks)),
            Err(e) => ProbeAnswer::Error(e),
        },
        Err(e) => ProbeAnswer::Error(format!("bad probe request: {e}")),
    };
    match serde_json::to_string(&answer) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(_) => ExitCode::FAILURE,
    }
}

#[cfg(unix)]
fn become_account(req: &ProbeRequest) -> Result<(), String> {
    use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
    let groups: Vec<Gid> = req.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    setgid(Gid::from_raw(req.gid)).map_err(|e| format!("setgid: {e}"))?;
    setuid(Uid::from_raw(req.uid)).map_err(|e| format!("setuid: {e}"))?;
    Ok(())
}

#[cfg(windows)]
fn become_account(_req: &ProbeRequest) -> Result<(), String> {
    Err("cannot check as another account on this OS".into())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn chain_lists_every_folder_then_the_target() {
        let asks = chain(Path::new("/usr/bin/env"), Need::Execute);
        let paths: Vec<_> = asks.iter().map(|a| a.path.display().to_string()).collect();
        assert_eq!(paths.first().map(String::as_str), Some("/"));
        assert_eq!(asks.last().map(|a| a.need), Some(Need::Execute));
        assert!(paths.contains(&"/usr/bin".to_string()), "{paths:?}");
    }

    #[test]
    fn denied_paths_are_named() {
        let asks = [Ask {
            path: PathBuf::from("/nonexistent-hpgate-check"),
            need: Need::Read,
        }];
        let d = first_denied_here(&asks).expect("denied");
        assert_eq!(d.path, PathBuf::from("/nonexistent-hpgate-check"));
        let a = Account::Current { name: "me".into() };
        assert!(a.sentence(&d).starts_with("me cannot read /nonexistent"));
        assert!(a.fix(&d).contains("setfacl -m u:me:r"));
    }
}
