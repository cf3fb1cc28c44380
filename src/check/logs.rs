//! Check 10: the stdout log folder exists or can be created, and the
//! account can create files in it (hpgate writes the log as that account).

use std::path::Path;

use crate::config::{is_windows_absolute, Config};

use super::access::{chain, Account, Need};
use super::report::Report;

pub const NAME: &str = "log";

pub fn check(cfg: &Config, account: &Account, report: &mut Report) {
    if !cfg.stdout_log_enabled {
        report.ok(
            NAME,
            "stdoutLogEnabled is false: no stdout log file to write",
        );
        return;
    }
    let file = &cfg.stdout_log_file;
    if cfg!(unix) && is_windows_absolute(&file.to_string_lossy()) {
        report.fail(
            NAME,
            format!("stdoutLogFile {} is a Windows path", file.display()),
            "set stdoutLogFile to a path on this system (for example \".\\logs\\python\")",
        );
        return;
    }
    let Some(folder) = file.parent().filter(|p| !p.as_os_str().is_empty()) else {
        report.fail(
            NAME,
            format!("stdoutLogFile {} has no folder", file.display()),
            "give a path such as \".\\logs\\python\"",
        );
        return;
    };
    // The folder, or the nearest existing one above it that hpgate would
    // create it in.
    let existing = folder
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    if !existing.is_dir() {
        report.fail(
            NAME,
            format!(
                "the stdout log folder {}: {} is not a folder",
                folder.display(),
                existing.display()
            ),
            format!(
                "remove or rename {}, or point stdoutLogFile elsewhere",
                existing.display()
            ),
        );
        return;
    }
    writable(folder, existing, account, report);
}

/// Whether the account can create files in `folder`, or in `existing`
/// (the nearest folder above it that exists) to create it.
fn writable(folder: &Path, existing: &Path, account: &Account, report: &mut Report) {
    match account.first_denied(&chain(existing, Need::Write)) {
        Ok(None) if existing == folder => report.ok(
            NAME,
            format!(
                "{} can create log files in {}",
                account.name(),
                folder.display()
            ),
        ),
        Ok(None) => report.ok(
            NAME,
            format!(
                "{} does not exist yet; hpgate creates it as {} (it can write to {})",
                folder.display(),
                account.name(),
                existing.display()
            ),
        ),
        Ok(Some(d)) => {
            // A folder still to create: make it for the account, rather
            // than opening the folder above to it.
            let fix = if d.path == existing && existing != folder && cfg!(unix) {
                format!(
                    "mkdir -p {0} && chown {1} {0}",
                    folder.display(),
                    account.name()
                )
            } else {
                account.fix(&d)
            };
            report.fail(
                NAME,
                format!(
                    "the stdout log folder {}: {} (the app would run without a log file)",
                    folder.display(),
                    account.sentence(&d)
                ),
                fix,
            )
        }
        Err(e) => report.fail(NAME, e, "run the check as root for --as"),
    }
}
