//! Entry point: parse the command line and hand over to the lifecycle.
use std::process::ExitCode;

use clap::Parser;
use hpgate::cli::{Action, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let env = |name: &str| std::env::var(name).ok();
    match cli.action(&env, cwd) {
        Action::Run(sources) => hpgate::lifecycle::run(sources),
        Action::PrintConfig(sources) => hpgate::lifecycle::print_config(&sources),
        Action::Watchdog => hpgate::supervisor::run_watchdog(),
    }
}
