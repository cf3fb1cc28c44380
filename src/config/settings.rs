//! Every setting, declared once, and the code that fills a [`Config`] from
//! web.config elements.
//!
//! Owns the meaning of `<httpPlatform>`, its children and the `hpgate:`
//! appSettings keys. It must not read files or the command line (`mod.rs`
//! does), nor act on the values (the supervisor and proxy do).
//!
//! # Adding a setting
//!
//! Add one entry to the `settings!` invocation below, and nothing else in
//! the code: its Rust field and type (`Duration` for times, `u64` for counts
//! and byte sizes, `bool`, `String`, an enum from `values.rs`), the
//! web.config name (`place: Attribute` for `<httpPlatform>`, `AppSetting`
//! for `hpgate:NAME`), the default, the default and range text as
//! docs/configuration.md writes them, the parser (`count`, `seconds`,
//! `time_span`, `boolean` or a closure `|raw: &str, cx: &Cx| -> Result`),
//! `flag:`/`env:` twins if it has them (then also add the clap field in
//! `cli.rs`; a test checks they agree), and `restart: true` if only a
//! restart applies it. Parsing, the known-names lists and "did you mean"
//! hints, `hpgate config`'s JSON key, flag and environment precedence and
//! the reload warning follow from the entry. Then add its row to
//! docs/configuration.md; `docs_tables_match_the_declaration` fails until
//! the row's default and range match the entry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use super::listen::Listeners;
use super::paths;
use super::spec::{boolean, count, seconds, settings, time_span, Cx, Place, Setting};
use super::tls::{NameList, PathList, Secret};
use super::values::{self, Compression, LogFormat};
use super::xml::{Attr, Element};

/// IIS caps requestTimeout at 30 days.
const MAX_REQUEST_TIMEOUT: u64 = 30 * 86_400;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8086";

/// Let's Encrypt's directory, the default ACME server.
pub const ACME_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`acmeDirectory` `staging`).
pub const ACME_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

fn acme_directory(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("staging") {
        return Ok(ACME_STAGING.into());
    }
    if raw.eq_ignore_ascii_case("production") {
        return Ok(ACME_PRODUCTION.into());
    }
    if !raw.starts_with("https://") || raw.len() <= "https://".len() {
        return Err("is not an https:// URL (or `staging`)".into());
    }
    Ok(raw.to_string())
}

fn acme_email(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    let ok = raw.split_once('@').is_some_and(|(user, host)| {
        !user.is_empty() && host.contains('.') && !raw.contains(char::is_whitespace)
    });
    if ok {
        Ok(raw.to_string())
    } else {
        Err("is not an e-mail address".into())
    }
}

/// The admin address: `:PORT` means loopback here (unlike `listen`), so
/// the admin endpoints are private unless an address says otherwise.
fn admin_listen(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    let addr = match raw.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => raw.to_string(),
    };
    Ok(super::listen::parse_addr(&addr)?.to_string())
}

// The one declaration of every setting; see the module doc.
settings! {
    fn defaults(site_root);
    head {
        /// The web.config that was read, if any.
        config_file: Option<PathBuf> = None, json "configFile";
        /// Working directory of the app and base of relative paths.
        site_root: PathBuf = site_root.clone(), json "siteRoot";
    }

    /// Where hpgate accepts connections.
    listen: Listeners {
        name: "listen", place: AppSetting,
        default: Listeners::plain(SocketAddr::from(([127, 0, 0, 1], 8086))),
        doc_default: "`127.0.0.1:8086`",
        doc_range: "comma-separated `HOST:PORT`, `[IPv6]:PORT`, `:PORT` (all IPv4 interfaces), each optionally `http://` or `https://` (TLS)",
        parse: |raw: &str, _: &Cx| Listeners::parse(raw),
        flag: "--listen", env: "HPGATE_LISTEN",
        restart: true,
    }
    /// TLS certificate chains (PEM, or a folder of them), paired in order
    /// with `tls_key`.
    tls_cert: PathList {
        name: "tlsCert", place: AppSetting,
        default: PathList::default(),
        doc_default: "none", doc_range: "comma-separated paths: a PEM chain, or a folder",
        parse: |raw: &str, _: &Cx| Ok::<_, String>(PathList::parse(raw)),
        flag: "--tls-cert", env: "HPGATE_TLS_CERT",
        restart: true,
    }
    tls_key: PathList {
        name: "tlsKey", place: AppSetting,
        default: PathList::default(),
        doc_default: "none", doc_range: "comma-separated paths, one per `tlsCert` file",
        parse: |raw: &str, _: &Cx| Ok::<_, String>(PathList::parse(raw)),
        flag: "--tls-key", env: "HPGATE_TLS_KEY",
        restart: true,
    }
    tls_pfx: PathList {
        name: "tlsPfx", place: AppSetting,
        default: PathList::default(),
        doc_default: "none", doc_range: "comma-separated paths of PFX/PKCS#12 files",
        parse: |raw: &str, _: &Cx| Ok::<_, String>(PathList::parse(raw)),
        flag: "--tls-pfx", env: "HPGATE_TLS_PFX",
        restart: true,
    }
    /// The PFX password (also `HPGATE_TLS_PFX_PASSWORD`, read at start; no
    /// flag, so it never shows in a process list).
    tls_pfx_password: Secret {
        name: "tlsPfxPassword", place: AppSetting,
        default: Secret::default(),
        doc_default: "empty", doc_range: "text",
        parse: |raw: &str, _: &Cx| Ok::<_, String>(Secret(Some(raw.to_string()))),
        restart: true,
    }
    /// Names to get certificates for by ACME (docs/tls.md), one order for
    /// all of them.
    acme_domains: NameList {
        name: "acmeDomains", place: AppSetting,
        default: NameList::default(),
        doc_default: "none", doc_range: "comma-separated DNS names (no wildcards)",
        parse: |raw: &str, _: &Cx| NameList::parse(raw),
        flag: "--acme-domain", env: "HPGATE_ACME_DOMAINS",
        restart: true,
    }
    acme_email: String {
        name: "acmeEmail", place: AppSetting,
        default: String::new(),
        doc_default: "none", doc_range: "an e-mail address",
        parse: |raw: &str, _: &Cx| acme_email(raw),
        flag: "--acme-email", env: "HPGATE_ACME_EMAIL",
        restart: true,
    }
    acme_directory: String {
        name: "acmeDirectory", place: AppSetting,
        default: ACME_PRODUCTION.to_string(),
        doc_default: "Let's Encrypt", doc_range: "an `https://` URL, or `staging`",
        parse: |raw: &str, _: &Cx| acme_directory(raw),
        flag: "--acme-directory", env: "HPGATE_ACME_DIRECTORY",
        restart: true,
    }
    /// Extra trust for the ACME server's own HTTPS (test CAs like pebble).
    acme_directory_ca: PathList {
        name: "acmeDirectoryCa", place: AppSetting,
        default: PathList::default(),
        doc_default: "none", doc_range: "a PEM file path",
        parse: |raw: &str, cx: &Cx| {
            let raw = raw.trim();
            let paths = (!raw.is_empty()).then(|| paths::resolve(cx.site_root, raw));
            Ok::<_, String>(PathList(paths.into_iter().collect()))
        },
        flag: "--acme-directory-ca", env: "HPGATE_ACME_DIRECTORY_CA",
        restart: true,
    }
    acme_cache: PathBuf {
        name: "acmeCache", place: AppSetting,
        default: paths::resolve(&site_root, ".hpgate-acme"),
        doc_default: "`.hpgate-acme`", doc_range: "a folder path",
        parse: |raw: &str, cx: &Cx| Ok::<_, String>(paths::resolve(cx.site_root, raw.trim())),
        flag: "--acme-cache", env: "HPGATE_ACME_CACHE",
        restart: true,
    }
    /// `Strict-Transport-Security: max-age` on HTTPS responses (0: none).
    hsts: Duration {
        name: "hsts", place: AppSetting,
        default: Duration::ZERO,
        doc_default: "0 (off)", doc_range: "0–63072000 seconds",
        parse: seconds(0, 63_072_000),
        restart: false,
    }
    /// Plain listeners answer 308 to the https:// address.
    https_redirect: bool {
        name: "httpsRedirect", place: AppSetting,
        default: false,
        doc_default: "false", doc_range: "boolean",
        parse: boolean,
        restart: false,
    }
    log_format: LogFormat {
        name: "logFormat", place: AppSetting,
        default: LogFormat::Text,
        doc_default: "`text`", doc_range: "`text`, `json`",
        parse: |raw: &str, _: &Cx| LogFormat::parse(raw),
        flag: "--log-format", env: "HPGATE_LOG_FORMAT",
        restart: true,
    }

    // <httpPlatform> attributes
    process_path: String {
        name: "processPath", place: Attribute,
        default: String::new(),
        doc_default: "required", doc_range: "",
        parse: |raw: &str, cx: &Cx| Ok::<_, String>(paths::expand_env(raw, cx.env)),
        restart: false,
    }
    arguments: String {
        name: "arguments", place: Attribute,
        default: String::new(),
        doc_default: "`\"\"`", doc_range: "",
        parse: |raw: &str, cx: &Cx| {
            let expanded = paths::expand_env(raw, cx.env);
            values::split_arguments(&expanded).map_err(|e| e.to_string())?;
            Ok::<_, String>(expanded)
        },
        // Checked by the parser, so the split cannot fail here.
        then: |cfg: &mut Config| cfg.argv = values::split_arguments(&cfg.arguments).unwrap_or_default(),
        restart: false,
    }
    @extra {
        /// `arguments` split into argv (how the process will be started);
        /// `%HTTP_PLATFORM_PORT%` is filled in per process.
        argv: Vec<String> = Vec::new(), json "argv";
    }
    /// Time the process has to start listening.
    startup_time_limit: Duration {
        name: "startupTimeLimit", place: Attribute,
        default: Duration::from_secs(10),
        doc_default: "10", doc_range: "0–3600",
        parse: seconds(0, 3600),
        restart: false,
    }
    startup_retry_count: u64 {
        name: "startupRetryCount", place: Attribute,
        default: 10,
        doc_default: "10", doc_range: "0–100",
        parse: count(0, 100, "a count"),
        restart: false,
    }
    rapid_fails_per_minute: u64 {
        name: "rapidFailsPerMinute", place: Attribute,
        default: 10,
        doc_default: "10", doc_range: "0–100",
        parse: count(0, 100, "a count"),
        restart: true,
    }
    /// Inactivity (no bytes either way) before a request fails (zero: no limit).
    request_timeout: Duration {
        name: "requestTimeout", place: Attribute,
        default: Duration::from_secs(120),
        doc_default: "`00:02:00`", doc_range: "0 – 30 days",
        parse: time_span(MAX_REQUEST_TIMEOUT),
        restart: false,
    }
    stdout_log_enabled: bool {
        name: "stdoutLogEnabled", place: Attribute,
        default: false,
        doc_default: "false", doc_range: "",
        parse: boolean,
        restart: false,
    }
    stdout_log_file: PathBuf {
        name: "stdoutLogFile", place: Attribute,
        default: paths::resolve(&site_root, "httpplatform-stdout"),
        doc_default: "`httpplatform-stdout`", doc_range: "",
        parse: |raw: &str, cx: &Cx| {
            let expanded = paths::expand_env(raw, cx.env);
            if expanded.trim().is_empty() {
                return Err("is empty; give a file name prefix such as \".\\logs\\python\"".to_string());
            }
            Ok(paths::resolve(cx.site_root, &expanded))
        },
        restart: false,
    }
    processes_per_application: u64 {
        name: "processesPerApplication", place: Attribute,
        default: 1,
        doc_default: "1", doc_range: "1–100",
        parse: count(1, 100, "a count"),
        restart: false,
    }
    forward_windows_auth_token: bool {
        name: "forwardWindowsAuthToken", place: Attribute,
        default: false,
        doc_default: "false", doc_range: "",
        parse: boolean,
        restart: false,
    }
    @extra {
        environment_variables: BTreeMap<String, String> = BTreeMap::new(), json "environmentVariables";
        recycle_on_file_change: Vec<PathBuf> = Vec::new(), json "recycleOnFileChange";
    }

    // hpgate:* appSettings
    /// Time between the stop signal and a forced kill.
    shutdown_time_limit: Duration {
        name: "shutdownTimeLimit", place: AppSetting,
        default: Duration::from_secs(10),
        doc_default: "10", doc_range: "0–600 s",
        parse: seconds(0, 600),
        restart: false,
    }
    web_socket_compression: Compression {
        name: "webSocketCompression", place: AppSetting,
        default: Compression::Passthrough,
        doc_default: "`passthrough`", doc_range: "`passthrough`, `disable`, `offload`",
        parse: |raw: &str, _: &Cx| Compression::parse(raw),
        flag: "--websocket-compression", env: "HPGATE_WEBSOCKET_COMPRESSION",
        restart: false,
    }
    /// Show the app's output on error pages (default: only on loopback
    /// listeners; `mod.rs` applies that after reading).
    detailed_errors: bool {
        name: "detailedErrors", place: AppSetting,
        default: true,
        doc_default: "true on a loopback listener, else false", doc_range: "boolean",
        parse: boolean,
        restart: false,
    }
    /// Keep client-sent X-Forwarded-* headers instead of replacing them.
    trust_forwarded_headers: bool {
        name: "trustForwardedHeaders", place: AppSetting,
        default: false,
        doc_default: "false", doc_range: "boolean",
        parse: boolean,
        restart: false,
    }
    max_request_header_bytes: u64 {
        name: "maxRequestHeaderBytes", place: AppSetting,
        default: 32 * KIB,
        doc_default: "32768", doc_range: "1024–1 MiB",
        parse: count(1024, MIB, "bytes"),
        restart: false,
    }
    max_request_headers: u64 {
        name: "maxRequestHeaders", place: AppSetting,
        default: 100,
        doc_default: "100", doc_range: "1–1000",
        parse: count(1, 1000, "a count"),
        restart: false,
    }
    max_request_line_bytes: u64 {
        name: "maxRequestLineBytes", place: AppSetting,
        default: 8 * KIB,
        doc_default: "8192", doc_range: "256–1 MiB",
        parse: count(256, MIB, "bytes"),
        restart: false,
    }
    /// Time a client has to send a complete request head.
    header_read_timeout: Duration {
        name: "headerReadTimeout", place: AppSetting,
        default: Duration::from_secs(30),
        doc_default: "30", doc_range: "1–3600 s",
        parse: seconds(1, 3600),
        restart: false,
    }
    /// Time a client may send nothing in the middle of a request body (zero: no limit).
    client_body_timeout: Duration {
        name: "clientBodyTimeout", place: AppSetting,
        default: Duration::from_secs(60),
        doc_default: "60", doc_range: "0–3600 s (0: no limit)",
        parse: seconds(0, 3600),
        restart: false,
    }
    max_connections: u64 {
        name: "maxConnections", place: AppSetting,
        // Each proxied connection holds two descriptors; this stays
        // well under a 20,000 open-files limit.
        default: 8_000,
        doc_default: "8000", doc_range: "1–1,000,000",
        parse: count(1, 1_000_000, "a count"),
        restart: false,
    }
    /// Time an idle keep-alive client connection is kept open (zero: no keep-alive).
    keep_alive_timeout: Duration {
        name: "keepAliveTimeout", place: AppSetting,
        default: Duration::from_secs(60),
        doc_default: "60", doc_range: "0–3600 s",
        parse: seconds(0, 3600),
        restart: false,
    }
    /// Time between pings hpgate sends on idle WebSockets (zero: none).
    web_socket_ping_interval: Duration {
        name: "webSocketPingInterval", place: AppSetting,
        default: Duration::ZERO,
        doc_default: "0 (off)", doc_range: "0–3600 s",
        parse: seconds(0, 3600),
        restart: false,
    }
    /// Time without a frame before a WebSocket is closed (zero: never).
    web_socket_idle_timeout: Duration {
        name: "webSocketIdleTimeout", place: AppSetting,
        default: Duration::ZERO,
        doc_default: "0 (never)", doc_range: "0–86400 s",
        parse: seconds(0, 86_400),
        restart: false,
    }
    web_socket_max_message_size: u64 {
        name: "webSocketMaxMessageSize", place: AppSetting,
        default: 16 * MIB,
        doc_default: "16 MiB", doc_range: "1 KiB–1 GiB",
        parse: count(KIB, 1024 * MIB, "bytes"),
        restart: false,
    }
    max_web_sockets: u64 {
        name: "maxWebSockets", place: AppSetting,
        default: 8_000,
        doc_default: "8000", doc_range: "1–1,000,000",
        parse: count(1, 1_000_000, "a count"),
        restart: false,
    }
    web_socket_compression_level: u64 {
        name: "webSocketCompressionLevel", place: AppSetting,
        default: 6,
        doc_default: "6", doc_range: "0–9",
        parse: count(0, 9, "a zlib level"),
        restart: false,
    }
    web_socket_compression_min_size: u64 {
        name: "webSocketCompressionMinSize", place: AppSetting,
        default: 64,
        doc_default: "64", doc_range: "0–1 MiB",
        parse: count(0, MIB, "bytes"),
        restart: false,
    }
    socket_io_path: String {
        name: "socketIoPath", place: AppSetting,
        default: "/socket.io/".into(),
        doc_default: "`/socket.io/`", doc_range: "a path",
        parse: |raw: &str, _: &Cx| {
            let p = raw.trim();
            if !p.starts_with('/') {
                return Err(format!("\"{raw}\" must be a path starting with /"));
            }
            Ok(if p.ends_with('/') { p.to_string() } else { format!("{p}/") })
        },
        restart: false,
    }
    socket_io_affinity: bool {
        name: "socketIoAffinity", place: AppSetting,
        default: true,
        doc_default: "true", doc_range: "boolean",
        parse: boolean,
        restart: false,
    }
    /// Threads that run the proxy (0: one per CPU).
    worker_threads: u64 {
        name: "workerThreads", place: AppSetting,
        default: 0,
        doc_default: "0 (one per CPU)", doc_range: "0–256",
        parse: count(0, 256, "a thread count (0 = one per CPU)"),
        flag: "--worker-threads", env: "HPGATE_WORKER_THREADS",
        restart: true,
    }
    /// The admin listener (/metrics, /livez, /readyz, /status); empty: off.
    admin_listen: String {
        name: "adminListen", place: AppSetting,
        default: String::new(),
        doc_default: "none (off)", doc_range: "`HOST:PORT`, `[IPv6]:PORT`, or `:PORT` (loopback)",
        parse: |raw: &str, _: &Cx| admin_listen(raw),
        flag: "--admin", env: "HPGATE_ADMIN",
        restart: true,
    }
    /// Size at which the stdout log continues in a new file.
    stdout_log_max_bytes: u64 {
        name: "stdoutLogMaxBytes", place: AppSetting,
        default: 64 * MIB,
        doc_default: "67108864 (64 MiB)", doc_range: "64 KiB–1 TiB",
        parse: count(64 * KIB, 1024 * 1024 * MIB, "bytes"),
        restart: false,
    }
    /// Files kept per process start (the current one included).
    stdout_log_max_files: u64 {
        name: "stdoutLogMaxFiles", place: AppSetting,
        default: 5,
        doc_default: "5", doc_range: "1–1000",
        parse: count(1, 1000, "a count"),
        restart: false,
    }
}

/// The names written at `place`, in declaration order.
pub fn names(place: Place) -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .filter(move |s| s.place == place)
        .map(|s| s.name)
}

impl Config {
    /// The settings declared `restart: true` whose value differs in `new`,
    /// as (name, old value, new value).
    pub fn restart_only_changes(&self, new: &Config) -> Vec<(&'static str, String, String)> {
        SETTINGS
            .iter()
            .filter(|s| s.restart)
            .map(|s| (s.name, (s.show)(self), (s.show)(new)))
            .filter(|(_, was, now)| was != now)
            .collect()
    }
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
    // Attribute names are case-sensitive, as in IIS.
    let Some(setting) = SETTINGS
        .iter()
        .find(|s| s.place == Place::Attribute && s.name == attr.name)
    else {
        return Err(unknown_attribute(&attr.name));
    };
    apply(cfg, setting, &attr.value, env)
}

/// Applies one declared setting from raw text.
pub fn apply(
    cfg: &mut Config,
    setting: &Setting,
    raw: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let site_root = cfg.site_root.clone();
    let cx = Cx {
        site_root: &site_root,
        env,
    };
    (setting.apply)(cfg, raw, &cx)
}

fn unknown_attribute(name: &str) -> String {
    if let Some(known) = names(Place::Attribute).find(|k| k.eq_ignore_ascii_case(name)) {
        return format!("unknown attribute; names are case-sensitive: did you mean {known}?");
    }
    if let Some(key) = names(Place::AppSetting).find(|k| k.eq_ignore_ascii_case(name)) {
        return format!(
            "unknown attribute (IIS refuses it too, with error 500.19); hpgate reads it from <appSettings><add key=\"hpgate:{key}\" value=\"...\"/></appSettings>"
        );
    }
    format!(
        "unknown attribute; <httpPlatform> accepts {}",
        names(Place::Attribute).collect::<Vec<_>>().join(", ")
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

/// Applies one `hpgate:NAME` appSettings value (NAME matched ignoring case).
pub fn apply_app_setting(cfg: &mut Config, name: &str, raw: &str) -> Result<(), String> {
    let Some(setting) = SETTINGS
        .iter()
        .find(|s| s.place == Place::AppSetting && s.name.eq_ignore_ascii_case(name))
    else {
        return Err(format!(
            "unknown hpgate setting \"hpgate:{name}\"; known settings: {}",
            names(Place::AppSetting).collect::<Vec<_>>().join(", ")
        ));
    };
    apply(cfg, setting, raw, &|_| None)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `:PORT` is loopback for the admin listener; empty is off.
    #[test]
    fn admin_listen_defaults_to_loopback() {
        assert_eq!(admin_listen(":9180").as_deref(), Ok("127.0.0.1:9180"));
        assert_eq!(admin_listen(" ").as_deref(), Ok(""));
        assert_eq!(admin_listen("0.0.0.0:9180").as_deref(), Ok("0.0.0.0:9180"));
        assert_eq!(admin_listen("[::1]:9").as_deref(), Ok("[::1]:9"));
        assert!(admin_listen("nope").is_err());
    }

    /// `| `name` | cells... |` rows of the markdown table under `heading`.
    fn table_rows(doc: &str, heading: &str) -> Vec<Vec<String>> {
        let section = doc.split(heading).nth(1).unwrap_or("");
        let section = section.split("\n## ").next().unwrap_or("");
        section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                // No cell holds a `|`, so splitting on it is exact.
                let cells = l.trim().trim_matches('|').split('|');
                cells.map(|c| c.trim().to_string()).collect()
            })
            .collect()
    }

    /// docs/configuration.md's tables and the declaration agree: every
    /// setting has a row with its default and range, every row is declared,
    /// flag/env twins are named in the row, and the restart-only settings
    /// are the ones "Changes while running" names.
    #[test]
    fn docs_tables_match_the_declaration() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
        let doc = std::fs::read_to_string(path).expect("docs/configuration.md");
        // (place, heading, default column, range column)
        let tables = [
            (Place::Attribute, "## `<httpPlatform>` attributes", 2, 3),
            (Place::AppSetting, "## `hpgate:` appSettings", 1, 2),
        ];
        for (place, heading, default_col, range_col) in tables {
            let rows = table_rows(&doc, heading);
            assert!(!rows.is_empty(), "no table under {heading}");
            for row in &rows {
                let name = row[0].trim_matches('`');
                let Some(s) = SETTINGS.iter().find(|s| s.name == name && s.place == place) else {
                    panic!("{heading}: row {name} is not declared in config/settings.rs");
                };
                assert_eq!(row[default_col], s.doc_default, "{name}: default");
                assert_eq!(row[range_col], s.doc_range, "{name}: range");
                for twin in [s.flag, s.env].into_iter().flatten() {
                    assert!(
                        row.join("|").contains(&format!("`{twin}`")),
                        "{name}: row names {twin}"
                    );
                }
            }
            for name in names(place) {
                let n = rows.iter().filter(|r| r[0] == format!("`{name}`")).count();
                assert_eq!(n, 1, "{heading}: {name} needs exactly one row");
            }
        }
        let running = doc.split("## Changes while running").nth(1).unwrap_or("");
        let restart_sentence = running
            .split(". ")
            .find(|s| s.contains("need a restart"))
            .expect("a sentence naming the settings that need a restart");
        for s in SETTINGS {
            assert_eq!(
                restart_sentence.contains(&format!("`{}`", s.name)),
                s.restart,
                "{}: restart: {} but the docs' restart sentence disagrees",
                s.name,
                s.restart
            );
        }
    }

    #[test]
    fn names_are_unique_and_defaults_parse_back() {
        let mut seen: Vec<String> = SETTINGS.iter().map(|s| s.name.to_lowercase()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), SETTINGS.len());
        // Every appSettings default, written back as its shown form, is
        // accepted and gives the same value: defaults lie inside the ranges.
        let defaults = Config::defaults(PathBuf::from("/site"));
        // A secret never shows its value, so it cannot round-trip.
        let shown_whole = |s: &&Setting| s.name != "tlsPfxPassword";
        for s in SETTINGS
            .iter()
            .filter(|s| s.place == Place::AppSetting)
            .filter(shown_whole)
        {
            let mut cfg = defaults.clone();
            let shown = (s.show)(&defaults);
            apply(&mut cfg, s, &shown, &|_| None).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            assert_eq!((s.show)(&cfg), shown, "{}", s.name);
        }
    }

    #[test]
    fn restart_only_changes_come_from_the_declaration() {
        let old = Config::defaults(PathBuf::from("/site"));
        let mut new = old.clone();
        for (name, raw) in [
            ("listen", ":9000"),
            ("logFormat", "json"),
            ("workerThreads", "2"),
        ] {
            apply_app_setting(&mut new, name, raw).unwrap();
        }
        apply_app_setting(&mut new, "maxConnections", "5").unwrap();
        let attr = Attr {
            name: "rapidFailsPerMinute".into(),
            value: "3".into(),
            offset: 0,
        };
        apply_attribute(&mut new, &attr, &|_| None).unwrap();
        let changes = old.restart_only_changes(&new);
        let want = [
            ("listen", "127.0.0.1:8086", "0.0.0.0:9000"),
            ("logFormat", "text", "json"),
            ("rapidFailsPerMinute", "10", "3"),
            ("workerThreads", "0", "2"),
        ];
        let got: Vec<_> = changes
            .iter()
            .map(|(n, w, v)| (*n, w.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn times_are_durations_and_print_as_seconds() {
        let mut cfg = Config::defaults(PathBuf::from("/site"));
        let attr = |name: &str, value: &str| Attr {
            name: name.into(),
            value: value.into(),
            offset: 0,
        };
        apply_attribute(&mut cfg, &attr("requestTimeout", "00:01:30"), &|_| None).unwrap();
        apply_app_setting(&mut cfg, "WEBSOCKETIDLETIMEOUT", "300").unwrap();
        assert_eq!(cfg.request_timeout, Duration::from_secs(90));
        assert_eq!(cfg.web_socket_idle_timeout, Duration::from_secs(300));
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["requestTimeout"], 90);
        assert_eq!(json["webSocketIdleTimeout"], 300);
        assert_eq!(json["startupTimeLimit"], 10);
    }
}
