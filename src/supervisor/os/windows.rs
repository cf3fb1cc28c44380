//! Windows: one Job Object per app process (kill on close, so nothing
//! outlives hpgate), a new process group so Ctrl-Break can ask it to stop.
//! The app inherits hpgate's console (no CREATE_NO_WINDOW, no
//! DETACHED_PROCESS): Ctrl-Break only reaches a process on the same console.
//!
//! Every Win32 call is checked and a failure logged with the system's
//! error; `unsafe` covers only the calls themselves.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use windows_sys::Win32::Foundation::{CloseHandle, BOOL, HANDLE};
use windows_sys::Win32::System::Console::{GenerateConsoleCtrlEvent, CTRL_BREAK_EVENT};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject, JOBOBJECT_BASIC_LIMIT_INFORMATION,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, IO_COUNTERS};

/// The exit code of processes killed through their job.
const KILLED_EXIT_CODE: u32 = 1;

pub fn prepare(cmd: &mut tokio::process::Command) {
    cmd.creation_flags(CREATE_NEW_PROCESS_GROUP);
}

/// Not needed on Windows: the kernel closes the job handles when hpgate dies.
#[derive(Debug, Default)]
pub struct Watchdog;

impl Watchdog {
    pub fn start() -> Watchdog {
        Watchdog
    }

    /// Nothing to do: the app's daemons are in its job and die with it.
    pub fn stop_orphans(&self) {}
}

/// Starts the app and puts it in its own job.
pub fn spawn(
    cmd: &mut tokio::process::Command,
    _port: u16,
    watchdog: &Arc<Watchdog>,
) -> std::io::Result<(tokio::process::Child, u32, Guard)> {
    let child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    let guard = Guard::new(&child, pid, watchdog.clone());
    Ok((child, pid, guard))
}

pub fn run_watchdog() -> ExitCode {
    ExitCode::SUCCESS
}

#[derive(Debug)]
pub struct Guard {
    pid: u32,
    // Stored as an integer so the guard is Send; it is a job HANDLE, 0 if
    // there is none (tokio's kill_on_drop still ends the process itself).
    job: isize,
}

impl Guard {
    pub fn new(child: &tokio::process::Child, pid: u32, _watchdog: Arc<Watchdog>) -> Guard {
        let job = new_job(pid);
        // None: already reaped, so there is nothing to put in the job.
        if let (Some(job), Some(process)) = (job, child.raw_handle()) {
            // SAFETY: `job` is a live handle we own; the process handle is
            // valid while `child` is borrowed.
            #[allow(unsafe_code)]
            let ok = unsafe { AssignProcessToJobObject(job, process as HANDLE) };
            check(
                ok,
                "AssignProcessToJobObject (its workers may outlive hpgate)",
                pid,
            );
        }
        let job = job.map_or(0, |job| job as isize);
        Guard { pid, job }
    }

    /// Ctrl-Break to the process group, the polite stop signal on Windows.
    /// When it cannot be sent (hpgate has no console to share with the
    /// app: a service, or wine), the app can never learn it should stop, so
    /// it is ended at once instead of after a shutdownTimeLimit of waiting.
    pub fn terminate(&self) {
        // SAFETY: plain integer arguments, no pointers.
        #[allow(unsafe_code)]
        let ok = unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, self.pid) };
        if ok == 0 {
            warn_failed(
                "GenerateConsoleCtrlEvent (Ctrl-Break cannot reach the app; ending it now)",
                self.pid,
            );
            self.kill();
        }
    }

    pub fn kill(&self) {
        if self.job != 0 {
            // SAFETY: the job handle is ours and open until Drop.
            #[allow(unsafe_code)]
            let ok = unsafe { TerminateJobObject(self.job as HANDLE, KILLED_EXIT_CODE) };
            check(ok, "TerminateJobObject", self.pid);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
        if self.job != 0 {
            // SAFETY: the job handle is ours, and closed once, here.
            #[allow(unsafe_code)]
            let ok = unsafe { CloseHandle(self.job as HANDLE) };
            check(ok, "CloseHandle (job)", self.pid);
        }
    }
}

/// A new job that kills its processes when its last handle closes. None
/// (logged) if the job cannot be created.
fn new_job(pid: u32) -> Option<HANDLE> {
    // SAFETY: both arguments may be null: default security, no name.
    #[allow(unsafe_code)]
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() {
        warn_failed("CreateJobObjectW (its processes may outlive hpgate)", pid);
        return None;
    }
    let info = kill_on_close();
    // SAFETY: `job` is live; the pointer and size describe `info`, which
    // outlives the call (Windows copies it).
    #[allow(unsafe_code)]
    let ok = unsafe {
        SetInformationJobObject(
            job,
            JobObjectExtendedLimitInformation,
            &info as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION as *const _,
            std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    };
    check(
        ok,
        "SetInformationJobObject (kill on close; its processes may outlive hpgate)",
        pid,
    );
    Some(job)
}

/// Job limits with only JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE set.
fn kill_on_close() -> JOBOBJECT_EXTENDED_LIMIT_INFORMATION {
    let none = IO_COUNTERS {
        ReadOperationCount: 0,
        WriteOperationCount: 0,
        OtherOperationCount: 0,
        ReadTransferCount: 0,
        WriteTransferCount: 0,
        OtherTransferCount: 0,
    };
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION {
        BasicLimitInformation: JOBOBJECT_BASIC_LIMIT_INFORMATION {
            PerProcessUserTimeLimit: 0,
            PerJobUserTimeLimit: 0,
            LimitFlags: JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
            MinimumWorkingSetSize: 0,
            MaximumWorkingSetSize: 0,
            ActiveProcessLimit: 0,
            Affinity: 0,
            PriorityClass: 0,
            SchedulingClass: 0,
        },
        IoInfo: none,
        ProcessMemoryLimit: 0,
        JobMemoryLimit: 0,
        PeakProcessMemoryUsed: 0,
        PeakJobMemoryUsed: 0,
    }
}

/// Logs a failed Win32 call (`ok` is its BOOL result).
fn check(ok: BOOL, call: &str, pid: u32) {
    if ok == 0 {
        warn_failed(call, pid);
    }
}

/// Logs that `call` failed, with the system's error: call it right after
/// the failed call, before anything can overwrite that error.
fn warn_failed(call: &str, pid: u32) {
    let err = std::io::Error::last_os_error();
    tracing::warn!(pid, "Win32 call {call} failed: {err}");
}

pub fn listening_addrs(_pid: u32) -> Vec<SocketAddr> {
    Vec::new()
}

/// Processes holding a listener on a port: not looked up on Windows.
pub fn port_owners(_port: u16) -> Vec<(u32, String)> {
    Vec::new()
}
