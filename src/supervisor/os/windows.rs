//! Windows: one Job Object per app process (kill on close, so nothing
//! outlives hpgate), a new process group so Ctrl-Break can ask it to stop.
//! The app is created suspended and resumed only once it is in its job, so
//! even a worker it starts in its first instant is in the job too.
//! The app inherits hpgate's console (no CREATE_NO_WINDOW, no
//! DETACHED_PROCESS): Ctrl-Break only reaches a process on the same console.
//!
//! Every Win32 call is checked and a failure logged with the system's
//! error; `unsafe` covers only the calls themselves.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use windows_sys::Win32::Foundation::{
    CloseHandle, BOOL, ERROR_NO_MORE_FILES, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Console::{GenerateConsoleCtrlEvent, CTRL_BREAK_EVENT};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject, JOBOBJECT_BASIC_LIMIT_INFORMATION,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Threading::{
    OpenThread, ResumeThread, CREATE_NEW_PROCESS_GROUP, CREATE_SUSPENDED, IO_COUNTERS,
    THREAD_SUSPEND_RESUME,
};

/// The exit code of processes killed through their job.
const KILLED_EXIT_CODE: u32 = 1;

/// Suspended: `spawn` resumes the app once it is in its job.
pub fn prepare(cmd: &mut tokio::process::Command) {
    cmd.creation_flags(CREATE_NEW_PROCESS_GROUP | CREATE_SUSPENDED);
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

/// Starts the app (suspended, see `prepare`), puts it in its own job, then
/// lets it run. If it cannot be put in the job it still runs (logged). If
/// it cannot be resumed it would never answer: it is ended and the start
/// fails.
pub fn spawn(
    cmd: &mut tokio::process::Command,
    _port: u16,
    watchdog: &Arc<Watchdog>,
) -> io::Result<(tokio::process::Child, u32, Guard)> {
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    let guard = Guard::new(&child, pid, watchdog.clone());
    if let Err(err) = resume(pid) {
        // The guard's drop ends the job; this covers an app outside it.
        let _ = child.start_kill();
        // Not the bare error: "permission denied" would send the user to
        // the interpreter's rights.
        let why = format!("it was created suspended and could not be resumed: {err}");
        return Err(io::Error::other(why));
    }
    Ok((child, pid, guard))
}

/// Resumes the threads of the suspended process `pid` (just its main
/// thread: std closes the handle CreateProcessW returned for it, so it is
/// found in a snapshot of the system's threads).
fn resume(pid: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments, no pointers.
    #[allow(unsafe_code)]
    let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if snapshot == INVALID_HANDLE_VALUE {
        return Err(warn_failed(
            "CreateToolhelp32Snapshot (app left suspended)",
            pid,
        ));
    }
    let resumed = resume_threads_of(snapshot, pid);
    // SAFETY: the snapshot handle is ours, and closed once, here.
    #[allow(unsafe_code)]
    let ok = unsafe { CloseHandle(snapshot) };
    check(ok, "CloseHandle (thread snapshot)", pid);
    match resumed? {
        0 => {
            tracing::warn!(pid, "no thread of the app found to resume");
            Err(io::Error::other("no thread of the app found"))
        }
        _ => Ok(()),
    }
}

/// Resumes every thread of `pid` in `snapshot`; how many it resumed.
fn resume_threads_of(snapshot: HANDLE, pid: u32) -> io::Result<usize> {
    let mut entry = THREADENTRY32 {
        dwSize: std::mem::size_of::<THREADENTRY32>() as u32,
        cntUsage: 0,
        th32ThreadID: 0,
        th32OwnerProcessID: 0,
        tpBasePri: 0,
        tpDeltaPri: 0,
        dwFlags: 0,
    };
    let mut resumed = 0;
    // SAFETY: `snapshot` is live; `entry` is a THREADENTRY32 with its dwSize.
    #[allow(unsafe_code)]
    let mut more = unsafe { Thread32First(snapshot, &mut entry) };
    while more != 0 {
        if entry.th32OwnerProcessID == pid {
            resume_thread(entry.th32ThreadID, pid)?;
            resumed += 1;
        }
        // SAFETY: as for Thread32First.
        #[allow(unsafe_code)]
        let next = unsafe { Thread32Next(snapshot, &mut entry) };
        more = next;
    }
    // The walk ends with ERROR_NO_MORE_FILES; any other error is a failure.
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(ERROR_NO_MORE_FILES as i32) {
        return Err(warn_failed(
            "Thread32First/Thread32Next (app left suspended)",
            pid,
        ));
    }
    Ok(resumed)
}

/// Resumes thread `tid` of the app `pid`.
fn resume_thread(tid: u32, pid: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments, no pointers.
    #[allow(unsafe_code)]
    let thread = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, tid) };
    if thread.is_null() {
        return Err(warn_failed("OpenThread (app left suspended)", pid));
    }
    // SAFETY: `thread` is a live handle we own, with THREAD_SUSPEND_RESUME.
    #[allow(unsafe_code)]
    let count = unsafe { ResumeThread(thread) };
    let result = match count {
        u32::MAX => Err(warn_failed("ResumeThread (app left suspended)", pid)),
        _ => Ok(()),
    };
    // SAFETY: the thread handle is ours, and closed once, here.
    #[allow(unsafe_code)]
    let ok = unsafe { CloseHandle(thread) };
    check(ok, "CloseHandle (thread)", pid);
    result
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

/// Logs that `call` failed, with the system's error, and returns that
/// error: call it right after the failed call, before anything can
/// overwrite it.
fn warn_failed(call: &str, pid: u32) -> io::Error {
    let err = io::Error::last_os_error();
    tracing::warn!(pid, "Win32 call {call} failed: {err}");
    err
}

pub fn listening_addrs(_pid: u32) -> Vec<SocketAddr> {
    Vec::new()
}

/// Processes holding a listener on a port: not looked up on Windows.
pub fn port_owners(_port: u16) -> Vec<(u32, String)> {
    Vec::new()
}
