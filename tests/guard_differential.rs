//! The guard against a strict reference parser: random request streams
//! from fuzz/tools/h11_diff.py's grammar (CL/TE variants, obsolete folding,
//! bare CR/LF, chunk extensions, pipelining) go through the guard here, and
//! the script reads the same bytes with h11 and compares the request
//! boundaries and body lengths (docs/fuzzing.md lists the categories). For
//! each request the guard let through, whether hyper's head parser
//! (httparse) reads it too is passed along: a request h11 refuses is fine
//! only when hyper refuses it as well.
//!
//! HPGATE_DIFF_SEED and HPGATE_DIFF_COUNT change the corpus (default: seed
//! 1, 3000 streams).
mod support;

use std::io::Write;
use std::process::Command;

use hpgate::fuzzing::{guard_verdict, Framed};
use support::{repo_root, venv_python};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether hyper's parser reads the head of `r` (starting where the
/// previous request ended) rather than refusing it.
fn hyper_reads(data: &[u8], from: usize, r: &Framed) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(&data[from..r.end]).is_ok()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn guard_frames_requests_like_h11() {
    let script = repo_root().join("fuzz/tools/h11_diff.py");
    let (seed, count) = (
        env_or("HPGATE_DIFF_SEED", 1),
        env_or("HPGATE_DIFF_COUNT", 3000),
    );
    let gen = Command::new(venv_python())
        .arg(&script)
        .args([
            "gen",
            "--seed",
            &seed.to_string(),
            "--count",
            &count.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let out_path = repo_root().join("target/guard-differential.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&out_path).unwrap());
    for line in String::from_utf8(gen.stdout).unwrap().lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let h = rec["hex"].as_str().unwrap();
        let data = hex(h);
        let v = guard_verdict(&data);
        let mut from = 0;
        let hyper: Vec<bool> = v
            .requests
            .iter()
            .map(|r| {
                let ok = hyper_reads(&data, from, r);
                from = r.end;
                ok
            })
            .collect();
        let rec = serde_json::json!({ "hex": h, "guard": v, "hyper": hyper });
        writeln!(out, "{rec}").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let cmp = Command::new(venv_python())
        .arg(&script)
        .arg("compare")
        .arg(&out_path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&cmp.stdout);
    eprintln!("{report}{}", String::from_utf8_lossy(&cmp.stderr));
    assert!(
        cmp.status.success(),
        "the guard frames streams differently from h11 (seed {seed}):\n{report}"
    );
    assert!(
        report.contains(" same "),
        "no stream compared equal:\n{report}"
    );
}
