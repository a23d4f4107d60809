//! The layer applier on hostile input: whatever the tar (or gzip/zstd of
//! it) holds, nothing is ever written, linked or removed outside the root
//! it is applied to. Beside the root lies a directory with a marker file;
//! after every apply it must hold exactly that file, unchanged.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crated_differ::{apply_stream, Whiteouts};

fn sandbox() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("crated-fuzz-apply-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("outside")).expect("make the sandbox");
        std::fs::write(dir.join("outside/marker"), b"untouched").expect("write the marker");
        dir
    })
}

fn outside_untouched(outside: &Path) -> bool {
    let names: Vec<_> = std::fs::read_dir(outside)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    names == ["marker"]
        && std::fs::read(outside.join("marker")).ok().as_deref() == Some(&b"untouched"[..])
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = sandbox();
    let root = dir.join("root");
    for whiteouts in [Whiteouts::Delete, Whiteouts::Overlay] {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir(&root).expect("make the root");
        let _ = apply_stream(data, &root, whiteouts);
        assert!(
            outside_untouched(&dir.join("outside")),
            "a layer reached outside its root"
        );
        let parent: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            parent.len() == 2,
            "a layer wrote beside its root: {parent:?}"
        );
    }
});
