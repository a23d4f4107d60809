//! The snapshotter conformance suite on the native snapshotter, as root:
//! every case mounts what it returns.

use std::sync::Arc;

use crated_core::snapshots::testsuite::Fixture;

async fn snapshotter() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let native = crated_snapshotter_native::open(&dir.path().join("root"))
        .expect("open the native snapshotter");
    Fixture::new(Arc::new(native), dir)
}

crated_core::snapshotter_testsuite!(snapshotter);
