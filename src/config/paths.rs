//! `%NAME%` expansion and path resolution, the way HttpPlatformHandler does
//! them, made to work on Linux too.
//!
//! Owns: environment references, `.`-relative paths against the site root,
//! Windows separators in relative paths, PATH look-up of bare program names.
//! It must not read web.config or decide defaults.

use std::path::{Component, Path, PathBuf};

/// The placeholder the supervisor fills with each process's port.
pub const PORT_PLACEHOLDER: &str = "%HTTP_PLATFORM_PORT%";

/// Expands `%NAME%` references with `lookup`. `%HTTP_PLATFORM_PORT%` and
/// unknown names stay literal, as in IIS. Names are matched exactly first,
/// then ignoring case, since Windows environment names are case-insensitive
/// and web.config files written there (`%home%`) rely on it.
pub fn expand_env(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) if is_env_name(&after[..end]) => {
                let name = &after[..end];
                match lookup(name).filter(|_| name != "HTTP_PLATFORM_PORT") {
                    Some(value) => out.push_str(&value),
                    None => {
                        out.push('%');
                        out.push_str(name);
                        out.push('%');
                    }
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '(' | ')' | '.' | '-'))
}

/// Looks a name up in hpgate's own environment: exact, then case-insensitive.
pub fn process_env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok().or_else(|| {
        std::env::vars()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// `C:\...`, `C:/...` or a UNC path `\\server\share`.
pub fn is_windows_absolute(s: &str) -> bool {
    let b = s.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/'))
        || s.starts_with("\\\\")
}

/// Resolves a configured path against the site root. Relative paths may use
/// Windows separators (`.\logs\python.log`); on Unix they become `/`.
/// Absolute paths are kept as written.
pub fn resolve(site_root: &Path, configured: &str) -> PathBuf {
    if is_windows_absolute(configured) {
        return PathBuf::from(configured);
    }
    let native = if cfg!(unix) {
        configured.replace('\\', "/")
    } else {
        configured.to_string()
    };
    let p = Path::new(&native);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    normalize(&site_root.join(p))
}

/// Drops `.` components so resolved paths read cleanly in `hpgate config`.
fn normalize(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// True when a configured program name has no directory part (`python3`).
pub fn is_bare_name(configured: &str) -> bool {
    !configured.is_empty() && !configured.contains(['/', '\\']) && !is_windows_absolute(configured)
}

/// Finds a bare program name: a file of that name in the site root first
/// (what IIS does), then each PATH entry.
pub fn find_program(site_root: &Path, name: &str, path_var: Option<&str>) -> Option<PathBuf> {
    let local = site_root.join(name);
    if local.is_file() {
        return Some(local);
    }
    let path_var = path_var?;
    std::env::split_paths(path_var).find_map(|dir| {
        let candidates: Vec<PathBuf> = if cfg!(windows) && Path::new(name).extension().is_none() {
            vec![dir.join(format!("{name}.exe")), dir.join(name)]
        } else {
            vec![dir.join(name)]
        };
        candidates.into_iter().find(|c| c.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/app".into()),
            "HTTP_PLATFORM_PORT" => Some("1".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_known_keeps_unknown_and_port() {
        assert_eq!(expand_env("%HOME%/x", &env), "/home/app/x");
        assert_eq!(expand_env("%NOPE%/x", &env), "%NOPE%/x");
        assert_eq!(
            expand_env("--port %HTTP_PLATFORM_PORT% %HOME%", &env),
            "--port %HTTP_PLATFORM_PORT% /home/app"
        );
        assert_eq!(expand_env("100% sure %", &env), "100% sure %");
        assert_eq!(expand_env("%%HOME%%", &env), "%/home/app%");
        assert_eq!(expand_env("", &env), "");
    }

    #[test]
    fn windows_absolute_detection() {
        assert!(is_windows_absolute("C:\\Python310\\python.exe"));
        assert!(is_windows_absolute("d:/home"));
        assert!(is_windows_absolute("\\\\server\\share"));
        assert!(!is_windows_absolute(".\\python.log"));
        assert!(!is_windows_absolute("/usr/bin/python3"));
    }

    #[cfg(unix)]
    #[test]
    fn resolves_relative_with_backslashes() {
        let root = Path::new("/srv/site");
        assert_eq!(
            resolve(root, ".\\python.log"),
            PathBuf::from("/srv/site/python.log")
        );
        assert_eq!(
            resolve(root, ".\\logs\\py.log"),
            PathBuf::from("/srv/site/logs/py.log")
        );
        assert_eq!(resolve(root, "logs/x"), PathBuf::from("/srv/site/logs/x"));
        assert_eq!(resolve(root, "/var/log/x"), PathBuf::from("/var/log/x"));
        assert_eq!(resolve(root, "C:\\x\\y"), PathBuf::from("C:\\x\\y"));
    }

    #[test]
    fn bare_names() {
        assert!(is_bare_name("python3"));
        assert!(!is_bare_name("./python3"));
        assert!(!is_bare_name(".venv\\Scripts\\python.exe"));
        assert!(!is_bare_name(""));
    }
}
