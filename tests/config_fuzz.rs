//! Property test: no input makes the web.config reader panic.
use std::path::Path;

use proptest::prelude::*;

const VALID: &str = "<?xml version=\"1.0\"?>\n<configuration>\n<appSettings><add key=\"hpgate:shutdownTimeLimit\" value=\"5\"/></appSettings>\n<system.webServer>\n<httpPlatform processPath=\"python3\" arguments=\"-m app --port %HTTP_PLATFORM_PORT%\" requestTimeout=\"00:01:00\">\n<environmentVariables><environmentVariable name=\"A\" value=\"%HOME%\"/><clear/></environmentVariables>\n</httpPlatform>\n</system.webServer>\n</configuration>\n";

fn check(bytes: &[u8]) {
    if let Err(errors) = hpgate::config::load_bytes(Path::new("/x/web.config"), bytes) {
        for e in &errors.0 {
            assert!(e.to_string().contains("web.config"), "{e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check(&bytes);
    }

    #[test]
    fn mutated_configs_never_panic(edits in proptest::collection::vec((0usize..1000, any::<u8>(), 0u8..3), 1..8)) {
        let mut b = VALID.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at % (b.len() + 1);
            match op {
                0 => b.insert(i, byte),
                1 if i < b.len() => { b.remove(i); }
                _ if i < b.len() => b[i] = byte,
                _ => {}
            }
        }
        check(&b);
    }
}
