use std::path::{Path, PathBuf};

use super::*;
use crate::config::split_windows;

fn cwd() -> PathBuf {
    if cfg!(windows) {
        PathBuf::from(r"C:\sites\my site")
    } else {
        PathBuf::from("/srv/my site")
    }
}

/// Only --name and an absolute --config when nothing else is given.
#[test]
fn defaults_give_name_and_absolute_config() {
    let argv = service_argv("hpgate", &GatewayArgs::default(), &cwd());
    let config = cwd().join("web.config").to_string_lossy().into_owned();
    assert_eq!(
        argv,
        [
            "service",
            "run",
            "--name",
            "hpgate",
            "--config",
            config.as_str()
        ]
    );
}

/// Repeated flags stay repeated, single ones keep their value, and the
/// app command follows `--`.
#[test]
fn run_options_are_passed_on() {
    let run = GatewayArgs {
        config: Some(PathBuf::from("site/web.config")),
        listen: vec![":80".into(), "https://:443".into()],
        tls_pfx: vec![r"C:\certs\site.pfx".into()],
        log_format: Some("json".into()),
        command: vec!["python".into(), "app.py".into()],
        ..Default::default()
    };
    let argv = service_argv("shop", &run, &cwd());
    let config = cwd().join("site/web.config").to_string_lossy().into_owned();
    let want = [
        "service",
        "run",
        "--name",
        "shop",
        "--config",
        &config,
        "--listen",
        ":80",
        "--listen",
        "https://:443",
        "--tls-pfx",
        r"C:\certs\site.pfx",
        "--log-format",
        "json",
        "--",
        "python",
        "app.py",
    ];
    assert_eq!(argv, want);
}

/// Paths with spaces, quotes and trailing backslashes survive the SCM's
/// command line: CommandLineToArgvW rules split it back unchanged.
#[test]
fn command_line_round_trips_by_windows_rules() {
    let exe = Path::new(r"C:\Program Files\hpgate\hpgate.exe");
    let run = GatewayArgs {
        config: Some(PathBuf::from(r"D:\My Sites\shop\web.config")),
        acme_cache: Some(r"D:\My Sites\acme cache\".into()),
        command: vec![r#"say "hi""#.into(), String::new()],
        ..Default::default()
    };
    let argv = service_argv("shop", &run, &cwd());
    let line = command_line(exe, &argv);
    assert!(
        line.starts_with(r#""C:\Program Files\hpgate\hpgate.exe" service run"#),
        "{line}"
    );
    let (back, open) = split_windows(&line);
    assert_eq!(open, None);
    assert_eq!(back[0], exe.to_string_lossy());
    assert_eq!(back[1..], argv[..]);
}

#[test]
fn access_denied_says_run_as_administrator() {
    let msg = explain(
        "install the service",
        "hpgate",
        Some(5),
        "Access is denied.",
    );
    assert_eq!(
        msg,
        "error: cannot install the service: access denied: run it as Administrator (an elevated prompt)"
    );
    let msg = explain("start the service", "shop", Some(1060), "x");
    assert!(msg.contains("no service named shop"), "{msg}");
    let msg = explain("stop the service", "shop", Some(4242), "odd failure");
    assert_eq!(msg, "error: cannot stop the service: odd failure");
}

#[test]
fn site_folder_is_the_config_folder() {
    let config = cwd().join("web.config");
    assert_eq!(site_folder(&config), cwd());
}
