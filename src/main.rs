//! Entry point: parse the command line and hand over to the lifecycle.
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hpgate::cli::Cli::parse();
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let env = |name: &str| std::env::var(name).ok();
    match cli.action(&env, cwd) {
        hpgate::cli::Action::PrintConfig(sources) => {
            match hpgate::config::load(&sources, &hpgate::config::expand_lookup) {
                Ok(cfg) => {
                    println!("{}", serde_json::to_string_pretty(&cfg).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    ExitCode::from(2)
                }
            }
        }
        _ => ExitCode::SUCCESS,
    }
}
