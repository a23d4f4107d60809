//! Image references: parse or refuse; a parsed reference prints as one
//! that parses back to itself.
#![no_main]

use crated_core::reference::{parse_docker_ref, parse_normalized_named};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = parse_normalized_named(text) {
        let printed = parsed.to_string();
        let again = parse_normalized_named(&printed)
            .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
        assert_eq!(again.to_string(), printed, "{text:?}");
    }
    let _ = parse_docker_ref(text);
});
