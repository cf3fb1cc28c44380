//! The Service Control Manager side: install/uninstall/start/stop, and
//! `service run`, which hands the thread to the SCM's dispatcher; its
//! service main runs the same gateway as `hpgate run`. Stop and Shutdown
//! cancel the stop request: the same graceful shutdown as Ctrl-C, with
//! StopPending reported meanwhile and Stopped at the end.
//!
//! A service has no console: hpgate's own log goes to
//! `<site>\logs\hpgate-service.log`.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use super::{command_line, explain, service_argv, site_folder};
use crate::cli::{ServiceCommand, ServiceRunArgs};
use crate::config::{self, LogFormat};

/// The `service run` arguments, for the service main the SCM calls.
static RUN_ARGS: OnceLock<ServiceRunArgs> = OnceLock::new();

/// Extra wait hint beyond shutdownTimeLimit (the app's kill and exit).
const STOP_MARGIN: Duration = Duration::from_secs(10);

mod ffi {
    // The crate's macro expands to the `extern "system"` entry point.
    #![allow(unsafe_code)]
    use super::service_main as main_handler;
    windows_service::define_windows_service!(service_main, main_handler);

    /// Hands this thread to the SCM's dispatcher until the service ends.
    pub(super) fn dispatch(name: &str) -> windows_service::Result<()> {
        windows_service::service_dispatcher::start(name, service_main)
    }
}

pub fn main(cmd: ServiceCommand) -> ExitCode {
    let result = match cmd {
        ServiceCommand::Install(args) => install(args),
        ServiceCommand::Uninstall(n) => uninstall(&n.name),
        ServiceCommand::Start(n) => start(&n.name),
        ServiceCommand::Stop(n) => stop(&n.name),
        ServiceCommand::Run(args) => dispatch(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

/// Maps a windows-service error to the readable message of [`explain`].
fn fail<'a>(what: &'a str, name: &'a str) -> impl Fn(windows_service::Error) -> String + 'a {
    move |e| match &e {
        windows_service::Error::Winapi(io) => {
            explain(what, name, io.raw_os_error(), &io.to_string())
        }
        other => explain(what, name, None, &other.to_string()),
    }
}

fn manager(access: ServiceManagerAccess, what: &str, name: &str) -> Result<ServiceManager, String> {
    ServiceManager::local_computer(None::<&str>, access).map_err(fail(what, name))
}

fn install(args: ServiceRunArgs) -> Result<(), String> {
    let name = args.service.name.clone();
    let what = "install the service";
    let cwd = std::env::current_dir().map_err(|e| explain(what, &name, None, &e.to_string()))?;
    let exe = std::env::current_exe().map_err(|e| explain(what, &name, None, &e.to_string()))?;
    let argv = service_argv(&name, &args.run, &cwd);
    let config = super::absolute_config(args.run.config.as_deref(), &cwd);
    let site = site_folder(&config);
    let access = ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE;
    let scm = manager(access, what, &name)?;
    let info = ServiceInfo {
        name: OsString::from(&name),
        display_name: OsString::from(format!("hpgate ({name})")),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.clone(),
        launch_arguments: argv.iter().map(OsString::from).collect(),
        dependencies: vec![],
        account_name: None,
        account_password: None,
    };
    let service = scm
        .create_service(&info, ServiceAccess::CHANGE_CONFIG)
        .map_err(fail(what, &name))?;
    let description = format!("hpgate gateway for the site {}", site.display());
    service
        .set_description(description)
        .map_err(fail("describe the service", &name))?;
    println!("installed service {name} (LocalSystem, starts automatically):");
    println!("  {}", command_line(&exe, &argv));
    println!(
        "start it with `hpgate service start --name {name}`; its log: {}\\logs\\hpgate-service.log",
        site.display()
    );
    Ok(())
}

fn uninstall(name: &str) -> Result<(), String> {
    let what = "uninstall the service";
    let scm = manager(ServiceManagerAccess::CONNECT, what, name)?;
    let service = scm
        .open_service(name, ServiceAccess::DELETE | ServiceAccess::QUERY_STATUS)
        .map_err(fail(what, name))?;
    service.delete().map_err(fail(what, name))?;
    let running = service
        .query_status()
        .is_ok_and(|s| s.current_state != ServiceState::Stopped);
    if running {
        println!("service {name} marked for deletion: it is removed once it stops (`hpgate service stop --name {name}`)");
    } else {
        println!("uninstalled service {name}");
    }
    Ok(())
}

fn start(name: &str) -> Result<(), String> {
    let what = "start the service";
    let scm = manager(ServiceManagerAccess::CONNECT, what, name)?;
    let service = scm
        .open_service(name, ServiceAccess::START)
        .map_err(fail(what, name))?;
    service.start::<&OsStr>(&[]).map_err(fail(what, name))?;
    println!("asked the Service Control Manager to start {name}");
    Ok(())
}

/// Asks for a stop and waits (up to two minutes) until it is Stopped.
fn stop(name: &str) -> Result<(), String> {
    let what = "stop the service";
    let scm = manager(ServiceManagerAccess::CONNECT, what, name)?;
    let service = scm
        .open_service(name, ServiceAccess::STOP | ServiceAccess::QUERY_STATUS)
        .map_err(fail(what, name))?;
    service.stop().map_err(fail(what, name))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let status = service.query_status().map_err(fail(what, name))?;
        if status.current_state == ServiceState::Stopped {
            println!("stopped service {name}");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("asked {name} to stop; it is still stopping (see its log)");
    Ok(())
}

/// `service run`: blocks in the SCM's dispatcher until the service ends.
fn dispatch(args: ServiceRunArgs) -> Result<(), String> {
    let name = args.service.name.clone();
    let _ = RUN_ARGS.set(args);
    ffi::dispatch(&name).map_err(fail("run as a service", &name))
}

/// Called by the SCM on its own thread (through `ffi::service_main`).
fn service_main(_scm_args: Vec<OsString>) {
    let Some(args) = RUN_ARGS.get().cloned() else {
        return;
    };
    let name = args.service.name.clone();
    let request = CancellationToken::new();
    let status: Arc<OnceLock<service_control_handler::ServiceStatusHandle>> = Arc::default();
    let wait = Arc::new(Mutex::new(STOP_MARGIN));
    let (status2, request2, wait2) = (status.clone(), request.clone(), wait.clone());
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            let hint = wait2.lock().map_or(STOP_MARGIN, |w| *w);
            if let Some(h) = status2.get() {
                report(h, state(ServiceState::StopPending, hint, 0));
            }
            request2.cancel();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(handle) = service_control_handler::register(&name, handler) else {
        return;
    };
    let _ = status.set(handle);
    let code = run_gateway(args, request, &wait, handle);
    report(&handle, state(ServiceState::Stopped, Duration::ZERO, code));
}

/// Tells the SCM the service's state (SetServiceStatus); a failure is
/// logged: the SCM then shows a stale state, and there is nothing to retry.
fn report(handle: &service_control_handler::ServiceStatusHandle, status: ServiceStatus) {
    if let Err(e) = handle.set_service_status(status) {
        tracing::warn!("Win32 call SetServiceStatus failed: {e}");
    }
}

/// Logs to the site's log file, reports Running, runs the gateway until
/// the stop request; returns hpgate's exit code (0 when it stopped well).
fn run_gateway(
    args: ServiceRunArgs,
    request: CancellationToken,
    wait: &Mutex<Duration>,
    handle: service_control_handler::ServiceStatusHandle,
) -> u32 {
    let cwd = super::absolute_config(args.run.config.as_deref(), std::path::Path::new("."));
    let site = site_folder(&cwd);
    let env = |name: &str| std::env::var(name).ok();
    let sources = args.run.sources(&env, site.clone());
    let loaded = config::load(&sources, &config::expand_lookup);
    let format = loaded.as_ref().map_or(LogFormat::Text, |c| c.log_format);
    log_to_file(&site, format);
    match &loaded {
        Ok(cfg) => {
            if let Ok(mut w) = wait.lock() {
                *w = cfg.shutdown_time_limit + STOP_MARGIN;
            }
        }
        Err(errors) => {
            tracing::error!("{errors}");
            return 2;
        }
    }
    report(&handle, state(ServiceState::Running, Duration::ZERO, 0));
    let code = crate::lifecycle::run_until(sources, request);
    if code == ExitCode::SUCCESS {
        0
    } else {
        1
    }
}

/// hpgate's own log in `<site>\logs\hpgate-service.log` (appended): a
/// service's standard error goes nowhere. The later init in the
/// lifecycle is then a no-op.
fn log_to_file(site: &std::path::Path, format: LogFormat) {
    let folder = site.join("logs");
    let _ = std::fs::create_dir_all(&folder);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(folder.join("hpgate-service.log"));
    let Ok(file) = file else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HPGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// A status for the SCM; `code` non-zero is reported as a service-specific
/// exit code (hpgate's: 2 configuration, 1 other failures).
fn state(current_state: ServiceState, wait_hint: Duration, code: u32) -> ServiceStatus {
    let controls_accepted = if current_state == ServiceState::Running {
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
    } else {
        ServiceControlAccept::empty()
    };
    let exit_code = if code == 0 {
        ServiceExitCode::NO_ERROR
    } else {
        ServiceExitCode::ServiceSpecific(code)
    };
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state,
        controls_accepted,
        exit_code,
        checkpoint: 0,
        wait_hint,
        process_id: None,
    }
}
