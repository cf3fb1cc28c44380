//! Check 7: the configuration loads, with the same errors as `hpgate config`,
//! and can run on this system.

use crate::config::{self, Config, Sources};

use super::report::Report;

pub const NAME: &str = "config";

/// The effective configuration, or None after reporting every error.
pub fn check(sources: &Sources, report: &mut Report) -> Option<Config> {
    let cfg = match config::load(sources, &config::expand_lookup) {
        Ok(cfg) => cfg,
        Err(errors) => {
            for e in &errors.0 {
                report.fail(
                    NAME,
                    e.to_string(),
                    "edit the place named; `hpgate config` shows the same errors",
                );
            }
            return None;
        }
    };
    if let Err(e) = cfg.check_runnable() {
        report.fail(
            NAME,
            e.to_string(),
            "point processPath at a program on this system",
        );
        return None;
    }
    let from = match &cfg.config_file {
        Some(p) => format!("{} loads", p.display()),
        None => "no web.config; the command after -- is used".to_string(),
    };
    report.ok(
        NAME,
        format!(
            "{from}; the app runs {} in {}",
            cfg.process_path,
            cfg.site_root.display()
        ),
    );
    Some(cfg)
}
