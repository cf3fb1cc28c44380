//! `hpgate service install|uninstall|start|stop`: hpgate as a Windows
//! service, registered with the Service Control Manager (SCM).
//!
//! Owns building the service's command line (`hpgate.exe service run
//! --name NAME --config PATH [run options]`) and turning SCM errors into
//! readable messages; both are plain code, tested on every OS. The SCM
//! calls themselves live in `windows.rs`. Elsewhere `hpgate service`
//! exits 2 and points to systemd (docs/deploy-linux.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{GatewayArgs, ServiceCommand};
use crate::config::join_arguments;

#[cfg(windows)]
mod windows;

/// Runs a `hpgate service ...` command.
#[cfg(windows)]
pub fn main(cmd: ServiceCommand) -> ExitCode {
    windows::main(cmd)
}

/// Runs a `hpgate service ...` command: not on this OS.
#[cfg(not(windows))]
pub fn main(_cmd: ServiceCommand) -> ExitCode {
    eprintln!(
        "error: `hpgate service` manages Windows services; on this system run hpgate under systemd instead (docs/deploy-linux.md)"
    );
    ExitCode::from(2)
}

/// The arguments the SCM starts hpgate with: `service run`, the name, the
/// web.config as an absolute path (a service starts in System32), then the
/// run options as given. Environment variables are not carried over: the
/// service does not see the installing shell's.
pub fn service_argv(name: &str, run: &GatewayArgs, cwd: &Path) -> Vec<String> {
    let config = absolute_config(run.config.as_deref(), cwd);
    let mut argv: Vec<String> = ["service", "run", "--name", name, "--config"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.push(config.to_string_lossy().into_owned());
    let many = [
        ("--listen", &run.listen),
        ("--tls-cert", &run.tls_cert),
        ("--tls-key", &run.tls_key),
        ("--tls-pfx", &run.tls_pfx),
        ("--acme-domain", &run.acme_domain),
    ];
    for (flag, values) in many {
        for v in values {
            argv.extend([flag.to_string(), v.clone()]);
        }
    }
    let one = [
        ("--acme-email", &run.acme_email),
        ("--acme-directory", &run.acme_directory),
        ("--acme-directory-ca", &run.acme_directory_ca),
        ("--acme-cache", &run.acme_cache),
        ("--websocket-compression", &run.websocket_compression),
        ("--log-format", &run.log_format),
        ("--worker-threads", &run.worker_threads),
    ];
    for (flag, value) in one {
        if let Some(v) = value {
            argv.extend([flag.to_string(), v.clone()]);
        }
    }
    if !run.command.is_empty() {
        argv.push("--".into());
        argv.extend(run.command.iter().cloned());
    }
    argv
}

/// `--config` made absolute against `cwd`; ./web.config when not given.
pub fn absolute_config(config: Option<&Path>, cwd: &Path) -> PathBuf {
    let config = config.unwrap_or(Path::new("web.config"));
    if config.is_absolute() {
        config.to_path_buf()
    } else {
        cwd.join(config)
    }
}

/// The whole command line as the SCM stores it (Windows quoting rules:
/// what `CommandLineToArgvW` splits back into `exe` and `argv`).
pub fn command_line(exe: &Path, argv: &[String]) -> String {
    let mut all = vec![exe.to_string_lossy().into_owned()];
    all.extend(argv.iter().cloned());
    join_arguments(&all)
}

/// The site folder named in the service's description and holding its
/// log folder: the folder of the web.config.
pub fn site_folder(config: &Path) -> PathBuf {
    config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A readable message for a failed SCM call (`what`, e.g. "install the
/// service"), from the Win32 error code when there is one.
pub fn explain(what: &str, name: &str, code: Option<i32>, detail: &str) -> String {
    let hint = match code {
        Some(5) => "access denied: run it as Administrator (an elevated prompt)".to_string(),
        Some(1060) => format!("there is no service named {name} (see `sc.exe query type= service`)"),
        Some(1073) => format!("a service named {name} already exists; `hpgate service uninstall --name {name}` first, or pick another --name"),
        Some(1072) => format!("the service {name} is marked for deletion; close the Services console and stop it, then try again"),
        Some(1056) => format!("the service {name} is already running"),
        Some(1062) => format!("the service {name} is not running"),
        Some(1058) => format!("the service {name} is disabled (`sc.exe config {name} start= auto`)"),
        Some(1069) => "the service account's logon failed: check the account and its password (services.msc, Log On tab)".to_string(),
        Some(1063) => "`hpgate service run` is started by the Service Control Manager; on a console use `hpgate run`".to_string(),
        _ => detail.to_string(),
    };
    format!("error: cannot {what}: {hint}")
}

#[cfg(test)]
mod tests;
