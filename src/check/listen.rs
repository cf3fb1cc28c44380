//! Check 11: every listen address can be bound now (and who holds it when
//! it cannot, where the system tells). The socket is closed again at once.

use crate::config::Config;
use crate::proxy;
use crate::supervisor::port_owners;

use super::report::Report;

pub const NAME: &str = "listen";

pub async fn check(cfg: &Config, report: &mut Report) {
    for l in cfg.listen.iter() {
        match proxy::bind(l.addr).await {
            Ok(listener) => {
                drop(listener);
                report.ok(NAME, format!("{l} can be bound"));
            }
            Err(msg) => {
                let owners: Vec<String> = port_owners(l.addr.port())
                    .into_iter()
                    .map(|(pid, name)| format!("pid {pid} ({name})"))
                    .collect();
                let by = if owners.is_empty() {
                    String::new()
                } else {
                    format!("; in use by {}", owners.join(", "))
                };
                report.fail(
                    NAME,
                    format!("{msg}{by}"),
                    "stop the program holding it (an hpgate already running?), or pick another address with --listen or hpgate:listen",
                );
            }
        }
    }
}
