//! The command line: `hpgate [run|config] [OPTIONS] [-- COMMAND ARGS...]`.
//!
//! Owns flag definitions and reading their environment-variable twins
//! (the flag wins). It must not read web.config; it hands a
//! [`config::Sources`] to the config module, which applies precedence.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Origin, Sources, SETTINGS};

#[derive(Parser, Debug)]
#[command(
    name = "hpgate",
    version,
    about = "Starts and supervises a web app from web.config (IIS HttpPlatformHandler compatible) and forwards HTTP and WebSocket traffic to it.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for `run`, which is what `hpgate` alone does.
    #[command(flatten)]
    pub run: GatewayArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway (the default when no subcommand is given).
    Run(GatewayArgs),
    /// Print the effective configuration as JSON and exit (exit code 2 on errors).
    Config(GatewayArgs),
    /// Windows: install, uninstall, start or stop hpgate as a Windows service (docs/windows.md).
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Show a running hpgate's processes and readiness (from its admin listener); exit 3 when not ready.
    Status(StatusArgs),
    /// Check the site before running it: configuration, permissions (also --as another account), log folder, listen addresses, a trial start, Socket.IO; exit 0 all ok, 1 warnings only, 2 a failure.
    Check(CheckArgs),
    /// Internal: answers access questions as another account (started by `hpgate check --as`).
    #[command(name = "__access-probe", hide = true)]
    AccessProbe,
    /// Internal: kills app process groups when hpgate dies (started by hpgate itself).
    #[command(name = "__watchdog", hide = true)]
    Watchdog,
}

#[derive(Args, Debug, Clone, Default)]
pub struct GatewayArgs {
    /// web.config to read; the site root is its folder [default: ./web.config] [env: HPGATE_CONFIG]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on: HOST:PORT, [IPv6]:PORT or :PORT for all interfaces, prefixed https:// for TLS; repeat for several [default: 127.0.0.1:8086] [env: HPGATE_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// TLS certificate chain (PEM) or a folder of certificates; repeat for several, chosen by SNI [env: HPGATE_TLS_CERT]
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Vec<String>,
    /// Private key of the --tls-cert given in the same position [env: HPGATE_TLS_KEY]
    #[arg(long, value_name = "PATH")]
    pub tls_key: Vec<String>,
    /// PFX/PKCS#12 certificate and key; password from HPGATE_TLS_PFX_PASSWORD [env: HPGATE_TLS_PFX]
    #[arg(long, value_name = "PATH")]
    pub tls_pfx: Vec<String>,
    /// Get a certificate for this name by ACME (Let's Encrypt by default); repeat for several [env: HPGATE_ACME_DOMAINS]
    #[arg(long, value_name = "NAME")]
    pub acme_domain: Vec<String>,
    /// Contact e-mail for the ACME account [env: HPGATE_ACME_EMAIL]
    #[arg(long, value_name = "ADDRESS")]
    pub acme_email: Option<String>,
    /// ACME directory URL, or `staging` for Let's Encrypt's staging [default: Let's Encrypt] [env: HPGATE_ACME_DIRECTORY]
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,
    /// PEM root to trust for the ACME directory's HTTPS (test servers) [env: HPGATE_ACME_DIRECTORY_CA]
    #[arg(long, value_name = "PATH")]
    pub acme_directory_ca: Option<String>,
    /// Folder for the ACME account and certificates [default: .hpgate-acme in the site root] [env: HPGATE_ACME_CACHE]
    #[arg(long, value_name = "DIR")]
    pub acme_cache: Option<String>,
    /// WebSocket compression: passthrough, disable or offload [default: passthrough] [env: HPGATE_WEBSOCKET_COMPRESSION]
    #[arg(long, value_name = "MODE")]
    pub websocket_compression: Option<String>,
    /// Log format: text or json [default: text] [env: HPGATE_LOG_FORMAT]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Threads that run the proxy; 0 is one per CPU [default: 0] [env: HPGATE_WORKER_THREADS]
    #[arg(long, value_name = "N")]
    pub worker_threads: Option<String>,
    /// Admin listener for /metrics, /livez, /readyz and /status: HOST:PORT, or :PORT for loopback [default: off] [env: HPGATE_ADMIN]
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// The app's command and arguments, replacing processPath and arguments (%HTTP_PLATFORM_PORT% works here too)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `hpgate service ...`: the Windows Service Control Manager.
#[derive(Subcommand, Debug, Clone)]
pub enum ServiceCommand {
    /// Register a service that runs `hpgate service run` with these options (as Administrator).
    Install(ServiceRunArgs),
    /// Delete the service.
    Uninstall(ServiceName),
    /// Ask the Service Control Manager to start the service.
    Start(ServiceName),
    /// Ask the Service Control Manager to stop the service (a graceful shutdown).
    Stop(ServiceName),
    /// Internal: what the Service Control Manager starts.
    #[command(hide = true)]
    Run(ServiceRunArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ServiceName {
    /// Name of the Windows service
    #[arg(long, value_name = "NAME", default_value = "hpgate")]
    pub name: String,
}

#[derive(Args, Debug, Clone)]
pub struct ServiceRunArgs {
    #[command(flatten)]
    pub service: ServiceName,
    #[command(flatten)]
    pub run: GatewayArgs,
}

#[derive(Args, Debug, Clone, Default)]
pub struct StatusArgs {
    /// The admin listener to ask: HOST:PORT, or :PORT for loopback [env: HPGATE_ADMIN]
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// Print the JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct CheckArgs {
    /// Check for this account (Linux, as root: its uid, gid and groups) instead of the current one
    #[arg(long = "as", value_name = "USER")]
    pub as_user: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: GatewayArgs,
}

/// What `main` should do.
pub enum Action {
    Run(Sources),
    PrintConfig(Sources),
    Service(Box<ServiceCommand>),
    /// `hpgate status`: the admin address (None: not given), JSON or a table.
    Status(Option<String>, bool),
    Check(Sources, crate::check::Options),
    AccessProbe,
    Watchdog,
}

impl Cli {
    pub fn action(self, env: &dyn Fn(&str) -> Option<String>, cwd: PathBuf) -> Action {
        match self.command {
            None => Action::Run(self.run.sources(env, cwd)),
            Some(Command::Run(args)) => Action::Run(args.sources(env, cwd)),
            Some(Command::Config(args)) => Action::PrintConfig(args.sources(env, cwd)),
            Some(Command::Service(cmd)) => Action::Service(Box::new(cmd)),
            Some(Command::Status(args)) => {
                let addr = args
                    .admin
                    .or_else(|| env("HPGATE_ADMIN").filter(|v| !v.is_empty()))
                    .map(|a| match a.strip_prefix(':') {
                        Some(port) => format!("127.0.0.1:{port}"),
                        None => a,
                    });
                Action::Status(addr, args.json)
            }
            Some(Command::Check(args)) => {
                let opts = crate::check::Options {
                    as_user: args.as_user,
                    json: args.json,
                };
                Action::Check(args.run.sources(env, cwd), opts)
            }
            Some(Command::AccessProbe) => Action::AccessProbe,
            Some(Command::Watchdog) => Action::Watchdog,
        }
    }
}

impl GatewayArgs {
    /// Merges flags with their environment variables (flag wins, empty env ignored).
    pub fn sources(self, env: &dyn Fn(&str) -> Option<String>, cwd: PathBuf) -> Sources {
        let pick = |flag: Option<String>, flag_name: &'static str, var: &'static str| {
            flag.map(|v| (v, Origin::Flag(flag_name))).or_else(|| {
                env(var)
                    .filter(|v| !v.is_empty())
                    .map(|v| (v, Origin::Env(var)))
            })
        };
        let config = pick(
            self.config.map(|p| p.to_string_lossy().into_owned()),
            "--config",
            "HPGATE_CONFIG",
        )
        .map(|(p, o)| (PathBuf::from(p), o));
        let flags = [
            ("--listen", joined(self.listen)),
            ("--tls-cert", joined(self.tls_cert)),
            ("--tls-key", joined(self.tls_key)),
            ("--tls-pfx", joined(self.tls_pfx)),
            ("--acme-domain", joined(self.acme_domain)),
            ("--acme-email", self.acme_email),
            ("--acme-directory", self.acme_directory),
            ("--acme-directory-ca", self.acme_directory_ca),
            ("--acme-cache", self.acme_cache),
            ("--websocket-compression", self.websocket_compression),
            ("--log-format", self.log_format),
            ("--worker-threads", self.worker_threads),
            ("--admin", self.admin),
        ];
        let settings = SETTINGS
            .iter()
            .filter_map(|s| {
                let (flag, var) = (s.flag?, s.env?);
                let value = flags.iter().find(|(f, _)| *f == flag)?.1.clone();
                pick(value, flag, var).map(|(raw, origin)| (s, raw, origin))
            })
            .collect();
        Sources {
            config,
            settings,
            command: self.command,
            cwd,
        }
    }
}

/// A repeated flag as the one comma-separated value its setting takes.
fn joined(values: Vec<String>) -> Option<String> {
    (!values.is_empty()).then(|| values.join(","))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The `flag:` twins declared in config/settings.rs are exactly the
    /// setting flags clap knows (plus --config, which is no setting).
    #[test]
    fn declared_flags_match_the_command_line() {
        let mut declared: Vec<String> = SETTINGS
            .iter()
            .filter_map(|s| s.flag.map(str::to_string))
            .collect();
        declared.push("--config".into());
        declared.sort();
        let cmd = Cli::command();
        let mut clap_flags: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .filter(|l| l != "--help" && l != "--version")
            .collect();
        clap_flags.sort();
        assert_eq!(declared, clap_flags);
        for s in SETTINGS.iter().filter(|s| s.flag.is_some()) {
            let long = s.flag.and_then(|f| f.strip_prefix("--"));
            let arg = cmd.get_arguments().find(|a| a.get_long() == long);
            let help = arg.and_then(|a| a.get_help()).map(|h| h.to_string());
            let env = s.env.unwrap_or("(none)");
            assert!(
                help.is_some_and(|h| h.contains(env)),
                "{}: help names {env}",
                s.name
            );
        }
    }

    /// A flag wins over its environment variable; an empty variable is ignored.
    #[test]
    fn flags_and_env_become_sources() {
        let args = GatewayArgs {
            listen: vec![":9".into()],
            ..Default::default()
        };
        let env = |v: &str| match v {
            "HPGATE_LISTEN" => Some(":1".to_string()),
            "HPGATE_LOG_FORMAT" => Some("json".to_string()),
            _ => Some(String::new()),
        };
        let src = args.sources(&env, PathBuf::from("/"));
        let got: Vec<_> = src
            .settings
            .iter()
            .map(|(s, raw, origin)| (s.name, raw.as_str(), origin.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("listen", ":9", "command line --listen".to_string()),
                (
                    "logFormat",
                    "json",
                    "environment variable HPGATE_LOG_FORMAT".to_string()
                ),
            ]
        );
    }
}
