//! The command line: `hpgate [run|config] [OPTIONS] [-- COMMAND ARGS...]`.
//!
//! Owns flag definitions and reading their environment-variable twins
//! (the flag wins). It must not read web.config; it hands a
//! [`config::Sources`] to the config module, which applies precedence.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Origin, Sources};

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
    /// Internal: kills app process groups when hpgate dies (started by hpgate itself).
    #[command(name = "__watchdog", hide = true)]
    Watchdog,
}

#[derive(Args, Debug, Clone, Default)]
pub struct GatewayArgs {
    /// web.config to read; the site root is its folder [default: ./web.config] [env: HPGATE_CONFIG]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on: HOST:PORT, [IPv6]:PORT or :PORT for all interfaces [default: 127.0.0.1:8086] [env: HPGATE_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// WebSocket compression: passthrough, disable or offload [default: passthrough] [env: HPGATE_WEBSOCKET_COMPRESSION]
    #[arg(long, value_name = "MODE")]
    pub websocket_compression: Option<String>,
    /// Log format: text or json [default: text] [env: HPGATE_LOG_FORMAT]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Threads that run the proxy; 0 is one per CPU [default: 0] [env: HPGATE_WORKER_THREADS]
    #[arg(long, value_name = "N")]
    pub worker_threads: Option<String>,
    /// The app's command and arguments, replacing processPath and arguments (%HTTP_PLATFORM_PORT% works here too)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// What `main` should do.
pub enum Action {
    Run(Sources),
    PrintConfig(Sources),
    Watchdog,
}

impl Cli {
    pub fn action(self, env: &dyn Fn(&str) -> Option<String>, cwd: PathBuf) -> Action {
        match self.command {
            None => Action::Run(self.run.sources(env, cwd)),
            Some(Command::Run(args)) => Action::Run(args.sources(env, cwd)),
            Some(Command::Config(args)) => Action::PrintConfig(args.sources(env, cwd)),
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
        Sources {
            config,
            listen: pick(self.listen, "--listen", "HPGATE_LISTEN"),
            web_socket_compression: pick(
                self.websocket_compression,
                "--websocket-compression",
                "HPGATE_WEBSOCKET_COMPRESSION",
            ),
            log_format: pick(self.log_format, "--log-format", "HPGATE_LOG_FORMAT"),
            worker_threads: pick(
                self.worker_threads,
                "--worker-threads",
                "HPGATE_WORKER_THREADS",
            ),
            command: self.command,
            cwd,
        }
    }
}
