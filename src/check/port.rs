//! Check 9: the app learns its port, either from `%HTTP_PLATFORM_PORT%` in
//! the arguments (or an environment variable's value) or by reading
//! `HTTP_PLATFORM_PORT` itself, which only the trial start can tell.

use crate::config::{Config, PORT_PLACEHOLDER};

use super::report::Report;
use super::trial::Outcome;

pub const NAME: &str = "port";

const FIX: &str = "add the port to arguments (for waitress: --listen 127.0.0.1:%HTTP_PLATFORM_PORT%; for flask run: --port %HTTP_PLATFORM_PORT%), or read os.environ[\"HTTP_PLATFORM_PORT\"] in the app";

pub fn check(cfg: &Config, trial: &Outcome, report: &mut Report) {
    let in_args = cfg.argv.iter().any(|a| a.contains(PORT_PLACEHOLDER));
    let in_env = cfg
        .environment_variables
        .iter()
        .find(|(_, v)| v.contains(PORT_PLACEHOLDER));
    if in_args {
        report.ok(NAME, "arguments pass %HTTP_PLATFORM_PORT%");
        return;
    }
    if let Some((name, _)) = in_env {
        report.ok(
            NAME,
            format!("environment variable {name} passes %HTTP_PLATFORM_PORT%"),
        );
        return;
    }
    match trial {
        Outcome::Ready { port, .. } => report.ok(
            NAME,
            format!("arguments do not contain %HTTP_PLATFORM_PORT%, but the app listened on the port handed in HTTP_PLATFORM_PORT ({port}): it reads the variable"),
        ),
        Outcome::Ipv6Only { port } => report.ok(
            NAME,
            format!("arguments do not contain %HTTP_PLATFORM_PORT%, but the app listened on the port handed in HTTP_PLATFORM_PORT ({port}), on IPv6 only (see the start check): it reads the variable"),
        ),
        Outcome::Elsewhere { detail } => report.warn(
            NAME,
            format!("arguments do not contain %HTTP_PLATFORM_PORT% and the app does not read HTTP_PLATFORM_PORT{detail}; it will never be ready"),
            FIX,
        ),
        _ => report.warn(
            NAME,
            "arguments do not contain %HTTP_PLATFORM_PORT%; unless the app reads the HTTP_PLATFORM_PORT environment variable it listens on a port of its own and is never ready (the trial start could not tell)",
            FIX,
        ),
    }
}
