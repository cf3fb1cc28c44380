#![no_main]
//! cargo fuzz target; the checks are in fuzz/checks.rs (shared with tests/fuzz_replay.rs).

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::app_framing(data));
