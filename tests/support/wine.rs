//! The Windows build under wine, for tests/windows_wine.rs: finds what
//! scripts/wine-setup built (HPGATE_TEST_WINE), starts `wine hpgate.exe run`
//! in a site folder, and looks at the Windows processes from Linux (each
//! runs as a Linux process whose command line is its Windows one).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{read_logs, request, wait_until, Reply, Site};

/// What scripts/wine-setup made: `bin/hpgate.exe`, `bin/winapp.exe`, `prefix/`.
pub struct Wine {
    pub root: PathBuf,
}

/// The wine setup, or None (with a message) when HPGATE_TEST_WINE is unset.
pub fn wine() -> Option<&'static Wine> {
    static WINE: OnceLock<Option<Wine>> = OnceLock::new();
    let found = WINE.get_or_init(|| {
        let root = PathBuf::from(std::env::var_os("HPGATE_TEST_WINE")?);
        let w = Wine { root };
        // One wine server for the whole run, kept a while between tests, so
        // each `wine` start is quick (the first one boots it).
        let _ = w
            .command("wineserver")
            .arg("-p30")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        Some(w)
    });
    if found.is_none() {
        eprintln!("skipped: HPGATE_TEST_WINE is not set (scripts/wine-setup prepares it; scripts/test sets it)");
    }
    found.as_ref()
}

impl Wine {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.root.join("bin").join(name)
    }

    pub fn drive_c(&self) -> PathBuf {
        self.root.join("prefix/drive_c")
    }

    /// A command with this prefix's environment (no wine debug output).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("WINEPREFIX", self.root.join("prefix"))
            .env("WINEDEBUG", "-all")
            .env_remove("HPGATE_LISTEN")
            .env_remove("HPGATE_CONFIG");
        cmd
    }

    /// `wine bin/<exe> args...`
    pub fn exe(&self, exe: &str, args: &[&str]) -> Command {
        let mut cmd = self.command("wine");
        cmd.arg(self.bin(exe)).args(args);
        cmd
    }

    /// Copies the test app into the site folder (for `.\winapp.exe`).
    pub fn copy_app(&self, site: &Site) {
        std::fs::copy(self.bin("winapp.exe"), site.path("winapp.exe")).expect("copy winapp.exe");
    }
}

/// The Windows form of a Linux path (wine maps `/` to drive Z:).
pub fn win_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// Linux pids of the processes whose command line mentions `needle`
/// (case-insensitive: Windows paths are).
pub fn processes_with(needle: &str) -> Vec<u32> {
    let needle = needle.to_lowercase();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).to_lowercase().contains(&needle))
                .unwrap_or(false)
        })
        .filter(|pid| super::pid_alive(*pid))
        .collect()
}

/// `wine hpgate.exe run --listen 127.0.0.1:0` in a site folder; killed
/// (SIGKILL: the Job Object then ends its app) on drop.
pub struct WinGateway {
    pub child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<String>>,
}

/// Wine starts slowly on a loaded machine: the first start boots the prefix.
const START: Duration = Duration::from_secs(60);

impl WinGateway {
    pub fn start(w: &Wine, site: &Site, args: &[&str]) -> WinGateway {
        let mut cmd = w.exe("hpgate.exe", &["run", "--listen", "127.0.0.1:0"]);
        cmd.args(args)
            .current_dir(&site.dir)
            .env("HPGATE_LOG", "info,hpgate=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start wine hpgate.exe");
        let logs = Arc::new(Mutex::new(String::new()));
        let rx = read_logs(&mut child, logs.clone());
        match rx.recv_timeout(START) {
            Ok(addr) => WinGateway { child, addr, logs },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "hpgate.exe did not start listening; log:\n{}",
                    logs.lock().unwrap()
                );
            }
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        wait_until(within, || self.logs().contains(needle))
    }

    pub fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[], b"")
    }

    /// The app's Windows pid, from its `/pid` route.
    pub fn app_pid(&self) -> Option<u32> {
        let r = self.get("/pid");
        (r.status == 200)
            .then(|| r.text().trim().parse().ok())
            .flatten()
    }

    /// Sends a Linux signal to the wine process of hpgate.exe (wine turns
    /// SIGINT into Ctrl-C for the process).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for WinGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
