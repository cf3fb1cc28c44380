//! Configuration: where it comes from and what it ends up as.
//!
//! Owns the precedence rule (command-line flag > environment variable >
//! `hpgate:` appSettings > default), finding and reading web.config, and
//! turning every problem into a positioned [`ConfigError`]. It must not
//! start anything: loading is pure apart from reading files and PATH.

mod command;
mod error;
mod listen;
mod paths;
mod settings;
mod spec;
mod tls;
mod values;
mod xml;

use std::path::{Path, PathBuf};

pub use error::{line_column, ConfigError, ConfigErrors, Origin};
pub use listen::{Listen, Listeners};
pub use paths::{
    find_program, is_windows_absolute, process_env_lookup as expand_lookup, PORT_PLACEHOLDER,
};
pub use settings::{Config, DEFAULT_LISTEN, SETTINGS};
pub use spec::{Place, Setting};
pub use tls::{NameList, PathList, Secret};
pub use values::{
    format_span, join_arguments, split_arguments, split_windows, Compression, LogFormat,
};

use settings::Problems;
use xml::Element;

/// What the command line and environment say, before web.config is read.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// An explicit web.config path (flag or HPGATE_CONFIG) and where it came from.
    pub config: Option<(PathBuf, Origin)>,
    /// Settings given by a flag or its environment variable (the ones
    /// declared with `flag:`), with the raw value and where it came from.
    pub settings: Vec<(&'static Setting, String, Origin)>,
    /// `-- COMMAND ARGS...`: replaces processPath and arguments.
    pub command: Vec<String>,
    /// The folder hpgate was started in.
    pub cwd: PathBuf,
}

/// Loads the effective configuration, or every problem found.
pub fn load(src: &Sources, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let file = find_file(src)?;
    let site_root = file
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| src.cwd.clone());
    let mut cfg = Config::defaults(site_root);
    let mut errors = Vec::new();

    let mut detailed_errors_set = false;
    let mut at = Positions::default();
    if let Some(path) = &file {
        detailed_errors_set = read_web_config(
            &mut cfg,
            path,
            !src.command.is_empty(),
            env,
            &mut errors,
            &mut at,
        );
        cfg.config_file = Some(path.clone());
    }

    take_command(&mut cfg, src, at, &mut errors);

    for (setting, raw, origin) in &src.settings {
        if let Err(msg) = settings::apply(&mut cfg, setting, raw, &|_| None) {
            errors.push(ConfigError::new(origin.clone(), msg));
        }
    }

    if !detailed_errors_set {
        // The app's output can hold secrets: show it only to local users
        // unless the site owner opts in.
        cfg.detailed_errors = cfg.listen.all_loopback();
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The web.config to read: `--config`, else `./web.config`, else none
/// when the command comes after `--`.
fn find_file(src: &Sources) -> Result<Option<PathBuf>, ConfigErrors> {
    Ok(match &src.config {
        Some((path, origin)) => {
            let path = src.cwd.join(path);
            if !path.is_file() {
                return Err(ConfigError::new(
                    origin.clone(),
                    format!("no web.config at {}", path.display()),
                )
                .into());
            }
            Some(path)
        }
        None => {
            let default = src.cwd.join("web.config");
            if default.is_file() {
                Some(default)
            } else if src.command.is_empty() {
                return Err(ConfigError::new(
                    Origin::WholeFile(default),
                    "no web.config here; run hpgate in the site folder, pass --config PATH, or give the app's command after -- (hpgate run -- python app.py)",
                )
                .into());
            } else {
                None
            }
        }
    })
}

/// The command after `--` replaces processPath and arguments; either way
/// the program is resolved and checked where it was set.
fn take_command(cfg: &mut Config, src: &Sources, mut at: Positions, errors: &mut Vec<ConfigError>) {
    if let Some((program, args)) = src.command.split_first() {
        cfg.process_path = program.clone();
        cfg.argv = args.to_vec();
        cfg.arguments = values::join_arguments(args);
    }
    if !cfg.process_path.is_empty() {
        cfg.process_path = settings::resolve_process_path(&cfg.site_root, &cfg.process_path);
        if !src.command.is_empty() {
            at = Positions {
                process_path: Some(Origin::Flag("--")),
                arguments: Some(Origin::Flag("--")),
            };
        }
        check_command(cfg, at, errors);
    }
}

/// Where processPath and arguments were set, for errors found after reading.
#[derive(Debug, Default)]
struct Positions {
    process_path: Option<Origin>,
    arguments: Option<Origin>,
}

/// Refuses a program that cannot run and arguments over the OS limits, at
/// the place they were set. A Windows path on Unix is left to
/// [`Config::check_runnable`], so IIS files still load in `hpgate config`.
fn check_command(cfg: &Config, at: Positions, errors: &mut Vec<ConfigError>) {
    let fallback = || {
        cfg.config_file
            .clone()
            .map(Origin::WholeFile)
            .unwrap_or(Origin::Flag("--"))
    };
    let windows_path_here = cfg!(unix) && is_windows_absolute(&cfg.process_path);
    if !windows_path_here {
        if let Err(msg) = command::check_program(&cfg.process_path) {
            let origin = at.process_path.unwrap_or_else(fallback);
            errors.push(ConfigError::new(origin, format!("processPath: {msg}")));
        }
    }
    if let Err(msg) = command::check_size(&cfg.process_path, &cfg.argv) {
        let origin = at.arguments.unwrap_or_else(fallback);
        errors.push(ConfigError::new(origin, format!("arguments: {msg}")));
    }
}

/// Collects problems with their file positions.
struct FileProblems<'a> {
    path: &'a Path,
    text: &'a str,
    errors: &'a mut Vec<ConfigError>,
}

impl FileProblems<'_> {
    fn origin(&self, offset: usize) -> Origin {
        let (line, column) = line_column(self.text, offset);
        Origin::File {
            path: self.path.to_path_buf(),
            line,
            column,
        }
    }
}

impl Problems for FileProblems<'_> {
    fn at(&mut self, offset: usize, message: String) {
        let origin = self.origin(offset);
        self.errors.push(ConfigError::new(origin, message));
    }
}

/// Reads one web.config into `cfg`; returns whether it set hpgate:detailedErrors.
fn read_web_config(
    cfg: &mut Config,
    path: &Path,
    have_command: bool,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
    at: &mut Positions,
) -> bool {
    let bytes = match read_capped(path) {
        Ok(b) => b,
        Err(message) => {
            errors.push(ConfigError::new(
                Origin::WholeFile(path.to_path_buf()),
                message,
            ));
            return false;
        }
    };
    read_web_config_bytes(cfg, path, &bytes, have_command, env, errors, at)
}

/// The largest web.config hpgate reads. Real ones are a few KiB; parsing
/// keeps several copies of the text, so a huge file would cost many times
/// its size in memory.
pub const MAX_WEB_CONFIG_BYTES: u64 = 10 * 1024 * 1024;

/// Reads the file, refusing one over [`MAX_WEB_CONFIG_BYTES`] before
/// loading it (and, should it grow meanwhile, without reading past the cap).
fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let too_big = |size: u64| {
        format!(
            "the file is {size} bytes; hpgate reads web.config files of at most {MAX_WEB_CONFIG_BYTES} bytes (10 MiB)"
        )
    };
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > MAX_WEB_CONFIG_BYTES {
        return Err(too_big(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_WEB_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.len() as u64 > MAX_WEB_CONFIG_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Parses web.config content as if read from `path` (used directly by the
/// fuzz test: arbitrary bytes must give errors, never a panic).
pub fn load_bytes(path: &Path, bytes: &[u8]) -> Result<Config, ConfigErrors> {
    let site_root = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cfg = Config::defaults(site_root);
    let mut errors = Vec::new();
    let mut at = Positions::default();
    read_web_config_bytes(
        &mut cfg,
        path,
        bytes,
        false,
        &|_| None,
        &mut errors,
        &mut at,
    );
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn read_web_config_bytes(
    cfg: &mut Config,
    path: &Path,
    bytes: &[u8],
    have_command: bool,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
    at: &mut Positions,
) -> bool {
    let text = match xml::decode(bytes) {
        Ok(t) => t,
        Err(e) => {
            // Offsets here are into the raw bytes; line/column of the valid prefix.
            let prefix = String::from_utf8_lossy(&bytes[..e.offset.min(bytes.len())]).into_owned();
            FileProblems {
                path,
                text: &prefix,
                errors,
            }
            .at(prefix.len(), e.message);
            return false;
        }
    };
    let mut problems = FileProblems {
        path,
        text: &text,
        errors,
    };
    let Some(root) = configuration_root(&text, &mut problems) else {
        return false;
    };
    read_http_platform(cfg, &root, have_command, env, &mut problems, at);
    read_app_settings(cfg, &root, &mut problems)
}

/// The parsed document, if it is one and its root is `<configuration>`.
fn configuration_root(text: &str, problems: &mut FileProblems) -> Option<Element> {
    let root = match xml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            problems.at(e.offset, e.message);
            return None;
        }
    };
    if root.name != "configuration" {
        problems.at(
            root.offset,
            format!(
                "the root element is <{}>; web.config starts with <configuration>",
                root.name
            ),
        );
        return None;
    }
    Some(root)
}

/// The one `<httpPlatform>` element's attributes, and where processPath
/// and arguments were set (their checks name those places).
fn read_http_platform(
    cfg: &mut Config,
    root: &Element,
    have_command: bool,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut FileProblems,
    at: &mut Positions,
) {
    let platforms = find_all(root, &["system.webServer", "httpPlatform"]);
    if let Some(second) = platforms.get(1) {
        problems.at(
            second.offset,
            "a second <httpPlatform>; web.config must have exactly one".into(),
        );
    }
    match platforms.first() {
        Some(el) => {
            settings::apply_http_platform(cfg, el, env, problems);
            at.process_path = el.attr("processPath").map(|a| problems.origin(a.offset));
            at.arguments = el.attr("arguments").map(|a| problems.origin(a.offset));
            let missing = el
                .attr("processPath")
                .is_none_or(|a| a.value.trim().is_empty());
            if missing && !have_command {
                problems.at(
                    el.offset,
                    "<httpPlatform> has no processPath; set it to the program that runs the app (for example processPath=\".venv/bin/python\")".into(),
                );
            }
        }
        None if !have_command => {
            let hint = if find_all(root, &["system.webServer", "aspNetCore"]).is_empty() {
                ""
            } else {
                " (this file configures <aspNetCore>; hpgate reads <httpPlatform>)"
            };
            problems.at(
                root.offset,
                format!("no <httpPlatform> inside <configuration><system.webServer>{hint}; add one, or give the app's command after --"),
            );
        }
        None => {}
    }
}

/// The `hpgate:` keys of `<appSettings>`; true when one of them is
/// `hpgate:detailedErrors` (whatever its value).
fn read_app_settings(cfg: &mut Config, root: &Element, problems: &mut FileProblems) -> bool {
    let mut detailed_errors = false;
    for settings_el in find_all(root, &["appSettings"]) {
        for item in settings_el.children.iter().filter(|i| i.name == "add") {
            let Some(key) = item.attr("key") else {
                continue;
            };
            let Some(name) = strip_prefix_ci(key.value.trim(), "hpgate:") else {
                continue;
            };
            detailed_errors |= name.eq_ignore_ascii_case("detailedErrors");
            let value = item.attr("value").map(|v| v.value.as_str()).unwrap_or("");
            if let Err(msg) = settings::apply_app_setting(cfg, name, value) {
                let at = item.attr("value").map(|v| v.offset).unwrap_or(key.offset);
                problems.at(at, format!("appSettings key {}: {msg}", key.value.trim()));
            }
        }
    }
    detailed_errors
}

/// Elements at `path` below the root, also inside `<location>` wrappers
/// (published ASP.NET-style web.config files put system.webServer there).
fn find_all<'a>(root: &'a Element, path: &[&'a str]) -> Vec<&'a Element> {
    let mut found = Vec::new();
    let scopes = std::iter::once(root).chain(root.children_named("location"));
    for scope in scopes {
        let mut level = vec![scope];
        for name in path {
            level = level.iter().flat_map(|e| e.children_named(name)).collect();
        }
        found.extend(level);
    }
    found
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

impl Config {
    /// Checks that `hpgate run` can act on this configuration on this OS.
    pub fn check_runnable(&self) -> Result<(), ConfigError> {
        let origin = self
            .config_file
            .clone()
            .map(Origin::WholeFile)
            .unwrap_or(Origin::Flag("--"));
        if cfg!(unix) && is_windows_absolute(&self.process_path) {
            return Err(ConfigError::new(
                origin,
                format!(
                    "processPath {} is a Windows path and cannot run on this system; point processPath at the local interpreter (for example processPath=\".venv/bin/python\"), or give the command after -- (hpgate run -- .venv/bin/python -m waitress --port %HTTP_PLATFORM_PORT% wsgi:application)",
                    self.process_path
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `appSettings` holding `items` counts as setting
    /// hpgate:detailedErrors (the listener's default applies when not).
    fn sets_detailed_errors(items: &str) -> bool {
        let text = format!(
            r#"<configuration><system.webServer><httpPlatform processPath="app"/></system.webServer>
<appSettings>{items}</appSettings></configuration>"#
        );
        let mut cfg = Config::defaults(PathBuf::from("/site"));
        let mut errors = Vec::new();
        let path = Path::new("/site/web.config");
        let set = read_web_config_bytes(
            &mut cfg,
            path,
            text.as_bytes(),
            false,
            &|_| None,
            &mut errors,
            &mut Positions::default(),
        );
        assert!(errors.is_empty(), "{errors:?}");
        set
    }

    #[test]
    fn only_an_add_sets_detailed_errors() {
        assert!(sets_detailed_errors(
            r#"<add key="hpgate:detailedErrors" value="false"/>"#
        ));
        assert!(sets_detailed_errors(
            r#"<add key=" HPGATE:DetailedErrors " value="true"/>"#
        ));
        assert!(!sets_detailed_errors(
            r#"<remove key="hpgate:detailedErrors"/>"#
        ));
        assert!(!sets_detailed_errors(
            r#"<add key="hpgate:keepAliveTimeout" value="30"/>"#
        ));
    }
}
