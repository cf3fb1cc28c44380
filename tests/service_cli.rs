//! `hpgate service ...` outside Windows: exit 2, pointing to systemd.
#![cfg(not(windows))]

use std::process::Command;

#[test]
fn service_commands_point_to_systemd() {
    for sub in ["install", "uninstall", "start", "stop"] {
        let out = Command::new(env!("CARGO_BIN_EXE_hpgate"))
            .args(["service", sub, "--name", "shop"])
            .output()
            .expect("run hpgate");
        assert_eq!(out.status.code(), Some(2), "service {sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("docs/deploy-linux.md"), "service {sub}: {err}");
    }
}
