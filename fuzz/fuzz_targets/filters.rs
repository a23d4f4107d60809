//! The filter language (`labels."a"==b,name~=re`): any input parses or is
//! refused with an error, never a panic, a hang or unbounded memory.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crated_core::filters::parse(text);
        let _ = crated_core::filters::parse_all(text.split('\n'));
    }
});
