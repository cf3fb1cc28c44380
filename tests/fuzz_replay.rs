//! The fuzz targets on stable, as normal tests: every seed
//! (fuzz/seeds/TARGET) and every past finding (fuzz/regressions/TARGET)
//! is replayed, then mutants of them (bytes flipped, inserted, removed,
//! dictionary pieces, seeds spliced) run for HPGATE_FUZZ_SECONDS per target
//! (default 3; 0 replays only). Blind, not coverage-guided: `scripts/fuzz`
//! runs the same checks under cargo-fuzz (docs/fuzzing.md). A failing
//! input is written to target/fuzz-failures/ to become a regression file.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../fuzz/checks.rs"]
mod checks;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file of fuzz/seeds/TARGET and fuzz/regressions/TARGET.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(rd) = std::fs::read_dir(root().join("fuzz").join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for p in paths {
            let bytes = std::fs::read(&p).unwrap();
            out.push((p, bytes));
        }
    }
    out
}

/// A libFuzzer dictionary (fuzz/dict/TARGET.dict): one quoted piece per
/// line, `\xNN`, `\\` and `\"` escapes.
fn dictionary(target: &str) -> Vec<Vec<u8>> {
    let path = root().join("fuzz/dict").join(format!("{target}.dict"));
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| Some(unescape(l.split_once('"')?.1.strip_suffix('"')?)))
        .collect()
}

fn unescape(s: &str) -> Vec<u8> {
    let (mut out, b) = (Vec::new(), s.as_bytes());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'x')) if i + 3 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 4;
            }
            (b'\\', Some(&c)) => {
                out.push(c);
                i += 2;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// xorshift64*: reproducible from the seed it prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutant of a random input: a few edits of random kinds.
fn mutate(rng: &mut Rng, pool: &[Vec<u8>], dict: &[Vec<u8>]) -> Vec<u8> {
    let mut b = pool[rng.below(pool.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if at < b.len() => b[at] ^= 1 << rng.below(8),
            1 => b.insert(at, rng.next() as u8),
            2 if at < b.len() => {
                let end = (at + 1 + rng.below(8)).min(b.len());
                b.drain(at..end);
            }
            3 | 4 if !dict.is_empty() => {
                let piece = &dict[rng.below(dict.len())];
                b.splice(at..at, piece.iter().copied());
            }
            _ => {
                let other = &pool[rng.below(pool.len())];
                let from = rng.below(other.len() + 1);
                b.truncate(at);
                b.extend_from_slice(&other[from..]);
            }
        }
    }
    b
}

/// Runs `check` on `input`; on a panic saves the input and fails naming it.
fn run_one(target: &str, check: fn(&[u8]), input: &[u8], from: &str) {
    if catch_unwind(AssertUnwindSafe(|| check(input))).is_ok() {
        return;
    }
    let dir = root().join("target/fuzz-failures").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{:016x}", fnv(input)));
    std::fs::write(&file, input).unwrap();
    panic!(
        "fuzz target {target} failed on {from}; input saved as {} (add it to fuzz/regressions/{target}/)",
        file.display()
    );
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x100_0000_01b3)
    })
}

fn seconds() -> f64 {
    std::env::var("HPGATE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0)
}

fn fuzz(target: &str, check: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no seeds for {target}");
    for (path, bytes) in &inputs {
        run_one(target, check, bytes, &path.display().to_string());
    }
    let pool: Vec<Vec<u8>> = inputs.into_iter().map(|(_, b)| b).collect();
    let dict = dictionary(target);
    let seed = std::env::var("HPGATE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fnv(format!("{:?}", Instant::now()).as_bytes()) | 1);
    eprintln!("{target}: mutating with HPGATE_FUZZ_SEED={seed}");
    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds());
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let m = mutate(&mut rng, &pool, &dict);
        run_one(target, check, &m, &format!("mutant {runs} of seed {seed}"));
        runs += 1;
    }
    eprintln!("{target}: {runs} mutants");
}

#[test]
fn guard() {
    fuzz("guard", checks::guard);
}

#[test]
fn websocket_frame() {
    fuzz("websocket_frame", checks::websocket_frame);
}

#[test]
fn websocket_relay() {
    fuzz("websocket_relay", checks::websocket_relay);
}

#[test]
fn deflate() {
    fuzz("deflate", checks::deflate);
}

#[test]
fn web_config() {
    fuzz("web_config", checks::web_config);
}

#[test]
fn app_heads() {
    fuzz("app_heads", checks::app_heads);
}

#[test]
fn app_chunked() {
    fuzz("app_chunked", checks::app_chunked);
}

#[test]
fn app_fields() {
    fuzz("app_fields", checks::app_fields);
}

#[test]
fn app_framing() {
    fuzz("app_framing", checks::app_framing);
}

#[test]
fn dictionaries_parse() {
    assert_eq!(unescape(r#"a\x0d\x0a\"\\"#), b"a\r\n\"\\");
    assert!(dictionary("guard").len() > 10);
    assert!(Path::new(&root().join("fuzz/dict/web_config.dict")).is_file());
}
