//! `hpgate config` on good and bad web.config files: every attribute's
//! default, a valid value and each kind of invalid value, with the error
//! naming file, line, column, attribute and range.
mod support;

use std::process::Command;

use support::*;

struct Out {
    code: i32,
    json: serde_json::Value,
    stderr: String,
}

fn config_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(hpgate_bin());
    cmd.arg("config").args(args).current_dir(dir);
    for v in [
        "HPGATE_CONFIG",
        "HPGATE_LISTEN",
        "HPGATE_WEBSOCKET_COMPRESSION",
        "HPGATE_LOG_FORMAT",
        "HPGATE_WORKER_THREADS",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("run hpgate config");
    Out {
        code: o.status.code().unwrap_or(-1),
        json: serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A site whose web.config has `<httpPlatform processPath="python3" ATTRS>`.
fn with_attrs(attrs: &str) -> (Site, Out) {
    let site = Site::new("cfg");
    site.web_config(&format!("processPath=\"python3\" {attrs}"), "", &[]);
    let out = config_in(&site.dir, &[], &[]);
    (site, out)
}

/// Writes an executable script at `rel` in the site.
fn executable(site: &Site, rel: &str) {
    use std::os::unix::fs::PermissionsExt;
    site.write(rel, "#!/bin/sh\n");
    std::fs::set_permissions(site.path(rel), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Asserts a single error at line 6 (where the generated httpPlatform is) naming `needles`.
fn assert_error(out: &Out, site: &Site, needles: &[&str]) {
    assert_eq!(out.code, 2, "expected exit 2; stderr: {}", out.stderr);
    let file = site.path("web.config").display().to_string();
    assert!(
        out.stderr.contains(&format!("{file}:6:")),
        "no file:line in {}",
        out.stderr
    );
    for n in needles {
        assert!(out.stderr.contains(n), "{n:?} missing in {}", out.stderr);
    }
}

#[test]
fn defaults_of_every_attribute() {
    let (site, out) = with_attrs("");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = &out.json;
    assert_eq!(j["arguments"], "");
    assert_eq!(j["startupTimeLimit"], 10);
    assert_eq!(j["startupRetryCount"], 10);
    assert_eq!(j["rapidFailsPerMinute"], 10);
    assert_eq!(j["requestTimeout"], 120);
    assert_eq!(j["stdoutLogEnabled"], false);
    assert_eq!(
        j["stdoutLogFile"],
        site.path("httpplatform-stdout").display().to_string()
    );
    assert_eq!(j["processesPerApplication"], 1);
    assert_eq!(j["forwardWindowsAuthToken"], false);
    assert_eq!(j["shutdownTimeLimit"], 10);
    assert_eq!(j["webSocketCompression"], "passthrough");
    assert_eq!(j["listen"], "127.0.0.1:8086");
    assert_eq!(j["logFormat"], "text");
    assert_eq!(j["detailedErrors"], true);
    assert_eq!(j["socketIoPath"], "/socket.io/");
    assert!(
        j["processPath"].as_str().unwrap().ends_with("/python3"),
        "looked up on PATH: {}",
        j["processPath"]
    );
}

#[test]
fn valid_values_of_every_attribute() {
    let (site, out) = with_attrs(
        "arguments=\"-m app --port %HTTP_PLATFORM_PORT%\" startupTimeLimit=\"3600\" startupRetryCount=\"0\" rapidFailsPerMinute=\"100\" requestTimeout=\"1.02:03:04\" stdoutLogEnabled=\"TRUE\" stdoutLogFile=\".\\logs\\py\" processesPerApplication=\"100\" forwardWindowsAuthToken=\"false\"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = &out.json;
    assert_eq!(
        j["argv"],
        serde_json::json!(["-m", "app", "--port", "%HTTP_PLATFORM_PORT%"])
    );
    assert_eq!(j["startupTimeLimit"], 3600);
    assert_eq!(j["startupRetryCount"], 0);
    assert_eq!(j["rapidFailsPerMinute"], 100);
    assert_eq!(j["requestTimeout"], 86400 + 2 * 3600 + 3 * 60 + 4);
    assert_eq!(j["stdoutLogEnabled"], true);
    assert_eq!(
        j["stdoutLogFile"],
        site.path("logs/py").display().to_string()
    );
    assert_eq!(j["processesPerApplication"], 100);
}

#[test]
fn invalid_values_name_line_attribute_and_range() {
    let cases: &[(&str, &[&str])] = &[
        (
            "startupTimeLimit=\"ten\"",
            &[
                "startupTimeLimit",
                "\"ten\" is not a whole number",
                "0 to 3600",
            ],
        ),
        (
            "startupTimeLimit=\"3601\"",
            &["startupTimeLimit", "out of range", "0 to 3600"],
        ),
        (
            "startupTimeLimit=\"-1\"",
            &["startupTimeLimit", "0 to 3600"],
        ),
        (
            "startupRetryCount=\"101\"",
            &["startupRetryCount", "0 to 100"],
        ),
        (
            "startupRetryCount=\"x\"",
            &["startupRetryCount", "0 to 100"],
        ),
        (
            "rapidFailsPerMinute=\"1000\"",
            &["rapidFailsPerMinute", "0 to 100"],
        ),
        (
            "requestTimeout=\"5\"",
            &["requestTimeout", "not a time span", "00:00:05"],
        ),
        (
            "requestTimeout=\"00:61:00\"",
            &["requestTimeout", "hh:mm:ss"],
        ),
        (
            "requestTimeout=\"31.00:00:00\"",
            &["requestTimeout", "out of range", "30.00:00:00"],
        ),
        (
            "stdoutLogEnabled=\"yes\"",
            &["stdoutLogEnabled", "true or false"],
        ),
        (
            "forwardWindowsAuthToken=\"1\"",
            &["forwardWindowsAuthToken", "true or false"],
        ),
        (
            "processesPerApplication=\"0\"",
            &["processesPerApplication", "1 to 100"],
        ),
        (
            "processesPerApplication=\"101\"",
            &["processesPerApplication", "1 to 100"],
        ),
        ("stdoutLogFile=\"\"", &["stdoutLogFile", "empty"]),
        (
            "bogus=\"1\"",
            &["bogus", "unknown attribute", "processPath"],
        ),
        ("startuptimelimit=\"5\"", &["did you mean startupTimeLimit"]),
        (
            "shutdownTimeLimit=\"5\"",
            &["hpgate:shutdownTimeLimit", "appSettings"],
        ),
    ];
    for (attrs, needles) in cases {
        let (site, out) = with_attrs(attrs);
        assert_error(&out, &site, needles);
        // Column points at the attribute itself.
        let name = attrs.split('=').next().unwrap();
        let line = std::fs::read_to_string(site.path("web.config"))
            .unwrap()
            .lines()
            .nth(5)
            .unwrap()
            .to_string();
        let col = line.find(&format!(" {name}=")).unwrap() + 2;
        assert!(
            out.stderr.contains(&format!(":6:{col}:")),
            "{attrs}: column {col} expected in {}",
            out.stderr
        );
    }
}

#[test]
fn duplicated_attribute_and_malformed_xml() {
    let site = Site::new("dup");
    site.write("web.config", "<configuration>\n<system.webServer>\n<httpPlatform processPath=\"a\" processPath=\"b\"/>\n</system.webServer>\n</configuration>\n");
    let out = config_in(&site.dir, &[], &[]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("web.config:3:31:") && out.stderr.contains("processPath appears twice"),
        "{}",
        out.stderr
    );

    for (text, line) in [
        ("<configuration>\n<system.webServer>\n<httpPlatform processPath=\"a\">\n</system.webServer>\n</configuration>", 4),
        ("<configuration>\n  <system.webServer>\n", 2),
        ("<configuration>\n<a x=1/>\n</configuration>", 2),
        ("", 1),
    ] {
        site.write("web.config", text);
        let out = config_in(&site.dir, &[], &[]);
        assert_eq!(out.code, 2, "{text}");
        assert!(out.stderr.contains(&format!("web.config:{line}:")), "{text:?}: {}", out.stderr);
    }
    std::fs::write(
        site.path("web.config"),
        b"<configuration>\n\xff\xfe<x/></configuration>",
    )
    .unwrap();
    let out = config_in(&site.dir, &[], &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("UTF-8"), "{}", out.stderr);
}

#[test]
fn missing_pieces() {
    let site = Site::new("missing");
    site.write(
        "web.config",
        "<configuration><system.webServer></system.webServer></configuration>",
    );
    let out = config_in(&site.dir, &[], &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no <httpPlatform>"), "{}", out.stderr);

    site.write("web.config", "<configuration>\n<system.webServer>\n<httpPlatform arguments=\"x\"/>\n</system.webServer>\n</configuration>");
    let out = config_in(&site.dir, &[], &[]);
    assert!(
        out.stderr.contains("web.config:3:1:") && out.stderr.contains("no processPath"),
        "{}",
        out.stderr
    );

    site.write("web.config", "<configuration><system.webServer><httpPlatform processPath=\"a\"/></system.webServer><location><system.webServer><httpPlatform processPath=\"b\"/></system.webServer></location></configuration>");
    assert!(config_in(&site.dir, &[], &[])
        .stderr
        .contains("second <httpPlatform>"));

    let empty = Site::new("nothing");
    let out = config_in(&empty.dir, &[], &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--"), "{}", out.stderr);
    let out = config_in(&empty.dir, &["--config", "nope/web.config"], &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no web.config at"), "{}", out.stderr);
}

#[test]
fn environment_variables_and_expansion() {
    let site = Site::new("envvars");
    executable(&site, "tools/python3");
    let tools = site.path("tools").display().to_string();
    site.web_config(
        "processPath=\"%TOOLS%/python3\" arguments=\"--home %HOME_DIR% --port %HTTP_PLATFORM_PORT% %UNKNOWN_VAR%\"",
        "<environmentVariables>\n<environmentVariable name=\"DROPPED\" value=\"1\"/>\n<clear/>\n<environmentVariable name=\"A\" value=\"%HOME_DIR%/x\"/>\n<environmentVariable name=\"P\" value=\"port=%HTTP_PLATFORM_PORT%\"/>\n</environmentVariables>\n<recycleOnFileChange><file path=\".\\app.py\"/></recycleOnFileChange>",
        &[],
    );
    let out = config_in(
        &site.dir,
        &[],
        &[("HOME_DIR", "/srv/home"), ("TOOLS", &tools)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = &out.json;
    assert_eq!(j["processPath"], format!("{tools}/python3"));
    assert_eq!(
        j["arguments"],
        "--home /srv/home --port %HTTP_PLATFORM_PORT% %UNKNOWN_VAR%"
    );
    assert_eq!(
        j["environmentVariables"],
        serde_json::json!({"A": "/srv/home/x", "P": "port=%HTTP_PLATFORM_PORT%"})
    );
    assert_eq!(
        j["recycleOnFileChange"],
        serde_json::json!([site.path("app.py").display().to_string()])
    );

    site.web_config("processPath=\"python3\"", "<environmentVariables><environmentVariable name=\"A\" value=\"1\"/><environmentVariable name=\"A\" value=\"2\"/></environmentVariables>", &[]);
    assert!(config_in(&site.dir, &[], &[]).stderr.contains("set twice"));
    site.web_config(
        "processPath=\"python3\"",
        "<environmentVariables><environmentVariable value=\"2\"/></environmentVariables>",
        &[],
    );
    assert!(config_in(&site.dir, &[], &[])
        .stderr
        .contains("needs a name"));
}

#[test]
fn every_app_setting() {
    let valid: &[(&str, &str, serde_json::Value)] = &[
        ("listen", ":9000", "0.0.0.0:9000".into()),
        ("logFormat", "json", "json".into()),
        ("shutdownTimeLimit", "600", 600.into()),
        ("webSocketCompression", "offload", "offload".into()),
        ("detailedErrors", "false", false.into()),
        ("trustForwardedHeaders", "true", true.into()),
        ("maxRequestHeaderBytes", "4096", 4096.into()),
        ("maxRequestHeaders", "50", 50.into()),
        ("maxRequestLineBytes", "1024", 1024.into()),
        ("headerReadTimeout", "5", 5.into()),
        ("clientBodyTimeout", "5", 5.into()),
        ("maxConnections", "100", 100.into()),
        ("keepAliveTimeout", "0", 0.into()),
        ("webSocketPingInterval", "20", 20.into()),
        ("webSocketIdleTimeout", "300", 300.into()),
        ("webSocketMaxMessageSize", "1048576", 1048576.into()),
        ("maxWebSockets", "10", 10.into()),
        ("webSocketCompressionLevel", "1", 1.into()),
        ("webSocketCompressionMinSize", "0", 0.into()),
        ("socketIoPath", "/sio", "/sio/".into()),
        ("socketIoAffinity", "false", false.into()),
        ("workerThreads", "1", 1.into()),
        ("stdoutLogMaxBytes", "65536", 65536.into()),
        ("stdoutLogMaxFiles", "3", 3.into()),
    ];
    for (key, value, expected) in valid {
        let site = Site::new("appset");
        site.web_config("processPath=\"python3\"", "", &[(key, value)]);
        let out = config_in(&site.dir, &[], &[]);
        assert_eq!(out.code, 0, "{key}: {}", out.stderr);
        assert_eq!(&out.json[*key], expected, "{key}");
    }
    for (key, bad) in [
        ("shutdownTimeLimit", "601"),
        ("webSocketCompression", "gzip"),
        ("detailedErrors", "maybe"),
        ("listen", "nowhere"),
        ("socketIoPath", "x"),
        ("webSocketCompressionLevel", "10"),
        ("workerThreads", "257"),
        ("stdoutLogMaxBytes", "1000"),
        ("stdoutLogMaxFiles", "0"),
    ] {
        let site = Site::new("appbad");
        site.web_config("processPath=\"python3\"", "", &[(key, bad)]);
        let out = config_in(&site.dir, &[], &[]);
        assert_eq!(out.code, 2, "{key}={bad}");
        assert!(
            out.stderr.contains("web.config:4:") && out.stderr.contains(&format!("hpgate:{key}")),
            "{}",
            out.stderr
        );
    }
    let site = Site::new("appunknown");
    site.web_config("processPath=\"python3\"", "", &[("noSuchThing", "1")]);
    let out = config_in(&site.dir, &[], &[]);
    assert!(
        out.stderr.contains("unknown hpgate setting") && out.stderr.contains("shutdownTimeLimit"),
        "{}",
        out.stderr
    );
}

#[test]
fn precedence_flag_env_appsettings_default() {
    let site = Site::new("prec");
    site.web_config(
        "processPath=\"python3\"",
        "",
        &[
            ("listen", "127.0.0.1:7001"),
            ("webSocketCompression", "disable"),
            ("logFormat", "json"),
        ],
    );
    let j = config_in(&site.dir, &[], &[]).json;
    assert_eq!(
        (
            j["listen"].as_str(),
            j["webSocketCompression"].as_str(),
            j["logFormat"].as_str()
        ),
        (Some("127.0.0.1:7001"), Some("disable"), Some("json"))
    );
    let env = [
        ("HPGATE_LISTEN", "127.0.0.1:7002"),
        ("HPGATE_WEBSOCKET_COMPRESSION", "offload"),
        ("HPGATE_LOG_FORMAT", "text"),
    ];
    let j = config_in(&site.dir, &[], &env).json;
    assert_eq!(
        (
            j["listen"].as_str(),
            j["webSocketCompression"].as_str(),
            j["logFormat"].as_str()
        ),
        (Some("127.0.0.1:7002"), Some("offload"), Some("text"))
    );
    let j = config_in(
        &site.dir,
        &[
            "--listen",
            "[::1]:7003",
            "--websocket-compression",
            "passthrough",
            "--log-format",
            "json",
        ],
        &env,
    )
    .json;
    assert_eq!(
        (
            j["listen"].as_str(),
            j["webSocketCompression"].as_str(),
            j["logFormat"].as_str()
        ),
        (Some("[::1]:7003"), Some("passthrough"), Some("json"))
    );
    let out = config_in(&site.dir, &["--websocket-compression", "zip"], &[]);
    assert!(
        out.code == 2 && out.stderr.contains("--websocket-compression"),
        "{}",
        out.stderr
    );
    // --worker-threads over HPGATE_WORKER_THREADS over the default (0).
    assert_eq!(config_in(&site.dir, &[], &[]).json["workerThreads"], 0);
    let threads = [("HPGATE_WORKER_THREADS", "3")];
    assert_eq!(config_in(&site.dir, &[], &threads).json["workerThreads"], 3);
    assert_eq!(
        config_in(&site.dir, &["--worker-threads", "1"], &threads).json["workerThreads"],
        1
    );
    let out = config_in(&site.dir, &[], &[("HPGATE_WORKER_THREADS", "many")]);
    assert!(
        out.code == 2 && out.stderr.contains("HPGATE_WORKER_THREADS"),
        "{}",
        out.stderr
    );
    // detailedErrors follows the listener unless set.
    assert_eq!(
        config_in(&site.dir, &["--listen", "0.0.0.0:8086"], &[]).json["detailedErrors"],
        false
    );
    assert_eq!(
        config_in(&site.dir, &["--listen", "localhost:8086"], &[]).json["detailedErrors"],
        true
    );
}

#[test]
fn command_after_double_dash() {
    let empty = Site::new("dash");
    let out = config_in(
        &empty.dir,
        &["--", "sh", "-c", "serve --port %HTTP_PLATFORM_PORT%"],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.json["processPath"].as_str().unwrap().ends_with("/sh"));
    assert_eq!(
        out.json["argv"],
        serde_json::json!(["-c", "serve --port %HTTP_PLATFORM_PORT%"])
    );
    assert_eq!(
        std::fs::canonicalize(out.json["siteRoot"].as_str().unwrap()).unwrap(),
        std::fs::canonicalize(&empty.dir).unwrap()
    );
    assert_eq!(out.json["configFile"], serde_json::Value::Null);

    // Overrides a web.config's command but keeps its other settings.
    let site = Site::new("dash2");
    site.web_config("processPath=\"python3\" startupTimeLimit=\"7\"", "", &[]);
    executable(&site, "run.sh");
    let out = config_in(&site.dir, &["--", "./run.sh"], &[]);
    assert_eq!(
        out.json["processPath"],
        site.path("run.sh").display().to_string()
    );
    assert_eq!(out.json["startupTimeLimit"], 7);
}

#[test]
fn program_lookup_prefers_the_site_root() {
    let site = Site::new("lookup");
    executable(&site, "python3");
    site.web_config("processPath=\"python3\"", "", &[]);
    assert_eq!(
        config_in(&site.dir, &[], &[]).json["processPath"],
        site.path("python3").display().to_string()
    );
    site.web_config("processPath=\".\\.venv\\bin\\python\"", "", &[]);
    executable(&site, ".venv/bin/python");
    assert_eq!(
        config_in(&site.dir, &[], &[]).json["processPath"],
        site.path(".venv/bin/python").display().to_string()
    );
}

#[test]
fn fixtures_and_the_seed_load() {
    let dir = repo_root().join("fixtures/web.config");
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "config") {
            let out = config_in(&dir, &["--config", p.to_str().unwrap()], &[]);
            // IIS files name Windows programs; only their absence may fail.
            let only_program_missing = out.code == 2
                && out
                    .stderr
                    .lines()
                    .all(|l| l.contains("processPath:") && l.contains("no such file"));
            assert!(
                out.code == 0 || only_program_missing,
                "{}: {}",
                p.display(),
                out.stderr
            );
        }
    }
    let out = config_in(&dir, &["--config", "seed.web.config"], &[]);
    let j = &out.json;
    assert_eq!(
        j["processPath"],
        "C:\\Users\\lextudio\\AppData\\Local\\Programs\\Python\\Python310\\python.exe"
    );
    assert_eq!(
        j["arguments"],
        "-m waitress --port %HTTP_PLATFORM_PORT% wsgi:application"
    );
    assert_eq!(
        j["argv"],
        serde_json::json!([
            "-m",
            "waitress",
            "--port",
            "%HTTP_PLATFORM_PORT%",
            "wsgi:application"
        ])
    );
    assert_eq!(j["startupTimeLimit"], 20);
    assert_eq!(j["stdoutLogEnabled"], true);
    assert_eq!(
        j["stdoutLogFile"],
        dir.join("python.log").display().to_string()
    );
    assert_eq!(j["requestTimeout"], 120);
    assert_eq!(j["webSocketCompression"], "passthrough");
}

#[test]
fn run_refuses_a_windows_interpreter_on_linux() {
    let dir = repo_root().join("fixtures/web.config");
    let o = Command::new(hpgate_bin())
        .args([
            "run",
            "--config",
            "seed.web.config",
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("Windows path") && e.contains(".venv/bin/python") && e.contains("--"),
        "{e}"
    );
}

#[test]
fn version_and_help() {
    let v = Command::new(hpgate_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("hpgate "));
    let h = String::from_utf8_lossy(
        &Command::new(hpgate_bin())
            .args(["run", "--help"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for opt in [
        "--config",
        "--listen",
        "--websocket-compression",
        "--log-format",
        "--worker-threads",
        "HPGATE_CONFIG",
        "HPGATE_LISTEN",
        "HPGATE_WEBSOCKET_COMPRESSION",
        "HPGATE_LOG_FORMAT",
        "HPGATE_WORKER_THREADS",
    ] {
        assert!(h.contains(opt), "{opt} missing from help");
    }
}

#[test]
fn an_oversized_web_config_is_refused_before_reading() {
    let site = Site::new("huge");
    // Sparse: 11 MiB on paper, nothing on disk.
    let f = std::fs::File::create(site.path("web.config")).unwrap();
    f.set_len(11 * 1024 * 1024).unwrap();
    let out = config_in(&site.dir, &[], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let file = site.path("web.config").display().to_string();
    for needle in [file.as_str(), "11534336 bytes", "10485760 bytes (10 MiB)"] {
        assert!(
            out.stderr.contains(needle),
            "{needle:?} missing in {}",
            out.stderr
        );
    }
}

#[test]
fn arguments_split_by_windows_rules_and_unclosed_quotes_are_errors() {
    // 2n backslashes before a quote: n backslashes, the quote groups.
    let (_site, out) = with_attrs(r#"arguments="e\\\\&quot;f g&quot; %HTTP_PLATFORM_PORT%""#);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json["argv"],
        serde_json::json!([r"e\\f g", "%HTTP_PLATFORM_PORT%"])
    );

    let (site, out) = with_attrs(r#"arguments="app.py --name &quot;a b""#);
    assert_error(
        &out,
        &site,
        &["attribute arguments", "unbalanced quote", "character 15"],
    );
}

#[test]
fn unrunnable_programs_and_oversized_arguments_are_positioned_errors() {
    let site = Site::new("prog");
    std::fs::create_dir_all(site.path("venv")).unwrap();
    site.write("app.sh", "#!/bin/sh\n");
    let file = site.path("web.config").display().to_string();
    for (program, words) in [
        ("./venv", "is a directory"),
        ("./app.sh", "is not executable"),
        ("./no-such-python", "no such file"),
        ("no-such-python9", "not found in the site root or on PATH"),
    ] {
        site.web_config(&format!("processPath=\"{program}\""), "", &[]);
        let out = config_in(&site.dir, &[], &[]);
        assert_error(&out, &site, &["processPath:", words]);
        assert!(
            out.stderr.contains(&format!("{file}:6:19:")),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("permission denied"), "{}", out.stderr);
    }
    // `hpgate run` refuses it at start, before listening.
    let o = Command::new(hpgate_bin())
        .args(["run", "--listen", "127.0.0.1:0"])
        .current_dir(&site.dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found in the site root or on PATH"));

    let big = "a".repeat(200 * 1024);
    let (site, out) = with_attrs(&format!("arguments=\"app.py {big}\""));
    assert_error(
        &out,
        &site,
        &["arguments:", "argument 2 is 204800 bytes", "131071"],
    );
    let many = vec!["a".repeat(100 * 1024); 25].join(" ");
    let (site, out) = with_attrs(&format!("arguments=\"{many}\""));
    assert_error(&out, &site, &["arguments:", "2 MiB"]);
}
