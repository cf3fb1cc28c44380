//! The effective configuration: every setting with its default, range and
//! source, and the code that fills it from web.config elements.
//!
//! Owns the meaning of `<httpPlatform>`, its children and the `hpgate:`
//! appSettings keys. It must not read files or the command line (`mod.rs`
//! does), nor act on the values (the supervisor and proxy do).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::paths;
use super::values::{self, Compression, LogFormat};
use super::xml::{Attr, Element};

/// IIS caps requestTimeout at 30 days.
const MAX_REQUEST_TIMEOUT: u64 = 30 * 86_400;

/// The configuration hpgate runs with. Field names serialize as the
/// web.config attribute (or `hpgate:` appSettings key) that sets them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// The web.config that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Working directory of the app and base of relative paths.
    pub site_root: PathBuf,
    /// Where hpgate accepts connections.
    pub listen: SocketAddr,
    pub log_format: LogFormat,

    // <httpPlatform> attributes
    pub process_path: String,
    pub arguments: String,
    /// `arguments` split into argv (how the process will be started);
    /// `%HTTP_PLATFORM_PORT%` is filled in per process.
    pub argv: Vec<String>,
    /// Seconds the process has to start listening.
    pub startup_time_limit: u64,
    pub startup_retry_count: u64,
    pub rapid_fails_per_minute: u64,
    /// Seconds of inactivity (no bytes either way) before a request fails.
    pub request_timeout: u64,
    pub stdout_log_enabled: bool,
    pub stdout_log_file: PathBuf,
    pub processes_per_application: u64,
    pub forward_windows_auth_token: bool,
    pub environment_variables: BTreeMap<String, String>,
    pub recycle_on_file_change: Vec<PathBuf>,

    // hpgate:* appSettings (and command-line flags where they exist)
    /// Seconds between the stop signal and a forced kill.
    pub shutdown_time_limit: u64,
    pub web_socket_compression: Compression,
    /// Show the app's output on error pages (default: only on loopback listeners).
    pub detailed_errors: bool,
    /// Keep client-sent X-Forwarded-* headers instead of replacing them.
    pub trust_forwarded_headers: bool,
    pub max_request_header_bytes: u64,
    pub max_request_headers: u64,
    pub max_request_line_bytes: u64,
    /// Seconds a client has to send a complete request head.
    pub header_read_timeout: u64,
    /// Seconds a client may send nothing in the middle of a request body (0: no limit).
    pub client_body_timeout: u64,
    pub max_connections: u64,
    /// Seconds an idle keep-alive client connection is kept open.
    pub keep_alive_timeout: u64,
    /// Seconds between pings hpgate sends on idle WebSockets (0: none).
    pub web_socket_ping_interval: u64,
    /// Seconds without a frame before a WebSocket is closed (0: never).
    pub web_socket_idle_timeout: u64,
    pub web_socket_max_message_size: u64,
    pub max_web_sockets: u64,
    pub web_socket_compression_level: u64,
    pub web_socket_compression_min_size: u64,
    pub socket_io_path: String,
    pub socket_io_affinity: bool,
    /// Threads that run the proxy (0: one per CPU). Needs a restart.
    pub worker_threads: u64,
    /// Size at which the stdout log continues in a new file.
    pub stdout_log_max_bytes: u64,
    /// Files kept per process start (the current one included).
    pub stdout_log_max_files: u64,
}

/// The attributes `<httpPlatform>` accepts, as IIS's schema names them.
pub const HTTP_PLATFORM_ATTRIBUTES: &[&str] = &[
    "processPath",
    "arguments",
    "startupTimeLimit",
    "startupRetryCount",
    "rapidFailsPerMinute",
    "requestTimeout",
    "stdoutLogEnabled",
    "stdoutLogFile",
    "processesPerApplication",
    "forwardWindowsAuthToken",
];

/// The `hpgate:` appSettings keys (without the prefix).
pub const APP_SETTINGS: &[&str] = &[
    "listen",
    "logFormat",
    "shutdownTimeLimit",
    "webSocketCompression",
    "detailedErrors",
    "trustForwardedHeaders",
    "maxRequestHeaderBytes",
    "maxRequestHeaders",
    "maxRequestLineBytes",
    "headerReadTimeout",
    "clientBodyTimeout",
    "maxConnections",
    "keepAliveTimeout",
    "webSocketPingInterval",
    "webSocketIdleTimeout",
    "webSocketMaxMessageSize",
    "maxWebSockets",
    "webSocketCompressionLevel",
    "webSocketCompressionMinSize",
    "socketIoPath",
    "socketIoAffinity",
    "workerThreads",
    "stdoutLogMaxBytes",
    "stdoutLogMaxFiles",
];

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8086";

impl Config {
    /// Defaults for everything; `site_root` as given.
    pub fn defaults(site_root: PathBuf) -> Config {
        Config {
            config_file: None,
            stdout_log_file: paths::resolve(&site_root, "httpplatform-stdout"),
            site_root,
            listen: SocketAddr::from(([127, 0, 0, 1], 8086)),
            log_format: LogFormat::Text,
            process_path: String::new(),
            arguments: String::new(),
            argv: Vec::new(),
            startup_time_limit: 10,
            startup_retry_count: 10,
            rapid_fails_per_minute: 10,
            request_timeout: 120,
            stdout_log_enabled: false,
            processes_per_application: 1,
            forward_windows_auth_token: false,
            environment_variables: BTreeMap::new(),
            recycle_on_file_change: Vec::new(),
            shutdown_time_limit: 10,
            web_socket_compression: Compression::Passthrough,
            detailed_errors: true,
            trust_forwarded_headers: false,
            max_request_header_bytes: 32 * 1024,
            max_request_headers: 100,
            max_request_line_bytes: 8 * 1024,
            header_read_timeout: 30,
            client_body_timeout: 60,
            // Each proxied connection holds two descriptors; this stays
            // well under a 20,000 open-files limit.
            max_connections: 8_000,
            keep_alive_timeout: 60,
            web_socket_ping_interval: 0,
            web_socket_idle_timeout: 0,
            web_socket_max_message_size: 16 * 1024 * 1024,
            max_web_sockets: 8_000,
            web_socket_compression_level: 6,
            web_socket_compression_min_size: 64,
            socket_io_path: "/socket.io/".into(),
            socket_io_affinity: true,
            worker_threads: 0,
            stdout_log_max_bytes: 64 * 1024 * 1024,
            stdout_log_max_files: 5,
        }
    }
}

/// Parses a listen address: `HOST:PORT`, `[::1]:PORT` or `:PORT` (all interfaces).
pub fn parse_listen(raw: &str) -> Result<SocketAddr, String> {
    let s = raw.trim();
    let bad =
        || format!("\"{raw}\" is not a listen address; expected HOST:PORT, [IPv6]:PORT or :PORT");
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || host.contains(':') {
        return Err(bad());
    }
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve listen host \"{host}\": {e}"))?
        .next()
        .ok_or_else(|| format!("listen host \"{host}\" has no address"))
}

/// Parses a worker thread count: 0 (one per CPU) to 256.
pub fn parse_worker_threads(raw: &str) -> Result<u64, String> {
    values::number(raw, 0, 256, "a thread count (0 = one per CPU)")
}

/// Sink for problems found while reading elements: each carries a byte offset.
pub trait Problems {
    fn at(&mut self, offset: usize, message: String);
}

/// Reads `<httpPlatform>` into `cfg` (processPath expanded, not yet resolved).
pub fn apply_http_platform(
    cfg: &mut Config,
    el: &Element,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut dyn Problems,
) {
    for attr in &el.attrs {
        if let Err(msg) = apply_attribute(cfg, attr, env) {
            problems.at(
                attr.offset,
                format!("attribute {} of <httpPlatform>: {msg}", attr.name),
            );
        }
    }
    for child in &el.children {
        match child.name.as_str() {
            "environmentVariables" => apply_environment(cfg, child, env, problems),
            "recycleOnFileChange" => {
                for file in &child.children {
                    match (file.name.as_str(), file.attr("path")) {
                        ("file", Some(p)) if !p.value.trim().is_empty() => {
                            let expanded = paths::expand_env(&p.value, env);
                            cfg.recycle_on_file_change
                                .push(paths::resolve(&cfg.site_root, &expanded));
                        }
                        ("file", _) => problems.at(file.offset, "<file> in <recycleOnFileChange> needs a path attribute".into()),
                        (other, _) => problems.at(file.offset, format!("<{other}> is not allowed in <recycleOnFileChange>; expected <file path=\"...\"/>")),
                    }
                }
            }
            other => problems.at(
                child.offset,
                format!("<{other}> is not allowed in <httpPlatform>; expected <environmentVariables> or <recycleOnFileChange>"),
            ),
        }
    }
}

fn apply_attribute(
    cfg: &mut Config,
    attr: &Attr,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let v = attr.value.as_str();
    match attr.name.as_str() {
        "processPath" => cfg.process_path = paths::expand_env(v, env),
        "arguments" => {
            cfg.arguments = paths::expand_env(v, env);
            cfg.argv = values::split_arguments(&cfg.arguments).map_err(|e| e.to_string())?;
        }
        "startupTimeLimit" => cfg.startup_time_limit = values::number(v, 0, 3600, "seconds")?,
        "startupRetryCount" => cfg.startup_retry_count = values::number(v, 0, 100, "a count")?,
        "rapidFailsPerMinute" => cfg.rapid_fails_per_minute = values::number(v, 0, 100, "a count")?,
        "requestTimeout" => cfg.request_timeout = values::time_span(v, MAX_REQUEST_TIMEOUT)?,
        "stdoutLogEnabled" => cfg.stdout_log_enabled = values::boolean(v)?,
        "stdoutLogFile" => {
            let expanded = paths::expand_env(v, env);
            if expanded.trim().is_empty() {
                return Err("is empty; give a file name prefix such as \".\\logs\\python\"".into());
            }
            cfg.stdout_log_file = paths::resolve(&cfg.site_root, &expanded);
        }
        "processesPerApplication" => {
            cfg.processes_per_application = values::number(v, 1, 100, "a count")?
        }
        "forwardWindowsAuthToken" => cfg.forward_windows_auth_token = values::boolean(v)?,
        other => return Err(unknown_attribute(other)),
    }
    Ok(())
}

fn unknown_attribute(name: &str) -> String {
    if let Some(known) = HTTP_PLATFORM_ATTRIBUTES
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
    {
        return format!("unknown attribute; names are case-sensitive: did you mean {known}?");
    }
    if let Some(key) = APP_SETTINGS.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        return format!(
            "unknown attribute (IIS refuses it too, with error 500.19); hpgate reads it from <appSettings><add key=\"hpgate:{key}\" value=\"...\"/></appSettings>"
        );
    }
    format!(
        "unknown attribute; <httpPlatform> accepts {}",
        HTTP_PLATFORM_ATTRIBUTES.join(", ")
    )
}

fn apply_environment(
    cfg: &mut Config,
    el: &Element,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut dyn Problems,
) {
    // IIS collection semantics: <clear/> drops the entries listed before it
    // (inherited ones, in IIS); <remove name/> drops one; a duplicate <add>
    // is an error, as IIS reports it.
    let mut seen: Vec<String> = Vec::new();
    for item in &el.children {
        match item.name.as_str() {
            "environmentVariable" | "add" => {
                let Some(name) = item.attr("name").filter(|n| !n.value.trim().is_empty()) else {
                    problems.at(item.offset, "<environmentVariable> needs a name attribute".into());
                    continue;
                };
                let name = name.value.trim().to_string();
                if seen.contains(&name) {
                    problems.at(item.offset, format!("environment variable {name} is set twice in <environmentVariables>"));
                    continue;
                }
                if name.contains('=') {
                    problems.at(item.offset, format!("environment variable name {name:?} contains '='"));
                    continue;
                }
                let value = item.attr("value").map(|a| a.value.as_str()).unwrap_or("");
                cfg.environment_variables.insert(name.clone(), paths::expand_env(value, env));
                seen.push(name);
            }
            "remove" => {
                if let Some(name) = item.attr("name") {
                    cfg.environment_variables.remove(name.value.trim());
                    seen.retain(|n| n != name.value.trim());
                }
            }
            "clear" => {
                cfg.environment_variables.clear();
                seen.clear();
            }
            other => problems.at(
                item.offset,
                format!("<{other}> is not allowed in <environmentVariables>; expected <environmentVariable name=\"...\" value=\"...\"/> or <clear/>"),
            ),
        }
    }
}

/// Applies one `hpgate:NAME` appSettings value.
pub fn apply_app_setting(cfg: &mut Config, name: &str, raw: &str) -> Result<(), String> {
    let Some(key) = APP_SETTINGS.iter().find(|k| k.eq_ignore_ascii_case(name)) else {
        return Err(format!(
            "unknown hpgate setting \"hpgate:{name}\"; known settings: {}",
            APP_SETTINGS.join(", ")
        ));
    };
    const MIB: u64 = 1024 * 1024;
    match *key {
        "listen" => cfg.listen = parse_listen(raw)?,
        "logFormat" => cfg.log_format = LogFormat::parse(raw)?,
        "shutdownTimeLimit" => cfg.shutdown_time_limit = values::number(raw, 0, 600, "seconds")?,
        "webSocketCompression" => cfg.web_socket_compression = Compression::parse(raw)?,
        "detailedErrors" => cfg.detailed_errors = values::boolean(raw)?,
        "trustForwardedHeaders" => cfg.trust_forwarded_headers = values::boolean(raw)?,
        "maxRequestHeaderBytes" => {
            cfg.max_request_header_bytes = values::number(raw, 1024, MIB, "bytes")?
        }
        "maxRequestHeaders" => cfg.max_request_headers = values::number(raw, 1, 1000, "a count")?,
        "maxRequestLineBytes" => {
            cfg.max_request_line_bytes = values::number(raw, 256, MIB, "bytes")?
        }
        "headerReadTimeout" => cfg.header_read_timeout = values::number(raw, 1, 3600, "seconds")?,
        "clientBodyTimeout" => cfg.client_body_timeout = values::number(raw, 0, 3600, "seconds")?,
        "maxConnections" => cfg.max_connections = values::number(raw, 1, 1_000_000, "a count")?,
        "keepAliveTimeout" => cfg.keep_alive_timeout = values::number(raw, 0, 3600, "seconds")?,
        "webSocketPingInterval" => {
            cfg.web_socket_ping_interval = values::number(raw, 0, 3600, "seconds")?
        }
        "webSocketIdleTimeout" => {
            cfg.web_socket_idle_timeout = values::number(raw, 0, 86_400, "seconds")?
        }
        "webSocketMaxMessageSize" => {
            cfg.web_socket_max_message_size = values::number(raw, 1024, 1024 * MIB, "bytes")?
        }
        "maxWebSockets" => cfg.max_web_sockets = values::number(raw, 1, 1_000_000, "a count")?,
        "webSocketCompressionLevel" => {
            cfg.web_socket_compression_level = values::number(raw, 0, 9, "a zlib level")?
        }
        "webSocketCompressionMinSize" => {
            cfg.web_socket_compression_min_size = values::number(raw, 0, MIB, "bytes")?
        }
        "socketIoPath" => {
            let p = raw.trim();
            if !p.starts_with('/') {
                return Err(format!("\"{raw}\" must be a path starting with /"));
            }
            cfg.socket_io_path = if p.ends_with('/') {
                p.to_string()
            } else {
                format!("{p}/")
            };
        }
        "socketIoAffinity" => cfg.socket_io_affinity = values::boolean(raw)?,
        "workerThreads" => cfg.worker_threads = parse_worker_threads(raw)?,
        "stdoutLogMaxBytes" => {
            cfg.stdout_log_max_bytes = values::number(raw, 64 * 1024, 1024 * 1024 * MIB, "bytes")?
        }
        "stdoutLogMaxFiles" => cfg.stdout_log_max_files = values::number(raw, 1, 1000, "a count")?,
        _ => unreachable_key(key)?,
    }
    Ok(())
}

// Keeps the match above exhaustive over APP_SETTINGS without a panic path.
fn unreachable_key(key: &str) -> Result<(), String> {
    Err(format!("setting hpgate:{key} is listed but not handled"))
}

/// Resolves processPath as HttpPlatformHandler would: `.`-relative and other
/// relative paths against the site root, bare names on PATH (after the site
/// root), absolute paths as written.
pub fn resolve_process_path(site_root: &Path, configured: &str) -> String {
    if paths::is_windows_absolute(configured) {
        return configured.to_string();
    }
    if paths::is_bare_name(configured) {
        let path_var = std::env::var("PATH").ok();
        return paths::find_program(site_root, configured, path_var.as_deref())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| configured.to_string());
    }
    paths::resolve(site_root, configured).display().to_string()
}
