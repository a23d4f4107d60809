//! What a machine crash can leave of a prepare, as root: its record without
//! its directory (the rename is not synced before the reply).

use std::time::{Duration, Instant};

use crated_core::snapshots::{Labels, Snapshotter as _};
use crated_snapshotter_native::Native;

/// Opens the snapshotter at `root`, waiting out the previous handle's
/// writes still in flight on sled's threads, which hold its lock a moment.
fn open(root: &std::path::Path) -> Native {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match crated_snapshotter_native::open(root) {
            Ok(native) => return native,
            Err(crated_snapshotter_meta::Error::StillOpen { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("open the native snapshotter: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_snapshot_whose_directory_was_lost_gets_it_back_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let source = {
        let native = open(&root);
        native.prepare("base-w", "", Labels::new()).await.unwrap();
        std::fs::write(root.join("snapshots/1/file"), "data").unwrap();
        native
            .commit("base", "base-w", Labels::new())
            .await
            .unwrap();
        let mounts = native.prepare("w", "base", Labels::new()).await.unwrap();
        mounts[0].source.clone()
    };
    let dir_of_w = std::path::PathBuf::from(&source);
    assert!(dir_of_w.join("file").exists(), "{source}");
    // As if the rename had not reached the disk.
    std::fs::remove_dir_all(&dir_of_w).unwrap();

    let native = open(&root);
    // Built again as its prepare made it: a copy of its parent.
    assert_eq!(
        std::fs::read_to_string(dir_of_w.join("file")).unwrap(),
        "data"
    );
    let mounts = native.mounts("w").await.unwrap();
    assert_eq!(mounts[0].source, source);
    native.remove("w").await.unwrap();
    assert!(!dir_of_w.exists());
}
