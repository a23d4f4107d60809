//! The snapshotter conformance suite on the btrfs snapshotter, each case on
//! its own loop-mounted btrfs image made with Debian's btrfs-progs, as root.

use std::sync::Arc;

use crated_core::snapshots::testsuite::Fixture;
use crated_testimages::LoopFs;

async fn snapshotter() -> Fixture {
    // 256 MiB: the smallest btrfs with room for the suite's cases.
    let fs = LoopFs::btrfs(256 << 20).expect("a loop-mounted btrfs");
    let btrfs = crated_snapshotter_btrfs::open(&fs.path().join("root"))
        .expect("open the btrfs snapshotter");
    Fixture::new(Arc::new(btrfs), fs)
}

crated_core::snapshotter_testsuite!(snapshotter);
