//! Entry point: parse the command line and hand over to the lifecycle.
use std::process::ExitCode;

use clap::Parser;
use hpgate::cli::{Action, Cli};

// mimalloc: a proxy allocates and frees small buffers and header maps on
// every request; glibc's malloc spent ~9% of the small-request profile in
// malloc/free/consolidate (docs/benchmarks.md). Unix only: on Windows it
// would need a MinGW C compiler for the cross check, and the system heap is
// fine there.
#[cfg(unix)]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let env = |name: &str| std::env::var(name).ok();
    match cli.action(&env, cwd) {
        Action::Run(sources) => hpgate::lifecycle::run(sources),
        Action::PrintConfig(sources) => hpgate::lifecycle::print_config(&sources),
        Action::Service(cmd) => hpgate::service::main(*cmd),
        Action::Status(Some(addr), json) => hpgate::admin::client::run(&addr, json),
        Action::Status(None, _) => {
            eprintln!(
                "error: hpgate status needs the admin address: --admin HOST:PORT or HPGATE_ADMIN"
            );
            ExitCode::from(2)
        }
        Action::Check(sources, opts) => hpgate::check::run(&sources, &opts),
        Action::AccessProbe => hpgate::check::access::probe_main(),
        Action::Watchdog => hpgate::supervisor::run_watchdog(),
    }
}
