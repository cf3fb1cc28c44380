//! Windows: one Job Object per app process (kill on close, so nothing
//! outlives hpgate), a new process group so Ctrl-Break can ask it to stop.
#![allow(unsafe_code)] // Win32 calls; each one is commented.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::Console::{GenerateConsoleCtrlEvent, CTRL_BREAK_EVENT};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP;

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
    // Stored as an integer so the guard is Send; it is a job HANDLE.
    job: isize,
}

impl Guard {
    pub fn new(child: &tokio::process::Child, pid: u32, _watchdog: Arc<Watchdog>) -> Guard {
        // SAFETY: plain Win32 calls on handles we own; failures leave job = 0
        // and the process is then still killed through tokio's kill_on_drop.
        let job = unsafe {
            let job: HANDLE = CreateJobObjectW(std::ptr::null(), std::ptr::null());
            if !job.is_null() {
                let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = std::mem::zeroed();
                info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
                SetInformationJobObject(
                    job,
                    JobObjectExtendedLimitInformation,
                    &info as *const _ as *const _,
                    std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
                );
                if let Some(handle) = child.raw_handle() {
                    AssignProcessToJobObject(job, handle as HANDLE);
                }
            }
            job as isize
        };
        Guard { pid, job }
    }

    /// Ctrl-Break to the process group, the polite stop signal on Windows.
    pub fn terminate(&self) {
        // SAFETY: no pointers involved.
        unsafe {
            GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, self.pid);
        }
    }

    pub fn kill(&self) {
        if self.job != 0 {
            // SAFETY: the job handle is ours until Drop.
            unsafe {
                TerminateJobObject(self.job as HANDLE, 1);
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
        if self.job != 0 {
            // SAFETY: closed once, here.
            unsafe {
                CloseHandle(self.job as HANDLE);
            }
        }
    }
}

pub fn listening_addrs(_pid: u32) -> Vec<SocketAddr> {
    Vec::new()
}
