//! `hpgate check [--config PATH] [--as USER] [--json]`: finds what will go
//! wrong before it does, in seconds. Every check prints one line (ok,
//! warning, failure, or skip when an earlier failure makes it meaningless)
//! with the fix; the exit code is 0 (all ok), 1 (warnings only) or 2 (a
//! failure). docs/troubleshooting.md has a section per check (`check-NAME`).
//!
//! One file per check family, in the order they run: `config` (7),
//! `program` and `python` (8: can the account run the interpreter and read
//! its whole installation), `logs` (10), `listen` (11), `trial` (12: a real
//! start, with `output` recognising well-known first lines and `socketio`
//! (13: the handshake while it runs, then the WebSocket through an
//! in-process hpgate), then `port` (9, which needs the trial's verdict).
//! `access` is the account and how it is asked (see there for `--as`);
//! `report` the lines, their rendering and the exit code.
//!
//! Reuses rather than repeats: configuration loading (`config::load`, so
//! the errors are `hpgate config`'s), the supervisor's spawn, readiness
//! and "listens elsewhere" diagnosis (`supervisor::Trial`), `hpgate run`'s
//! gateway wiring (`lifecycle::Serving`), and `proxy::bind`'s messages. It must not change the site: the trial start
//! writes no stdout log file and leaves no process behind (nor does the
//! Socket.IO gateway's).

pub mod access;
mod config;
mod listen;
mod logs;
mod output;
mod port;
mod program;
mod python;
mod report;
mod socketio;
mod trial;

use std::process::ExitCode;

use crate::config::Sources;

pub use report::{Report, Status};

/// `hpgate check`'s own options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--as USER`: check for this account instead of the current one.
    pub as_user: Option<String>,
    /// `--json`: print the report as JSON.
    pub json: bool,
}

pub fn run(sources: &Sources, opts: &Options) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = runtime.block_on(all(sources, opts));
    if opts.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    ExitCode::from(report.exit_code())
}

/// Every check, in order; later ones are skipped when they cannot mean anything.
pub async fn all(sources: &Sources, opts: &Options) -> Report {
    let mut report = Report::default();
    let account = account(opts, &mut report);
    let Some(cfg) = config::check(sources, &mut report) else {
        report.skip(
            "program",
            "the configuration has errors; the other checks need it",
        );
        return report;
    };
    let runnable = program::check(&cfg, &account, &mut report);
    let python = python::find(&cfg);
    let readable = runnable && python::check(python.as_ref(), &account, &mut report);
    logs::check(&cfg, &account, &mut report);
    listen::check(&cfg, &mut report).await;
    let outcome = if readable {
        trial::check(&cfg, &account, python.as_ref(), &mut report).await
    } else {
        report.skip(
            trial::NAME,
            format!("not started: {} cannot run it (see above)", account.name()),
        );
        trial::Outcome::NotRun
    };
    port::check(&cfg, &outcome, &mut report);
    report
}

/// The account line; a failed `--as` falls back to the current account.
fn account(opts: &Options, report: &mut Report) -> access::Account {
    match access::resolve(opts.as_user.as_deref()) {
        Ok(a) => {
            report.ok("account", format!("checking as {}", a.describe()));
            a
        }
        Err(e) => {
            let current = access::resolve(None).unwrap_or(access::Account::Current {
                name: "the current account".into(),
            });
            let fix = if cfg!(windows) {
                "check the app pool identity's access with icacls (it needs read and execute on the interpreter's whole folder)"
            } else {
                "run hpgate check --as USER as root"
            };
            report.add(
                "account",
                if cfg!(windows) {
                    Status::Warning
                } else {
                    Status::Failure
                },
                format!("{e}; checking as {}", current.describe()),
                Some(fix.into()),
            );
            current
        }
    }
}
