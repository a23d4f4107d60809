//! The snapshotter conformance suite on the overlayfs snapshotter, as root:
//! every case mounts what it returns, so overlay's whiteouts, read-only
//! views and a 128-layer chain are checked by the kernel.

use std::sync::Arc;

use crated_core::snapshots::testsuite::Fixture;

async fn snapshotter() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let overlay = crated_snapshotter_overlay::open(&dir.path().join("root"))
        .expect("open the overlayfs snapshotter");
    Fixture::new(Arc::new(overlay), dir)
}

crated_core::snapshotter_testsuite!(snapshotter);
