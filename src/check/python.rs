//! Check 8, second half: for a Python interpreter, the whole installation
//! it needs is readable by the account: the venv's `pyvenv.cfg`, the base
//! interpreter its `home` names, the standard library, and site-packages.
//! (The user story's second failure: python.exe readable, the rest of its
//! folder not, so the app never starts and requests load forever.)
//!
//! The layout is read from the files, not by running the interpreter, so
//! it also works when the interpreter cannot run for this account.

use std::path::{Path, PathBuf};

use crate::config::{find_program, Config};

use super::access::{chain, Account, Ask, Need};
use super::program::shebang;
use super::report::Report;

pub const NAME: &str = "python";

/// A Python installation as the interpreter will look for it.
#[derive(Debug, Clone)]
pub struct Installation {
    pub interpreter: PathBuf,
    /// The venv folder (where pyvenv.cfg is).
    pub venv: Option<PathBuf>,
    /// The base interpreter a venv's `home` names.
    pub base: Option<PathBuf>,
    /// `home` as written in pyvenv.cfg.
    pub home: Option<PathBuf>,
    pub stdlib: Option<PathBuf>,
    pub site_packages: Vec<PathBuf>,
}

impl Installation {
    /// "interpreter X (venv V)" or "(no venv: ...)".
    pub fn describe(&self) -> String {
        match &self.venv {
            Some(v) => format!(
                "interpreter {} (venv {})",
                self.interpreter.display(),
                v.display()
            ),
            None => format!(
                "interpreter {} (no venv: its own installation)",
                self.interpreter.display()
            ),
        }
    }
}

fn is_python(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().starts_with("python"))
}

/// The interpreter processPath runs: itself, or a script's `#!` Python
/// (`.venv/bin/waitress-serve`); None when the app is not Python.
pub fn find(cfg: &Config) -> Option<Installation> {
    let program = PathBuf::from(&cfg.process_path);
    let interpreter = if is_python(&program) {
        program
    } else {
        let interp = shebang(&program)?;
        let interp = if interp.ends_with("env") {
            // `#!/usr/bin/env python3`: the word after env, on PATH.
            let name = std::fs::read_to_string(&program).ok()?;
            let word = name.lines().next()?.split_whitespace().nth(1)?.to_string();
            let path = std::env::var("PATH").ok();
            find_program(&cfg.site_root, &word, path.as_deref())?
        } else {
            interp
        };
        is_python(&interp).then_some(interp)?
    };
    Some(layout(interpreter))
}

/// `key = value` lines of pyvenv.cfg.
fn pyvenv_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().to_string())
    })
}

/// "3.11" from "3.11.7" or "3.11.7.final.0".
fn major_minor(v: &str) -> Option<String> {
    let mut parts = v.split('.');
    Some(format!("{}.{}", parts.next()?, parts.next()?))
}

fn layout(interpreter: PathBuf) -> Installation {
    let here = interpreter
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let venv = [
        here.clone(),
        here.parent().map(Path::to_path_buf).unwrap_or_default(),
    ]
    .into_iter()
    .find(|d| d.join("pyvenv.cfg").is_file());
    let cfg_text = venv
        .as_ref()
        .and_then(|v| std::fs::read_to_string(v.join("pyvenv.cfg")).ok())
        .unwrap_or_default();
    let mut version = pyvenv_value(&cfg_text, "version")
        .or_else(|| pyvenv_value(&cfg_text, "version_info"))
        .and_then(|v| major_minor(&v));
    let home = pyvenv_value(&cfg_text, "home").map(PathBuf::from);
    // The folder of the real interpreter: `home`, or the program's own.
    let bin = home.clone().unwrap_or_else(|| {
        std::fs::canonicalize(&interpreter)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or(here.clone())
    });
    let base = home
        .as_ref()
        .and_then(|h| base_interpreter(h, version.as_deref()));
    if version.is_none() {
        version = version_from_name(base.as_ref().unwrap_or(&interpreter));
    }
    let prefix = if bin.ends_with("bin") {
        bin.parent().map(Path::to_path_buf).unwrap_or(bin.clone())
    } else {
        bin.clone()
    };
    let stdlib = stdlib_in(&prefix, version.as_deref());
    let site_packages = site_packages(venv.as_deref(), stdlib.as_deref(), version.as_deref());
    Installation {
        interpreter,
        venv,
        base,
        home,
        stdlib,
        site_packages,
    }
}

/// "3.11" from an interpreter whose real name is `python3.11`.
fn version_from_name(p: &Path) -> Option<String> {
    let real = std::fs::canonicalize(p).ok()?;
    let name = real.file_name()?.to_str()?.strip_prefix("python")?;
    name.contains('.').then(|| name.to_string())
}

/// The venv's site-packages (or the installation's own), one entry per
/// real folder: lib64 is often a link to lib.
fn site_packages(
    venv: Option<&Path>,
    stdlib: Option<&Path>,
    version: Option<&str>,
) -> Vec<PathBuf> {
    let candidates = match venv {
        Some(v) => lib_candidates(v, version),
        None => stdlib.map(Path::to_path_buf).into_iter().collect(),
    };
    let mut found: Vec<PathBuf> = Vec::new();
    let mut real = Vec::new();
    for sp in candidates
        .iter()
        .map(|l| l.join("site-packages"))
        .filter(|p| p.is_dir())
    {
        let r = std::fs::canonicalize(&sp).unwrap_or(sp.clone());
        if !real.contains(&r) {
            real.push(r);
            found.push(sp);
        }
    }
    found
}

fn base_interpreter(home: &Path, version: Option<&str>) -> Option<PathBuf> {
    let mut names = Vec::new();
    if let Some(v) = version {
        names.push(format!("python{v}"));
    }
    names.extend(["python3", "python", "python.exe"].map(String::from));
    names
        .into_iter()
        .map(|n| home.join(n))
        .find(|p| p.is_file())
}

/// `lib/pythonX.Y` and `Lib` under a prefix (the second is Windows).
fn lib_candidates(prefix: &Path, version: Option<&str>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(ver) = version {
        v.push(prefix.join("lib").join(format!("python{ver}")));
        v.push(prefix.join("lib64").join(format!("python{ver}")));
    }
    v.push(prefix.join("Lib"));
    v
}

fn stdlib_in(prefix: &Path, version: Option<&str>) -> Option<PathBuf> {
    lib_candidates(prefix, version)
        .into_iter()
        .find(|d| d.join("os.py").is_file())
}

/// Checks what the installation needs; true when nothing is denied.
pub fn check(inst: Option<&Installation>, account: &Account, report: &mut Report) -> bool {
    let Some(inst) = inst else {
        report.skip(
            NAME,
            "processPath is not a Python interpreter (nor a script run by one)",
        );
        return true;
    };
    let Some(stdlib) = &inst.stdlib else {
        report.warn(
            NAME,
            format!("cannot find the standard library of {} (no lib/pythonX.Y/os.py or Lib\\os.py)", inst.describe()),
            "check that the interpreter (and a venv's home in pyvenv.cfg) points at a complete Python installation",
        );
        return true;
    };
    let parts = parts(inst, stdlib);
    for (what, asks) in &parts {
        match account.first_denied(asks) {
            Ok(None) => {}
            Ok(Some(d)) => {
                report.fail(
                    NAME,
                    format!(
                        "{} cannot use {what} of {}: {} (the interpreter fails or hangs at start: endless loading)",
                        account.name(),
                        inst.describe(),
                        account.sentence(&d)
                    ),
                    account.fix(&d),
                );
                return false;
            }
            Err(e) => {
                report.fail(NAME, e, "run the check as root for --as");
                return false;
            }
        }
    }
    ok_line(inst, stdlib, account, report);
    true
}

/// What the interpreter needs, in the order it needs it, each with a name.
fn parts(inst: &Installation, stdlib: &Path) -> Vec<(String, Vec<Ask>)> {
    let mut parts: Vec<(String, Vec<Ask>)> = Vec::new();
    if let Some(v) = &inst.venv {
        let cfg = v.join("pyvenv.cfg");
        parts.push(("the venv's pyvenv.cfg".into(), chain(&cfg, Need::Read)));
    }
    if let (Some(base), Some(home)) = (&inst.base, &inst.home) {
        let what = format!(
            "the base interpreter pyvenv.cfg names (home = {})",
            home.display()
        );
        parts.push((what, chain(base, Need::Execute)));
    }
    parts.push(("the standard library".into(), chain(stdlib, Need::Tree)));
    for sp in &inst.site_packages {
        parts.push(("site-packages".into(), chain(sp, Need::Tree)));
    }
    parts
}

fn ok_line(inst: &Installation, stdlib: &Path, account: &Account, report: &mut Report) {
    let sp: Vec<String> = inst
        .site_packages
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let sp = if sp.is_empty() {
        String::new()
    } else {
        format!(", site-packages {}", sp.join(", "))
    };
    report.ok(
        NAME,
        format!(
            "{} can read the whole installation of {}: standard library {}{sp}",
            account.name(),
            inst.describe(),
            stdlib.display()
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Windows venv (Scripts\python.exe, home = the install folder with
    /// Lib\os.py) is read the same way on any system.
    #[test]
    fn reads_a_windows_style_venv() {
        let root = std::env::temp_dir().join(format!("hpgate-check-py-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let install = root.join("Python310");
        let venv = root.join("site").join(".venv");
        for d in [
            install.join("Lib"),
            venv.join("Scripts"),
            venv.join("Lib/site-packages"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(install.join("Lib/os.py"), "").unwrap();
        std::fs::write(install.join("python.exe"), "").unwrap();
        std::fs::write(venv.join("Scripts/python.exe"), "").unwrap();
        let cfg = format!("home = {}\nversion = 3.10.11\n", install.display());
        std::fs::write(venv.join("pyvenv.cfg"), cfg).unwrap();

        let inst = layout(venv.join("Scripts/python.exe"));
        assert_eq!(inst.venv.as_deref(), Some(venv.as_path()));
        assert_eq!(inst.base, Some(install.join("python.exe")));
        assert_eq!(inst.stdlib, Some(install.join("Lib")));
        assert_eq!(inst.site_packages, vec![venv.join("Lib/site-packages")]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
