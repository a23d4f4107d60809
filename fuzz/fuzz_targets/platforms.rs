//! Platform specifiers (`linux/arm64/v8`): parse or refuse; a parsed one
//! formats as a specifier that parses to the same platform.
#![no_main]

use crated_core::platforms;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(platform) = platforms::parse(text) {
        let normal = platforms::normalize(platform);
        let printed = platforms::format(&normal);
        let again = platforms::parse(&printed)
            .unwrap_or_else(|e| panic!("{text:?} formatted as {printed:?}, which fails: {e}"));
        assert_eq!(platforms::normalize(again), normal, "{text:?}");
    }
});
