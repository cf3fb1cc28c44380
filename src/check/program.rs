//! Check 8, first half: processPath resolves to a regular file that the
//! account can execute, through folders it can enter. A script is read by
//! its `#!` interpreter, which must be executable too.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::config::Config;

use super::access::{chain, Account, Need};
use super::report::Report;

pub const NAME: &str = "program";

/// The `#!` interpreter of a script (its first word), if the file has one.
pub fn shebang(path: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let text = std::str::from_utf8(head.get(..n)?.strip_prefix(b"#!")?).ok()?;
    let first = text.lines().next()?.split_whitespace().next()?;
    Some(PathBuf::from(first))
}

/// True when the app can be started by the account as far as files go.
pub fn check(cfg: &Config, account: &Account, report: &mut Report) -> bool {
    let program = Path::new(&cfg.process_path);
    match std::fs::metadata(program) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            report.fail(
                NAME,
                format!("processPath {} is not a regular file", program.display()),
                "name the interpreter or program itself (for example .venv/bin/python)",
            );
            return false;
        }
        Err(e) => {
            report.fail(
                NAME,
                format!("processPath {}: {e}", program.display()),
                "fix processPath; `hpgate config` shows where it resolved",
            );
            return false;
        }
    }
    let mut asks = chain(program, Need::Execute);
    let interpreter = shebang(program);
    if let Some(interp) = &interpreter {
        asks.extend(chain(program, Need::Read));
        asks.extend(chain(interp, Need::Execute));
    }
    match account.first_denied(&asks) {
        Ok(None) => {
            let via = interpreter
                .map(|i| format!(" (a script run by {})", i.display()))
                .unwrap_or_default();
            report.ok(
                NAME,
                format!(
                    "{}{via} is a regular file {} can execute, through folders it can enter",
                    program.display(),
                    account.name()
                ),
            );
            true
        }
        Ok(Some(d)) => {
            report.fail(
                NAME,
                format!(
                    "processPath {}: {} (IIS would answer 0x80070005, access denied)",
                    program.display(),
                    account.sentence(&d)
                ),
                account.fix(&d),
            );
            false
        }
        Err(e) => {
            report.fail(NAME, e, "run the check as root for --as");
            false
        }
    }
}
