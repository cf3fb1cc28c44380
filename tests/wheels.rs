//! The wheels scripts/wheels builds: the Linux wheel, installed into a fresh
//! venv, runs as `hpgate` and as `python -m hpgate` and serves the chat
//! fixture through a Socket.IO round trip; the musl wheel holds a static
//! binary that runs anywhere; the Windows wheel carries
//! `hpgate.exe` in its scripts. They run when HPGATE_TEST_WHEELS names the
//! folder of built wheels (scripts/test sets it after building them once:
//! a release build with zig takes minutes); otherwise they say so and pass.
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn wheels_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("HPGATE_TEST_WHEELS").map(PathBuf::from);
    if dir.is_none() {
        eprintln!("{test}: skipped, HPGATE_TEST_WHEELS is not set (scripts/test sets it)");
    }
    dir
}

/// The one wheel of this version whose platform tag contains `tag`.
fn wheel(dir: &Path, tag: &str) -> PathBuf {
    let prefix = format!("hpgate-{VERSION}-");
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&prefix) && name.contains(tag) && name.ends_with(".whl")
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {tag} wheel in {}: {found:?}",
        dir.display()
    );
    found[0].clone()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", describe(&out));
    out
}

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh venv in `site` with `wheel` installed (no index: the wheel has no
/// dependencies); returns its bin folder.
fn install(site: &Site, wheel: &Path) -> PathBuf {
    let venv = site.path("venv");
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    let bin = venv.join("bin");
    run(Command::new(bin.join("pip"))
        .args(["install", "-q", "--no-index", "--disable-pip-version-check"])
        .arg(wheel));
    bin
}

fn chat_site() -> Site {
    let site = Site::new("wheel-chat");
    site.python_app(
        "fixtures/chat/app.py",
        "<environmentVariables><environmentVariable name=\"CHAT_MODE\" value=\"threading\"/></environmentVariables>",
        &[],
    );
    site
}

#[test]
fn linux_wheel_installs_and_runs_as_hpgate_and_python_m_hpgate() {
    let Some(dir) = wheels_dir("linux wheel") else {
        return;
    };
    let venv = Site::new("wheel-venv");
    let bin = install(&venv, &wheel(&dir, "manylinux"));
    let want = format!("hpgate {VERSION}");
    let direct = run(Command::new(bin.join("hpgate")).arg("--version"));
    assert_eq!(String::from_utf8_lossy(&direct.stdout).trim(), want);
    let module = run(Command::new(bin.join("python")).args(["-m", "hpgate", "--version"]));
    assert_eq!(String::from_utf8_lossy(&module.stdout).trim(), want);

    // `python -m hpgate` passes the arguments and the exit code through.
    let missing = ["run", "--config", "/nonexistent/web.config"];
    let direct = Command::new(bin.join("hpgate"))
        .args(missing)
        .output()
        .unwrap();
    let module = Command::new(bin.join("python"))
        .args(["-m", "hpgate"])
        .args(missing)
        .output()
        .unwrap();
    assert!(!direct.status.success(), "{}", describe(&direct));
    assert_eq!(
        module.status.code(),
        direct.status.code(),
        "{}",
        describe(&module)
    );
    assert_eq!(module.stderr, direct.stderr);
}

#[test]
fn installed_linux_binary_serves_the_chat_fixture() {
    let Some(dir) = wheels_dir("chat through the wheel") else {
        return;
    };
    let venv = Site::new("wheel-venv");
    let bin = install(&venv, &wheel(&dir, "manylinux"));
    let site = chat_site();
    let g = Gateway::start_bin(&bin.join("hpgate"), &site.dir, &[], &[]);
    assert!(
        g.wait_log("app process is ready", Duration::from_secs(20)),
        "{}",
        g.logs()
    );
    let out = run(Command::new(venv_python())
        .arg(repo_root().join("fixtures/chat/client.py"))
        .arg(format!("http://{}", g.addr))
        .args(["basic", "websocket"]));
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", g.logs()));
    assert_eq!(
        v["echo"],
        serde_json::json!({"x": [1, 2, 3]}),
        "{v}\n{}",
        g.logs()
    );
    assert_eq!(v["transport"], "websocket", "{v}");
}

#[test]
fn windows_wheel_holds_hpgate_exe_in_its_scripts() {
    let Some(dir) = wheels_dir("windows wheel") else {
        return;
    };
    let wheel = wheel(&dir, "win_amd64");
    let list = run(Command::new("python3")
        .args(["-m", "zipfile", "-l"])
        .arg(&wheel));
    let list = String::from_utf8_lossy(&list.stdout);
    let exe = format!("hpgate-{VERSION}.data/scripts/hpgate.exe");
    for name in [exe.as_str(), "hpgate/__main__.py", "hpgate/__init__.py"] {
        assert!(
            list.lines().any(|l| l.starts_with(name)),
            "{name} in {list}"
        );
    }
    // A Windows executable (PE, "MZ"), and the wheel says it is for win_amd64.
    let out = Site::new("wheel-win");
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&out.dir));
    let bytes = std::fs::read(out.dir.join(&exe)).unwrap();
    assert_eq!(&bytes[..2], b"MZ");
    let meta =
        std::fs::read_to_string(out.path(&format!("hpgate-{VERSION}.dist-info/WHEEL"))).unwrap();
    assert!(meta.contains("Tag: py3-none-win_amd64"), "{meta}");
}

/// The musl wheel (Alpine and other musl distributions): a static binary,
/// so it runs here too, and the tag pip on musl looks for.
#[test]
fn musl_wheel_holds_a_static_binary_that_runs() {
    let Some(dir) = wheels_dir("musl wheel") else {
        return;
    };
    let wheel = wheel(&dir, "musllinux_1_2_x86_64");
    let out = Site::new("wheel-musl");
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&out.dir));
    let meta =
        std::fs::read_to_string(out.path(&format!("hpgate-{VERSION}.dist-info/WHEEL"))).unwrap();
    assert!(meta.contains("musllinux_1_2_x86_64"), "{meta}");
    let exe = out.path(&format!("hpgate-{VERSION}.data/scripts/hpgate"));
    // No program interpreter: nothing of the host's C library is needed.
    let elf = run(Command::new("readelf").arg("-l").arg(&exe));
    let headers = String::from_utf8_lossy(&elf.stdout);
    assert!(!headers.contains("INTERP"), "not static: {headers}");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let version = run(Command::new(&exe).arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("hpgate {VERSION}")
    );
}
