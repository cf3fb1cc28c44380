//! The app's command as the operating system will see it: does the program
//! exist and can it run, and do the arguments fit the OS limits.
//!
//! Owns these checks and their sentences, so `hpgate config` and the start
//! of `hpgate run` report them with a position instead of a failed start
//! later. It must not resolve paths (`paths.rs`) nor start anything.

/// Linux's limit for one argument (MAX_ARG_STRLEN, 32 pages), NUL included.
#[cfg(not(windows))]
const MAX_ARG_BYTES: usize = 128 * 1024;
/// A safe total for program and arguments: the kernel's ARG_MAX is a
/// quarter of the stack limit (2 MiB under the usual 8 MiB) and also holds
/// the environment.
#[cfg(not(windows))]
const MAX_ARGV_BYTES: usize = 2 * 1024 * 1024;
/// Windows' limit for a whole command line, in UTF-16 units.
#[cfg(windows)]
const MAX_COMMAND_LINE: usize = 32_767;

/// Checks a resolved program path: it must exist, be a file, and (on Unix)
/// carry an execute permission bit.
pub fn check_program(program: &str) -> Result<(), String> {
    let meta = match std::fs::metadata(program) {
        Ok(m) => m,
        Err(e) => return Err(missing_program(program, &e)),
    };
    if meta.is_dir() {
        return Err(format!(
            "{program} is a directory; processPath must name the program to run (for example \".venv/bin/python\")"
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(format!(
                "{program} is not executable (no execute permission); run `chmod +x` on it, or start it through its interpreter (processPath=\"python3\" arguments=\"{}\")",
                std::path::Path::new(program)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
        }
    }
    Ok(())
}

fn missing_program(program: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound if super::paths::is_bare_name(program) => format!(
            "{program} was not found in the site root or on PATH; give its path (for example \".venv/bin/python\")"
        ),
        std::io::ErrorKind::NotFound => format!("{program} does not exist (no such file)"),
        std::io::ErrorKind::PermissionDenied => format!(
            "{program} cannot be inspected: permission denied (the account running hpgate needs execute access to every folder above it)"
        ),
        _ => format!("{program} cannot be used: {e}"),
    }
}

/// Checks that program and arguments fit what the OS accepts for a new
/// process (the port placeholder is counted as written, an upper bound).
#[cfg(not(windows))]
pub fn check_size(program: &str, argv: &[String]) -> Result<(), String> {
    if let Some((i, a)) = argv
        .iter()
        .enumerate()
        .find(|(_, a)| a.len() + 1 > MAX_ARG_BYTES)
    {
        return Err(format!(
            "argument {} is {} bytes; this system accepts at most {} bytes per argument",
            i + 1,
            a.len(),
            MAX_ARG_BYTES - 1
        ));
    }
    let total: usize = std::iter::once(program)
        .chain(argv.iter().map(String::as_str))
        .map(|a| a.len() + 1)
        .sum();
    if total > MAX_ARGV_BYTES {
        return Err(format!(
            "program and arguments are {total} bytes; hpgate allows at most {MAX_ARGV_BYTES} bytes (2 MiB) in all, to stay under the system's limit"
        ));
    }
    Ok(())
}

#[cfg(windows)]
pub fn check_size(program: &str, argv: &[String]) -> Result<(), String> {
    let line = super::values::join_arguments(
        &std::iter::once(program.to_string())
            .chain(argv.iter().cloned())
            .collect::<Vec<_>>(),
    );
    let units = line.encode_utf16().count();
    if units > MAX_COMMAND_LINE {
        return Err(format!(
            "the command line is {units} characters; Windows accepts at most {MAX_COMMAND_LINE}"
        ));
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn program_checks_use_the_right_words() {
        let dir = std::env::temp_dir();
        let d = dir.display().to_string();
        assert!(check_program(&d).unwrap_err().contains("is a directory"));
        let missing = dir.join("hpgate-no-such-program").display().to_string();
        assert!(check_program(&missing)
            .unwrap_err()
            .contains("no such file"));
        assert!(check_program("hpgate-no-such-program")
            .unwrap_err()
            .contains("on PATH"));
        assert!(check_program("/bin/sh").is_ok());
    }

    #[test]
    fn sizes() {
        assert!(check_size("p", &["a".repeat(MAX_ARG_BYTES - 1)]).is_ok());
        let e = check_size("p", &["x".into(), "a".repeat(MAX_ARG_BYTES)]).unwrap_err();
        assert!(e.starts_with("argument 2 is 131072 bytes"), "{e}");
        let many = vec!["a".repeat(100_000); 25];
        assert!(check_size("p", &many).unwrap_err().contains("2 MiB"));
    }
}
